/**
 * Compile a model graph into two TF.js functions split at the Grad-CAM target (walker.ts):
 * `features` (input → target, forward only) and `head` (target → logits, differentiated with
 * `tf.grad`). Plain ops rather than a `tf.LayersModel`: the split is exact, nothing is trainable,
 * and gradients are taken through the head alone.
 *
 * Layout: the graph has ONNX (NCHW) semantics, but TF.js convolves channels-last only. Every 4-D
 * value is therefore kept channels-last in memory and tagged (`nhwc: true` = "a logical NCHW
 * tensor stored as NHWC"); ops translate their axes, and a value is transposed to its logical
 * layout only when an op needs it (Flatten, Reshape, MatMul, ...). A Keras model's
 * NHWC→NCHW→NHWC transposes thus cost nothing, and its flatten keeps Keras' (h, w, c) order.
 */
import * as tf from '@tensorflow/tfjs';
import { ModelError } from '../../../shared/errors.js';
import type { ModelInput } from '../../model/graph/from-sequential.js';
import { toModelGraph } from '../../model/graph/from-sequential.js';
import type { GraphNode, ModelGraph } from '../../model/graph/ir.js';
import { attrFloat, attrInt, attrInts, attrString } from '../../model/graph/ir.js';
import { clipBounds, normalizeAxis, windowOut } from '../../model/graph/ops.js';
import { nearestFloorSources, resizeGeometry } from '../../model/graph/resize-geometry.js';
import { graphFacts, resolveTarget, splitAtTarget } from '../../model/graph/walker.js';
import { maxPoolFirstTie } from './max-pool-first.js';

/** How the model's scores become probabilities. */
export type OutputActivation = 'softmax' | 'sigmoid' | 'none';

/** Values the head reads besides the target (skip connections), as the features pass left them. */
export interface HeadInputs {
  tensors: tf.Tensor[];
  nhwc: boolean[];
}

export interface FeatureMaps {
  /** The target activation, channels-last `[N,h,w,c]`. */
  target: tf.Tensor4D;
  extras: HeadInputs;
}

export interface CompiledModel {
  readonly name: string;
  readonly inputShape: [number, number, number];
  readonly layer: string;
  /** `[h, w, c]` of the target activation. */
  readonly targetShape: [number, number, number];
  readonly numClasses: number;
  /**
   * The final activation, split off so the head yields logits. `none` means the model ends
   * linearly: its outputs are treated as logits and softmaxed into probabilities.
   */
  readonly outputActivation: OutputActivation;
  /** Input `[N,H,W,C]` → target activation and the head's other inputs. Disposes intermediates as it goes. */
  features(x: tf.Tensor4D): FeatureMaps;
  /** Target activation `[M,h,w,c]` → logits `[M, classes]`. Differentiable; call inside tidy/grad. */
  head(a: tf.Tensor4D, extras?: HeadInputs): tf.Tensor2D;
  /** Logits → probabilities. */
  probabilities(logits: tf.Tensor2D): tf.Tensor2D;
  dispose(): void;
}

