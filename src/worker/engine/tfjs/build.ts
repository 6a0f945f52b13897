/**
 * Compile a `ModelSpec` into two TF.js functions split at the Grad-CAM target layer:
 * `features` (input → target layer output) and `head` (target layer output → pre-activation scores).
 * Plain ops rather than a `tf.LayersModel`: the split is exact, nothing is trainable, and gradients
 * can be taken through the head alone.
 *
 * Keras parity: conv 'same'/'valid' use TF's padding rules (TF.js implements the same), kernels are
 * HWIO and dense kernels (in, out) as stored, `flatten` is a plain NHWC reshape, i.e. (h, w, c)
 * order, and dropout is the identity at inference.
 */
import * as tf from '@tensorflow/tfjs';
import { ModelError } from '../../../shared/errors.js';
import type { Activation, LayerSpec, ModelSpec } from '../../model/spec.js';
import { resolveTargetLayer } from '../../model/target-layer.js';
import { maxPoolFirstTie } from './max-pool-first.js';

/** How the model's scores become probabilities. */
export type OutputActivation = 'softmax' | 'sigmoid' | 'none';

export interface CompiledModel {
  readonly name: string;
  readonly inputShape: [number, number, number];
  readonly layer: string;
  /** `[h, w, c]` of the target layer's output. */
  readonly targetShape: [number, number, number];
  readonly numClasses: number;
  /**
   * The final activation, split off the last layer so the head yields logits. `none` means the
   * model ends linearly: its outputs are treated as logits and softmaxed into probabilities.
   */
  readonly outputActivation: OutputActivation;
  /** Input `[N,H,W,C]` → target activation `[N,h,w,c]`. Disposes its intermediates as it goes. */
  features(x: tf.Tensor4D): tf.Tensor4D;
  /** Target activation → logits `[N, classes]`. Differentiable; call inside tidy/grad. */
  head(a: tf.Tensor4D): tf.Tensor2D;
  /** Logits → probabilities. */
  probabilities(logits: tf.Tensor2D): tf.Tensor2D;
  dispose(): void;
}

type Op = (x: tf.Tensor) => tf.Tensor;

/** `block5_conv3` when present (VGG16), else the last conv layer: the usual Grad-CAM target. */
export function defaultTargetLayer(spec: ModelSpec): string {
  return resolveTargetLayer(spec);
}

/** Backend-specific speed choices; they never change results beyond float rounding. */
export interface CompileTuning {
  /**
   * Keep a transposed copy of each head dense kernel for the backward pass (see
   * `denseWithTransposedGrad`). Costs the head's weight memory twice (VGG16: +480 MB).
   * Default: on for the wasm backend, where it makes the backward as fast as the forward.
   */
  pretransposeDense: boolean;
}

export function defaultCompileTuning(): CompileTuning {
  return { pretransposeDense: tf.getBackend() === 'wasm' };
}

