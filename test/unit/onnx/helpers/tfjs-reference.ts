/**
 * An independent reference for the compiled graph: the same ModelSpec run with TF.js ops in NHWC
 * (Keras' own layout, so no kernel or flatten permutations), the head gradient taken by TF.js
 * autodiff instead of closed-form rules, and the CAM formulas written as plain loops.
 */
import * as tf from '@tensorflow/tfjs';
import type { CamMethod } from '../../../../src/shared/explain-options.js';
import type { LayerSpec, ModelSpec } from '../../../../src/worker/model/spec.js';

export interface ReferenceResult {
  logits: Float32Array[];
  probabilities: Float32Array[];
  /** Per image, per target: raw (pre-normalisation, ReLU'd) map, row-major h×w. */
  cams: Float32Array[][];
  scores: number[][];
  camHeight: number;
  camWidth: number;
}

/** The references run on TF.js's pure-JS backend, whatever another test file in this process chose. */
export async function useCpuBackend(): Promise<void> {
  if (tf.getBackend() !== 'cpu') await tf.setBackend('cpu');
  await tf.ready();
}

function applyLayer(layer: LayerSpec, x: tf.Tensor): tf.Tensor {
  switch (layer.type) {
    case 'conv2d': {
      const [kh, kw] = layer.kernelSize;
      const cin = layer.kernel.length / (kh * kw * layer.filters);
      let y: tf.Tensor = tf.conv2d(x as tf.Tensor4D, tf.tensor4d(layer.kernel, [kh, kw, cin, layer.filters]), layer.strides, layer.padding);
      if (layer.bias) y = tf.add(y, tf.tensor1d(layer.bias));
      return activate(y, layer.activation);
    }
    case 'maxpool2d':
      return tf.maxPool(x as tf.Tensor4D, layer.poolSize, layer.strides, layer.padding);
    case 'flatten':
      return tf.reshape(x, [x.shape[0], -1]);
    case 'gap':
      return tf.mean(x, [1, 2]);
    case 'dense': {
      const inF = layer.kernel.length / layer.units;
      let y: tf.Tensor = tf.matMul(x as tf.Tensor2D, tf.tensor2d(layer.kernel, [inF, layer.units]));
      if (layer.bias) y = tf.add(y, tf.tensor1d(layer.bias));
      return layer.activation === 'softmax' ? y : activate(y, layer.activation);
    }
    case 'activation':
      return layer.activation === 'softmax' ? x : activate(x, layer.activation);
    default:
      return x;
  }
}

function activate(x: tf.Tensor, a: string): tf.Tensor {
  if (a === 'relu') return tf.relu(x);
  if (a === 'sigmoid') return tf.sigmoid(x);
  return x;
}

/**
 * Targets per image: class indices (≥ 0) or −r for the r-th most probable class, as the graph.
 */
export async function referenceCams(
  spec: ModelSpec,
  layer: string,
  images: Float32Array[],
  targets: number[][],
  method: CamMethod,
  score: 'prob' | 'logit',
): Promise<ReferenceResult> {
  await useCpuBackend();
  const [H, W, C] = spec.inputShape;
  const n = images.length;
  const cut = spec.layers.findIndex((l) => l.name === layer);
  const trunk = spec.layers.slice(0, cut + 1);
  const head = spec.layers.slice(cut + 1);
  const runHead = (a: tf.Tensor): tf.Tensor => head.reduce((t, l) => applyLayer(l, t), a);

  const batch = new Float32Array(n * H * W * C);
  images.forEach((img, i) => batch.set(img, i * H * W * C));
  const a = tf.tidy(() => trunk.reduce((t, l) => applyLayer(l, t), tf.tensor4d(batch, [n, H, W, C]) as tf.Tensor));
  const logitsT = tf.tidy(() => runHead(a));
  const probsT = tf.softmax(logitsT);
  const logits = splitRows(await logitsT.data() as Float32Array, n);
  const probabilities = splitRows(await probsT.data() as Float32Array, n);
  const numClasses = logits[0].length;
  const [, h, w, k] = a.shape;
  const aData = await a.data() as Float32Array;

  const cams: Float32Array[][] = [];
  const scores: number[][] = [];
  for (let i = 0; i < n; i++) {
    const order = Array.from(probabilities[i].keys()).sort((p, q) => probabilities[i][q] - probabilities[i][p] || p - q);
    const ai = aData.subarray(i * h * w * k, (i + 1) * h * w * k);
    const imgCams: Float32Array[] = [];
    const imgScores: number[] = [];
    for (const t of targets[i]) {
      const cls = t >= 0 ? t : order[-t - 1];
      const onehot = tf.oneHot([cls], numClasses).toFloat();
      const scoreFn = (x: tf.Tensor): tf.Scalar => {
        const out = runHead(x);
        const s = score === 'prob' ? tf.softmax(out) : out;
        return tf.sum(tf.mul(s, onehot));
      };
      const aOne = tf.tensor4d(ai, [1, h, w, k]);
      const gradT = tf.grad(scoreFn)(aOne);
      const gData = await gradT.data() as Float32Array;
      imgScores.push(score === 'prob' ? probabilities[i][cls] : logits[i][cls]);
      imgCams.push(camFormula(method, ai, gData, h, w, k));
      tf.dispose([onehot, aOne, gradT]);
    }
    cams.push(imgCams);
    scores.push(imgScores);
  }
  tf.dispose([a, logitsT, probsT]);
  return { logits, probabilities, cams, scores, camHeight: h, camWidth: w };
}

function splitRows(data: Float32Array, n: number): Float32Array[] {
  const c = data.length / n;
  return Array.from({ length: n }, (_, i) => data.slice(i * c, (i + 1) * c));
}

/** design.md §4, NHWC [h,w,k] arrays, in float64 loops. */
export function camFormula(method: CamMethod, a: Float32Array, g: Float32Array, h: number, w: number, k: number): Float32Array {
  const eps = 1e-7;
  const hw = h * w;
  const weights = new Float64Array(k);
  const at = (p: number, c: number): number => a[p * k + c];
  const gt = (p: number, c: number): number => g[p * k + c];
  const map = new Float32Array(hw);
  if (method === 'hirescam') {
    for (let p = 0; p < hw; p++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += gt(p, c) * at(p, c);
      map[p] = Math.max(s, 0);
    }
    return map;
  }
  if (method === 'layercam') {
    for (let p = 0; p < hw; p++) {
      let s = 0;
      for (let c = 0; c < k; c++) s += Math.max(gt(p, c), 0) * at(p, c);
      map[p] = Math.max(s, 0);
    }
    return map;
  }
  for (let c = 0; c < k; c++) {
    let sumG = 0;
    let sumA = 0;
    let sumGA = 0;
    for (let p = 0; p < hw; p++) {
      sumG += gt(p, c);
      sumA += at(p, c);
      sumGA += gt(p, c) * at(p, c);
    }
    if (method === 'gradcam') weights[c] = sumG / hw;
    else if (method === 'xgradcam') weights[c] = sumGA / (sumA + eps);
    else {
      let wc = 0;
      for (let p = 0; p < hw; p++) {
        const gv = gt(p, c);
        if (gv === 0) continue;
        const alpha = (gv * gv) / (2 * gv * gv + sumA * gv * gv * gv + eps);
        wc += alpha * Math.max(gv, 0);
      }
      weights[c] = wc;
    }
  }
  for (let p = 0; p < hw; p++) {
    let s = 0;
    for (let c = 0; c < k; c++) s += weights[c] * at(p, c);
    map[p] = Math.max(s, 0);
  }
  return map;
}