/** The default target (see `resolveTarget`). */
export function defaultTargetLayer(model: ModelInput): string {
  return resolveTarget(toModelGraph(model));
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

/** A value during interpretation; `nhwc`: a logical NCHW 4-D tensor held channels-last. */
interface Value {
  t: tf.Tensor;
  nhwc: boolean;
}

/** Logical NCHW axis → its position in the channels-last tensor, and back. */
const L2P = [0, 3, 1, 2];
const P2L = [0, 2, 3, 1];
/** Stand-in for −∞ in max-pool padding (TF.js pads must be finite on some backends). */
const MIN_FLOAT = -3.4e38;

/** Ops this engine runs: the graph's op set, less `Pad` in `edge` mode and some Resize forms (`shapes` from `graphFacts`). */
export function tfjsProblem(node: GraphNode, shapes: Map<string, number[]>): string | null {
  if (node.op === 'Pad' && attrString(node, 'mode', 'constant') === 'edge') return `node "${node.name}": Pad mode "edge" is not supported by the TF.js engine`;
  if (node.op === 'Resize') {
    const input = shapes.get(node.inputs[0])!;
    if (resizeKind(node, input) !== null) return null;
    const { size } = resizeGeometry(node, input);
    const target = attrInts(node, 'sizes') ? `sizes ${size.join('x')}` : `scales ${JSON.stringify((node.attrs.scales as { floats: number[] }).floats)}`;
    return `node "${node.name}": Resize ${attrString(node, 'mode', 'nearest')}/${attrString(node, 'coordinate_transformation_mode', 'half_pixel')} of ${input[2]}x${input[3]} with ${target} is not supported by the TF.js engine (it runs nearest/asymmetric/floor, and linear/half_pixel given sizes or integer scales)`;
  }
  return null;
}

/**
 * How this engine computes a Resize node as ONNX Runtime does, or null:
 * - nearest/asymmetric/floor: a gather of ONNX Runtime's own source rows and columns
 *   (resize-geometry.ts), at any scale;
 * - linear/half_pixel: TF.js' half-pixel bilinear maps by input / output, ONNX Runtime by the scale,
 *   which is the same when the node gives sizes (scale = output / input) or integer scales.
 *   pytorch_half_pixel is half_pixel except for an output length 1 (it reads position 0 there).
 */
function resizeKind(node: GraphNode, input: number[]): 'nearest' | 'bilinear' | null {
  const { size, scale, bySize } = resizeGeometry(node, input);
  const mode = attrString(node, 'mode', 'nearest');
  const coordinates = attrString(node, 'coordinate_transformation_mode', 'half_pixel');
  if (mode === 'nearest' && coordinates === 'asymmetric' && attrString(node, 'nearest_mode', 'round_prefer_floor') === 'floor') return 'nearest';
  if (mode !== 'linear' || !(bySize || scale.every((v) => Number.isInteger(v) && v >= 1))) return null;
  if (coordinates === 'half_pixel') return 'bilinear';
  if (coordinates === 'pytorch_half_pixel' && size.every((d, i) => d > 1 || input[i + 2] === 1)) return 'bilinear';
  return null;
}

/** `layer` undefined: the default target (see `resolveTarget`); a name must have a 4-D output. */
export function compileModel(model: ModelInput, layer?: string, tuning: CompileTuning = defaultCompileTuning()): CompiledModel {
  const graph = toModelGraph(model);
  const split = splitAtTarget(graph, layer);
  const facts = graphFacts(graph);
  for (const node of [...split.trunk, ...split.head]) {
    const problem = tfjsProblem(node, facts.shapes);
    if (problem) throw new ModelError(problem);
  }
  const owned: tf.Tensor[] = [];
  const keep = <T extends tf.Tensor>(t: T): T => {
    owned.push(t);
    return t;
  };
  const constants = new Map<string, tf.Tensor>();
  const constant = (name: string): tf.Tensor => {
    let t = constants.get(name);
    if (!t) {
      const c = graph.constants[name];
      // tf.keep: the first use may be inside a tidy scope.
      t = keep(tf.keep(c.dtype === 'float32' ? tf.tensor(c.data, c.dims.length > 0 ? c.dims : [], 'float32') : tf.tensor(c.data, c.dims, 'int32')));
      constants.set(name, t);
    }
    return t;
  };
  const prepared = new Map<string, Prepared>();
  for (const node of [...split.trunk, ...split.head]) prepared.set(node.name, prepare(node, graph, keep, split.head.includes(node) && tuning.pretransposeDense));

  // When each trunk value is last read, so features() can free it at once (VGG16 at batch 16
  // would otherwise hold about 900 MB of activations).
  const lastUse = new Map<string, number>();
  split.trunk.forEach((node, i) => node.inputs.forEach((v) => lastUse.set(v, i)));
  for (const v of [split.target, ...split.headInputs]) lastUse.set(v, Infinity);

  const run = (node: GraphNode, values: Map<string, Value>, differentiable: boolean): void => {
    const inputs = node.inputs.map((v) => (v === '' ? undefined : (values.get(v) ?? { t: constant(v), nhwc: false })));
    const outputs = runNode(node, inputs as Value[], prepared.get(node.name)!, facts.shapes, differentiable);
    node.outputs.forEach((v, i) => outputs[i] && values.set(v, outputs[i]));
  };

  const [, c, h, w] = facts.shapes.get(split.target)!;
  const isGraphInput = (name: string): boolean => name === graph.input.name;
  return {
    name: graph.name,
    inputShape: [...graph.inputShape],
    layer: split.target,
    targetShape: [h, w, c],
    numClasses: split.output.numClasses,
    outputActivation: split.output.activation,
    features(x) {
      const values = new Map<string, Value>([[graph.input.name, { t: x, nhwc: graph.input.layout === 'nchw' }]]);
      split.trunk.forEach((node, i) => {
        tf.tidy(() => {
          run(node, values, false);
          // Returned tensors survive the scope; everything else the node made is freed.
          return node.outputs.map((v) => values.get(v)?.t).filter((t): t is tf.Tensor => t !== undefined);
        });
        for (const v of new Set(node.inputs)) {
          if (lastUse.get(v) === i && !isGraphInput(v) && values.has(v)) {
            const t = values.get(v)!.t;
            values.delete(v);
            if (![...values.values()].some((o) => o.t === t)) t.dispose();
          }
        }
      });
      const target = values.get(split.target)!;
      const physical = (target.nhwc ? target.t : tf.tidy(() => tf.transpose(target.t, [0, 2, 3, 1]))) as tf.Tensor4D;
      const extras = split.headInputs.map((v) => values.get(v)!);
      for (const [name, v] of values) {
        if (name !== split.target && !split.headInputs.includes(name) && !isGraphInput(name) && v.t !== physical && !extras.some((e) => e.t === v.t)) v.t.dispose();
      }
      if (physical !== target.t && !extras.some((e) => e.t === target.t)) target.t.dispose();
      return { target: physical, extras: { tensors: extras.map((e) => e.t), nhwc: extras.map((e) => e.nhwc) } };
    },
    head(a, extras) {
      const values = new Map<string, Value>([[split.target, { t: a, nhwc: true }]]);
      split.headInputs.forEach((v, i) => {
        if (!extras) throw new Error(`the head of ${graph.name} also reads ${v}; pass the features' extras`);
        values.set(v, { t: extras.tensors[i], nhwc: extras.nhwc[i] });
      });
      for (const node of split.head) run(node, values, true);
      return plain(values.get(split.output.logits)!) as tf.Tensor2D;
    },
    probabilities(logits) {
      if (split.output.activation === 'sigmoid') return tf.sigmoid(logits);
      return tf.softmax(logits);
    },
    dispose() {
      for (const t of owned) t.dispose();
      owned.length = 0;
    },
  };
}

/** Repeat every row block `times` times along the batch axis (several targets per image). */
export function repeatRows<T extends tf.Tensor>(t: T, times: number): T {
  // Concatenating whole copies is a plain memory copy; gather is several times slower on wasm.
  return times === 1 ? t : (tf.concat(new Array<T>(times).fill(t), 0) as T);
}

/** Weights converted once per node at compile time. */
type Prepared =
  | { kind: 'none' }
  | { kind: 'conv'; filters: tf.Tensor4D[]; depthwise: boolean; bias: tf.Tensor1D | null }
  | { kind: 'affine'; scale: tf.Tensor1D; shift: tf.Tensor1D }
  | { kind: 'dense'; matMul: (x: tf.Tensor2D) => tf.Tensor2D; bias: tf.Tensor | null }
  | { kind: 'gather'; rows: tf.Tensor1D; cols: tf.Tensor1D };

function floatData(graph: ModelGraph, name: string, node: GraphNode): Float32Array {
  const c = graph.constants[name];
  if (c?.dtype !== 'float32') throw new ModelError(`node "${node.name}" (${node.op}): input ${name} must be a constant float tensor`);
  return c.data;
}

function prepare(node: GraphNode, graph: ModelGraph, keep: <T extends tf.Tensor>(t: T) => T, pretranspose: boolean): Prepared {
  switch (node.op) {
    case 'Conv': {
      const w = graph.constants[node.inputs[1]];
      if (w?.dtype !== 'float32') throw new ModelError(`node "${node.name}" (Conv): only constant weights are supported`);
      const [m, cg, kh, kw] = w.dims;
      const groups = attrInt(node, 'group', 1);
      const bias = node.inputs[2] ? keep(tf.tensor1d(floatData(graph, node.inputs[2], node))) : null;
      const oihw = tf.tensor4d(w.data, [m, cg, kh, kw]);
      try {
        if (groups > 1 && cg === 1) {
          // Depthwise: OIHW [C·k, 1, kh, kw] → [kh, kw, C, k].
          const mult = m / groups;
          const filter = keep(tf.tidy(() => tf.transpose(tf.reshape(oihw, [groups, mult, kh, kw]), [2, 3, 0, 1]) as tf.Tensor4D));
          return { kind: 'conv', filters: [filter], depthwise: true, bias };
        }
        const hwio = tf.tidy(() => tf.transpose(oihw, [2, 3, 1, 0]) as tf.Tensor4D);
        if (groups === 1) return { kind: 'conv', filters: [keep(hwio)], depthwise: false, bias };
        const filters = tf.split(hwio, groups, 3).map((f) => keep(f as tf.Tensor4D));
        hwio.dispose();
        return { kind: 'conv', filters, depthwise: false, bias };
      } finally {
        oihw.dispose();
      }
    }
    case 'BatchNormalization': {
      const [scale, bias, mean, variance] = node.inputs.slice(1, 5).map((v) => floatData(graph, v, node));
      const eps = attrFloat(node, 'epsilon', 1e-5);
      const s = Float32Array.from(scale, (g, i) => g / Math.sqrt(variance[i] + eps));
      const b = Float32Array.from(bias, (beta, i) => beta - mean[i] * s[i]);
      return { kind: 'affine', scale: keep(tf.tensor1d(s)), shift: keep(tf.tensor1d(b)) };
    }
    case 'Gemm':
    case 'MatMul': {
      const c = graph.constants[node.inputs[1]];
      if (c?.dtype !== 'float32' || c.dims.length !== 2) return { kind: 'none' };
      const transB = node.op === 'Gemm' && attrInt(node, 'transB', 0) === 1;
      const kernel = keep(tf.tensor2d(c.data, c.dims as [number, number]));
      const bias = node.op === 'Gemm' && node.inputs[2] ? keep(tf.tensor(floatData(graph, node.inputs[2], node), graph.constants[node.inputs[2]]!.dims)) : null;
      const matMul =
        pretranspose && !transB
          ? denseWithTransposedGrad(kernel, keep(tf.transpose(kernel)))
          : (x: tf.Tensor2D): tf.Tensor2D => tf.matMul(x, kernel, false, transB);
      return { kind: 'dense', matMul, bias };
    }
    case 'Resize': {
      const input = graphFacts(graph).shapes.get(node.inputs[0])!;
      if (resizeKind(node, input) !== 'nearest') return { kind: 'none' };
      const [rows, cols] = nearestFloorSources(node, input).map((sources) => keep(tf.tensor1d(sources, 'int32')));
      return { kind: 'gather', rows, cols };
    }
    default:
      return { kind: 'none' };
  }
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

function plain(v: Value): tf.Tensor {
  return v.nhwc ? tf.transpose(v.t, [0, 3, 1, 2]) : v.t;
}

/** A logical NCHW (or lower-rank, broadcastable) value as a channels-last 4-D tensor. */
function channelsLast(v: Value): tf.Tensor {
  if (v.nhwc) return v.t;
  const t = v.t.rank < 4 ? tf.reshape(v.t, [...new Array<number>(4 - v.t.rank).fill(1), ...v.t.shape]) : v.t;
  return tf.transpose(t, [0, 2, 3, 1]);
}

/** `same`/`valid` when TF's own padding rule gives exactly these pads, else null. */
function tfPadding(size: [number, number], kernel: number[], strides: number[], dilations: number[], pads: number[]): 'same' | 'valid' | null {
  if (pads.every((p) => p === 0)) return 'valid';
  for (let i = 0; i < 2; i++) {
    const span = (kernel[i] - 1) * dilations[i] + 1;
    const out = Math.ceil(size[i] / strides[i]);
    const total = Math.max((out - 1) * strides[i] + span - size[i], 0);
    if (pads[i] !== Math.floor(total / 2) || pads[i + 2] !== total - Math.floor(total / 2)) return null;
  }
  return 'same';
}

function padSpatial(x: tf.Tensor, pads: number[], value: number): tf.Tensor {
  return tf.pad(x, [[0, 0], [pads[0], pads[2]], [pads[1], pads[3]], [0, 0]], value);
}

/** Extra end padding that ceil_mode implies, per spatial axis. */
function ceilPads(size: [number, number], kernel: number[], strides: number[], pads: number[], ceil: boolean): number[] {
  if (!ceil) return pads;
  const out = pads.slice();
  for (let i = 0; i < 2; i++) {
    const n = windowOut(size[i], kernel[i], strides[i], pads[i], pads[i + 2], 1, true);
    out[i + 2] = Math.max(pads[i + 2], (n - 1) * strides[i] + kernel[i] - size[i] - pads[i]);
  }
  return out;
}

function runNode(node: GraphNode, inputs: Array<Value | undefined>, prep: Prepared, shapes: Map<string, number[]>, differentiable: boolean): Value[] {
  const x = inputs[0]!;
  const same = (t: tf.Tensor): Value[] => [{ t, nhwc: x.nhwc }];
  const flat = (t: tf.Tensor): Value[] => [{ t, nhwc: false }];
  switch (node.op) {
    case 'Identity':
    case 'Dropout':
      return same(x.t);
    case 'Relu':
      return same(tf.relu(x.t));
    case 'LeakyRelu':
      return same(tf.leakyRelu(x.t, attrFloat(node, 'alpha', 0.01)));
    case 'Clip': {
      const [lo, hi] = clipBounds(node);
      return same(tf.clipByValue(x.t, Math.max(lo, MIN_FLOAT), Math.min(hi, -MIN_FLOAT)));
    }
    case 'Sigmoid':
      return same(tf.sigmoid(x.t));
    case 'HardSigmoid':
      return same(tf.clipByValue(tf.add(tf.mul(x.t, attrFloat(node, 'alpha', 0.2)), attrFloat(node, 'beta', 0.5)), 0, 1));
    case 'HardSwish':
      return same(tf.mul(x.t, tf.clipByValue(tf.add(tf.mul(x.t, 1 / 6), 0.5), 0, 1)));
    case 'Tanh':
      return same(tf.tanh(x.t));
    case 'Erf':
      return same(tf.erf(x.t));
    case 'Sqrt':
      return same(tf.sqrt(x.t));
    case 'Reciprocal':
      return same(tf.reciprocal(x.t));
    case 'Gelu': {
      if (attrString(node, 'approximate', 'none') === 'tanh') {
        const inner = tf.mul(tf.add(x.t, tf.mul(tf.pow(x.t, 3), 0.044715)), Math.sqrt(2 / Math.PI));
        return same(tf.mul(tf.mul(x.t, 0.5), tf.add(tf.tanh(inner), 1)));
      }
      return same(tf.mul(tf.mul(x.t, 0.5), tf.add(tf.erf(tf.mul(x.t, Math.SQRT1_2)), 1)));
    }
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div':
    case 'Pow': {
      const y = inputs[1]!;
      const fn = { Add: tf.add, Sub: tf.sub, Mul: tf.mul, Div: tf.div, Pow: tf.pow }[node.op];
      if (x.nhwc || y.nhwc) return [{ t: fn(channelsLast(x), channelsLast(y)), nhwc: true }];
      return flat(fn(x.t, y.t));
    }
    case 'Concat': {
      const all = inputs as Value[];
      const axis = normalizeAxis(attrInt(node, 'axis', 1), x.t.rank);
      if (x.t.rank === 4 && all.some((v) => v.nhwc)) return [{ t: tf.concat(all.map(channelsLast), L2P[axis]), nhwc: true }];
      return flat(tf.concat(all.map((v) => v.t), axis));
    }
    case 'Conv': {
      if (prep.kind !== 'conv') throw new Error('Conv without prepared weights');
      const t = channelsLast(x) as tf.Tensor4D;
      const strides = (attrInts(node, 'strides') ?? [1, 1]) as [number, number];
      const dil = (attrInts(node, 'dilations') ?? [1, 1]) as [number, number];
      const [kh, kw] = prep.filters[0].shape;
      const pads = attrInts(node, 'pads') ?? [0, 0, 0, 0];
      const mode = tfPadding([t.shape[1], t.shape[2]], [kh, kw], strides, dil, pads);
      const input = (mode ? t : padSpatial(t, pads, 0)) as tf.Tensor4D;
      const padding = mode ?? 'valid';
      let y: tf.Tensor;
      if (prep.depthwise) y = tf.depthwiseConv2d(input, prep.filters[0], strides, padding, 'NHWC', dil);
      else if (prep.filters.length === 1) y = tf.conv2d(input, prep.filters[0], strides, padding, 'NHWC', dil);
      else {
        const parts = tf.split(input, prep.filters.length, 3);
        y = tf.concat(parts.map((p, i) => tf.conv2d(p as tf.Tensor4D, prep.filters[i], strides, padding, 'NHWC', dil)), 3);
      }
      return [{ t: prep.bias ? tf.add(y, prep.bias) : y, nhwc: true }];
    }
    case 'BatchNormalization': {
      if (prep.kind !== 'affine') throw new Error('BatchNormalization without prepared statistics');
      if (x.nhwc || x.t.rank === 2) return same(tf.add(tf.mul(x.t, prep.scale), prep.shift));
      const shape = [prep.scale.shape[0], ...new Array<number>(x.t.rank - 2).fill(1)];
      return same(tf.add(tf.mul(x.t, tf.reshape(prep.scale, shape)), tf.reshape(prep.shift, shape)));
    }
    case 'MaxPool':
    case 'AveragePool': {
      const t = channelsLast(x) as tf.Tensor4D;
      const kernel = attrInts(node, 'kernel_shape')! as [number, number];
      const strides = (attrInts(node, 'strides') ?? [1, 1]) as [number, number];
      const size: [number, number] = [t.shape[1], t.shape[2]];
      const ceil = attrInt(node, 'ceil_mode', 0) === 1;
      const pads = ceilPads(size, kernel, strides, attrInts(node, 'pads') ?? [0, 0, 0, 0], ceil);
      const mode = ceil ? (pads.every((p) => p === 0) ? 'valid' : null) : tfPadding(size, kernel, strides, [1, 1], pads);
      if (node.op === 'MaxPool') {
        const pool = differentiable ? maxPoolFirstTie : tf.maxPool;
        const input = (mode ? t : padSpatial(t, pads, MIN_FLOAT)) as tf.Tensor4D;
        return [{ t: pool(input, kernel, strides, mode ?? 'valid'), nhwc: true }];
      }
      if (mode === 'valid' || (mode === 'same' && attrInt(node, 'count_include_pad', 0) === 0)) return [{ t: tf.avgPool(t, kernel, strides, mode), nhwc: true }];
      // Divide by the window's count of real pixels (ONNX's default), or by its full area.
      const area = kernel[0] * kernel[1];
      const sums = tf.mul(tf.avgPool(padSpatial(t, pads, 0) as tf.Tensor4D, kernel, strides, 'valid'), area);
      const counts = attrInt(node, 'count_include_pad', 0) === 1 ? area : tf.mul(tf.avgPool(padSpatial(tf.ones([1, size[0], size[1], 1]), pads, 0) as tf.Tensor4D, kernel, strides, 'valid'), area);
      return [{ t: tf.div(sums, counts), nhwc: true }];
    }
    case 'GlobalAveragePool':
      return [{ t: tf.mean(channelsLast(x), [1, 2], true), nhwc: true }];
    case 'ReduceMean': {
      const rank = x.t.rank;
      const axes = (attrInts(node, 'axes') ?? [...Array(rank).keys()]).map((a) => normalizeAxis(a, rank));
      const keepDims = attrInt(node, 'keepdims', 1) === 1;
      if (x.nhwc) {
        const physical = axes.map((a) => L2P[a]);
        if (keepDims) return [{ t: tf.mean(x.t, physical, true), nhwc: true }];
        const left = [0, 1, 2, 3].filter((p) => !physical.includes(p)).map((p) => P2L[p]);
        if (left.every((l, i) => i === 0 || left[i - 1] < l)) return flat(tf.mean(x.t, physical, false));
      }
      return flat(tf.mean(plain(x), axes, keepDims));
    }
    case 'Flatten': {
      const t = plain(x);
      const axis = normalizeAxis(attrInt(node, 'axis', 1), t.rank);
      const before = t.shape.slice(0, axis).reduce((a, b) => a * b, 1);
      return flat(tf.reshape(t, [before, t.size / before]));
    }
    case 'Reshape': {
      const t = plain(x);
      return flat(tf.reshape(t, (attrInts(node, 'shape') ?? []).map((d, i) => (d === 0 ? t.shape[i] : d))));
    }
    case 'Squeeze':
    case 'Unsqueeze': {
      const t = plain(x);
      const out = shapes.get(node.outputs[0])!;
      // Per-example dims from inference; the batch axis from the tensor itself.
      return flat(tf.reshape(t, [t.shape[0], ...out.slice(1)]));
    }
    case 'Transpose': {
      const perm = attrInts(node, 'perm') ?? [...Array(x.t.rank).keys()].reverse();
      const is = (p: number[]): boolean => perm.length === p.length && perm.every((v, i) => v === p[i]);
      if (x.nhwc && is([0, 2, 3, 1])) return flat(x.t);
      if (!x.nhwc && x.t.rank === 4 && is([0, 3, 1, 2])) return [{ t: x.t, nhwc: true }];
      if (x.nhwc) return flat(tf.transpose(x.t, perm.map((p) => L2P[p])));
      return flat(tf.transpose(x.t, perm));
    }
    case 'Gemm':
    case 'MatMul': {
      const a = plain(x);
      if (prep.kind !== 'dense') throw new ModelError(`node "${node.name}" (${node.op}): only a constant 2-D weight matrix is supported`);
      if (node.op === 'Gemm' && attrInt(node, 'transA', 0) === 1) throw new ModelError(`node "${node.name}" (Gemm): transA=1 is not supported`);
      const rows = a.rank === 2 ? (a as tf.Tensor2D) : (tf.reshape(a, [-1, a.shape[a.rank - 1]]) as tf.Tensor2D);
      let y: tf.Tensor = prep.matMul(rows);
      if (a.rank !== 2) y = tf.reshape(y, [...a.shape.slice(0, -1), y.shape[1] as number]);
      if (node.op === 'Gemm') {
        const alpha = attrFloat(node, 'alpha', 1);
        if (alpha !== 1) y = tf.mul(y, alpha);
        if (prep.bias) y = tf.add(y, attrFloat(node, 'beta', 1) === 1 ? prep.bias : tf.mul(prep.bias, attrFloat(node, 'beta', 1)));
      }
      return flat(y);
    }
    case 'Softmax': {
      const t = plain(x);
      const axis = normalizeAxis(attrInt(node, 'axis', -1), t.rank);
      if (axis === t.rank - 1) return flat(tf.softmax(t));
      const perm = [...Array(t.rank).keys()];
      [perm[axis], perm[t.rank - 1]] = [perm[t.rank - 1], perm[axis]];
      return flat(tf.transpose(tf.softmax(tf.transpose(t, perm)), perm));
    }
    case 'Pad': {
      const pads = attrInts(node, 'pads')!;
      const rank = x.t.rank;
      const pairs = (logical: number[]): Array<[number, number]> => logical.map((a) => [pads[a], pads[a + rank]]);
      const paddings = x.nhwc ? pairs(P2L) : pairs([...Array(rank).keys()]);
      // Negative pads crop (Keras' Cropping2D): slice those off first, then pad the rest.
      let input = x.t;
      if (paddings.some(([a, b]) => a < 0 || b < 0)) {
        const begin = paddings.map(([a]) => Math.max(-a, 0));
        const size = paddings.map(([a, b], i) => (i === 0 ? -1 : input.shape[i] - Math.max(-a, 0) - Math.max(-b, 0)));
        input = tf.slice(input, begin, size);
      }
      const positive = paddings.map(([a, b]): [number, number] => [Math.max(a, 0), Math.max(b, 0)]);
      const mode = attrString(node, 'mode', 'constant');
      const t = mode === 'reflect' ? tf.mirrorPad(input, positive, 'reflect') : tf.pad(input, positive, attrFloat(node, 'value', 0));
      return same(t);
    }
    case 'Resize': {
      const t = channelsLast(x) as tf.Tensor4D;
      const out = shapes.get(node.outputs[0])!;
      // Nearest: ONNX Runtime's source rows and columns (prepared), not TF.js' own rounding.
      if (prep.kind === 'gather') return [{ t: tf.gather(tf.gather(t, prep.rows, 1), prep.cols, 2), nhwc: true }];
      return [{ t: tf.image.resizeBilinear(t, [out[2], out[3]], false, true), nhwc: true }];
    }
    case 'LayerNormalization': {
      const t = plain(x);
      const axis = normalizeAxis(attrInt(node, 'axis', -1), t.rank);
      const axes = [...Array(t.rank).keys()].filter((a) => a >= axis);
      const { mean, variance } = tf.moments(t, axes, true);
      let y = tf.mul(tf.sub(t, mean), tf.rsqrt(tf.add(variance, attrFloat(node, 'epsilon', 1e-5))));
      const scale = inputs[1];
      const bias = inputs[2];
      if (scale) y = tf.mul(y, scale.t);
      if (bias) y = tf.add(y, bias.t);
      return flat(y);
    }
    default:
      throw new ModelError(`node "${node.name}": op ${node.op} is not supported by the TF.js engine`);
  }
}