/** `layer` undefined: the default target (see `resolveTargetLayer`); a name must have a 4-D output. */
export function compileModel(spec: ModelSpec, layer?: string, tuning: CompileTuning = defaultCompileTuning()): CompiledModel {
  const layerName = resolveTargetLayer(spec, layer);
  const layers = spec.layers.filter((l) => l.type !== 'input');
  const targetIndex = layers.findIndex((l) => l.name === layerName);
  if (targetIndex < 0) {
    throw new ModelError(`target layer "${layerName}" is not in model "${spec.name}"; layers: ${layers.map((l) => l.name).join(', ')}`);
  }
  if (targetIndex === layers.length - 1) {
    throw new ModelError(`target layer "${layerName}" is the model's last layer; Grad-CAM needs layers after it`);
  }

  const owned: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };

  // Split the final activation off, so `head` returns logits (pre-softmax), as the logit score needs.
  const last = layers[layers.length - 1];
  let outputActivation: OutputActivation = 'none';
  let headLayers = layers.slice(targetIndex + 1);
  if ((last.type === 'dense' || last.type === 'activation') && (last.activation === 'softmax' || last.activation === 'sigmoid')) {
    outputActivation = last.activation;
    if (last.type === 'activation') headLayers = headLayers.slice(0, -1);
    else headLayers = [...headLayers.slice(0, -1), { ...last, activation: 'linear' }];
    if (headLayers.length === 0) throw new ModelError(`nothing but an activation follows target layer "${layerName}"`);
  }

  let shape: number[] = [...spec.inputShape];
  const featureOps: Op[] = [];
  for (const layer of layers.slice(0, targetIndex + 1)) {
    const r = compileLayer(layer, shape, keep, false, tuning);
    featureOps.push(r.op);
    shape = r.shape;
  }
  if (shape.length !== 3) {
    throw new ModelError(`target layer "${layerName}" outputs shape [${shape.join(',')}], not a 4-D feature map; pick a conv or pool layer`);
  }
  const targetShape = shape as [number, number, number];
  const headOps: Op[] = [];
  for (const layer of headLayers) {
    const r = compileLayer(layer, shape, keep, true, tuning);
    headOps.push(r.op);
    shape = r.shape;
  }
  if (shape.length !== 1) throw new ModelError(`model "${spec.name}" does not end in a vector of class scores (output shape [${shape.join(',')}])`);

  return {
    name: spec.name,
    inputShape: [...spec.inputShape],
    layer: layerName,
    targetShape,
    numClasses: shape[0],
    outputActivation,
    features(x) {
      let cur: tf.Tensor = x;
      // Layer by layer, freeing each intermediate at once: VGG16 at batch 16 would otherwise hold
      // about 900 MB of activations until the end of a tidy scope.
      for (const op of featureOps) {
        const next = tf.tidy(() => op(cur));
        if (cur !== x) cur.dispose();
        cur = next;
      }
      return cur as tf.Tensor4D;
    },
    head(a) {
      let cur: tf.Tensor = a;
      for (const op of headOps) cur = op(cur);
      return cur as tf.Tensor2D;
    },
    probabilities(logits) {
      if (outputActivation === 'sigmoid') return tf.sigmoid(logits);
      return tf.softmax(logits);
    },
    dispose() {
      for (const t of owned) t.dispose();
      owned.length = 0;
    },
  };
}

/**
 * `x·W` whose gradient `dy·Wᵀ` multiplies by a stored transpose. Why: on the wasm backend XNNPACK
 * caches the packed form of a matMul's right operand, so `x·W` is fast from the second call on,
 * but `matMul(dy, W, false, true)` repacks the 400 MB fc1 kernel of VGG16 on every call, which
 * made the head's backward about 10x its forward. A stored Wᵀ is packed once, like W.
 */
function denseWithTransposedGrad(kernel: tf.Tensor2D, kernelT: tf.Tensor2D): (x: tf.Tensor2D) => tf.Tensor2D {
  const f = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const x = args[0] as tf.Tensor2D;
    return { value: tf.matMul(x, kernel) as tf.Tensor2D, gradFunc: (dy: tf.Tensor2D) => [tf.matMul(dy, kernelT)] };
  });
  return (x) => f(x) as tf.Tensor2D;
}

/** `differentiable`: the layer is in the head, where gradients must match TF's CPU kernels. */
function compileLayer(layer: LayerSpec, inShape: number[], keep: <T extends tf.Tensor>(t: T) => T, differentiable: boolean, tuning: CompileTuning): { op: Op; shape: number[] } {
  const where = `layer "${layer.name}" (${layer.type})`;
  switch (layer.type) {
    case 'input':
    case 'dropout':
      return { op: (x) => x, shape: inShape };
    case 'activation':
      return { op: (x) => activate(x, layer.activation), shape: inShape };
    case 'conv2d': {
      if (inShape.length !== 3) throw new ModelError(`${where} needs a 4-D input, got [${inShape.join(',')}]`);
      const [kh, kw] = layer.kernelSize;
      const cin = inShape[2];
      checkLength(where, 'kernel', layer.kernel.length, kh * kw * cin * layer.filters);
      const kernel = keep(tf.tensor4d(layer.kernel, [kh, kw, cin, layer.filters]));
      const bias = layer.bias ? keep(tf.tensor1d(checkLength(where, 'bias', layer.bias.length, layer.filters) && layer.bias)) : null;
      const [sh, sw] = layer.strides;
      const outH = layer.padding === 'same' ? Math.ceil(inShape[0] / sh) : Math.floor((inShape[0] - kh) / sh) + 1;
      const outW = layer.padding === 'same' ? Math.ceil(inShape[1] / sw) : Math.floor((inShape[1] - kw) / sw) + 1;
      if (outH < 1 || outW < 1) throw new ModelError(`${where} gets a ${inShape[0]}x${inShape[1]} input, too small for its ${kh}x${kw} kernel`);
      const op: Op = (x) => {
        const y = tf.conv2d(x as tf.Tensor4D, kernel, [sh, sw], layer.padding);
        return activate(bias ? tf.add(y, bias) : y, layer.activation);
      };
      return { op, shape: [outH, outW, layer.filters] };
    }
    case 'maxpool2d': {
      if (inShape.length !== 3) throw new ModelError(`${where} needs a 4-D input, got [${inShape.join(',')}]`);
      const [ph, pw] = layer.poolSize;
      const [sh, sw] = layer.strides;
      const outH = layer.padding === 'same' ? Math.ceil(inShape[0] / sh) : Math.floor((inShape[0] - ph) / sh) + 1;
      const outW = layer.padding === 'same' ? Math.ceil(inShape[1] / sw) : Math.floor((inShape[1] - pw) / sw) + 1;
      if (outH < 1 || outW < 1) throw new ModelError(`${where} gets a ${inShape[0]}x${inShape[1]} input, too small for its ${ph}x${pw} pool`);
      const pool = differentiable ? maxPoolFirstTie : tf.maxPool;
      return { op: (x) => pool(x as tf.Tensor4D, [ph, pw], [sh, sw], layer.padding), shape: [outH, outW, inShape[2]] };
    }
    case 'flatten': {
      const size = inShape.reduce((a, b) => a * b, 1);
      // NHWC reshape = Keras's (h, w, c) flatten order.
      return { op: (x) => tf.reshape(x, [-1, size]), shape: [size] };
    }
    case 'gap': {
      if (inShape.length !== 3) throw new ModelError(`${where} needs a 4-D input, got [${inShape.join(',')}]`);
      return { op: (x) => tf.mean(x, [1, 2]), shape: [inShape[2]] };
    }
    case 'dense': {
      if (inShape.length !== 1) throw new ModelError(`${where} needs a flat input; add a flatten layer before it (got [${inShape.join(',')}])`);
      checkLength(where, 'kernel', layer.kernel.length, inShape[0] * layer.units);
      const kernel = keep(tf.tensor2d(layer.kernel, [inShape[0], layer.units]));
      const bias = layer.bias ? keep(tf.tensor1d(checkLength(where, 'bias', layer.bias.length, layer.units) && layer.bias)) : null;
      const matMul = differentiable && tuning.pretransposeDense ? denseWithTransposedGrad(kernel, keep(tf.transpose(kernel))) : (x: tf.Tensor2D) => tf.matMul(x, kernel);
      const op: Op = (x) => {
        const y = matMul(x as tf.Tensor2D);
        return activate(bias ? tf.add(y, bias) : y, layer.activation);
      };
      return { op, shape: [layer.units] };
    }
  }
}

function checkLength(where: string, what: string, actual: number, expected: number): true {
  if (actual !== expected) throw new ModelError(`${where}: ${what} has ${actual} values, expected ${expected} for its shape`);
  return true;
}

function activate(x: tf.Tensor, activation: Activation): tf.Tensor {
  switch (activation) {
    case 'linear':
      return x;
    case 'relu':
      return tf.relu(x);
    case 'sigmoid':
      return tf.sigmoid(x);
    case 'softmax':
      return tf.softmax(x);
  }
}
