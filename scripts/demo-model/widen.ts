/**
 * Function-preserving widening of the demo network (Net2WiderNet, Chen et al. 2016): a trained
 * narrow network becomes a wider one that computes the same logits, so a wider network can start
 * from what the narrow one already learned instead of from scratch.
 *
 * Each new filter copies an existing one of the same layer (chosen by the seeded PRNG); the next
 * layer's weights reading a copied channel are divided by the number of copies, so the sum it
 * computes is unchanged. ReLU, max-pool and global average pooling act per channel, so they keep
 * copies identical. Identical copies would also receive identical gradients forever, so the copies'
 * incoming kernels get a little noise (`noise` times the layer's weight std) to let them diverge.
 */
import * as tf from '@tensorflow/tfjs';
import type { DemoArchitecture, DemoParams } from './architecture.js';
import type { Prng } from './prng.js';

export interface WidenOptions {
  /** Noise on copied filters' incoming weights, relative to the layer's weight std. Default 0.01. */
  noise: number;
}

export const DEFAULT_WIDEN_OPTIONS: Readonly<WidenOptions> = Object.freeze({ noise: 0.01 });

function filtersOf(arch: DemoArchitecture): number[] {
  return [...arch.blocks.map((b) => b.filters), arch.lastConvFilters];
}

/** Whether `params` already has the weight shapes of `arch`. */
export function matchesArchitecture(params: DemoParams, arch: DemoArchitecture): boolean {
  const filters = filtersOf(arch);
  return params.convs.length === filters.length && params.convs.every((c, i) => c.kernel.shape[3] === filters[i]);
}

/** Index map old→new for one layer: the first `from` filters are themselves, the rest random copies. */
function copyMap(prng: Prng, from: number, to: number): number[] {
  const map = Array.from({ length: to }, (_, j) => j);
  for (let j = from; j < to; j++) map[j] = Math.floor(prng.next() * from);
  return map;
}

function noiseTensor(prng: Prng, shape: number[], std: number): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = std * prng.normal();
  return tf.tensor(values, shape);
}

/**
 * New variables for `to` holding a widened copy of `params` (which stay untouched; the caller
 * disposes them). Every layer must have at least as many filters in `to` as now, and the same depth.
 */
export function widenParams(params: DemoParams, to: DemoArchitecture, prng: Prng, options: WidenOptions = DEFAULT_WIDEN_OPTIONS): DemoParams {
  const target = filtersOf(to);
  if (target.length !== params.convs.length) throw new RangeError(`cannot widen a ${params.convs.length}-conv network into ${target.length} convs`);
  const current = params.convs.map((c) => c.kernel.shape[3] as number);
  current.forEach((n, i) => {
    if ((target[i] as number) < n) throw new RangeError(`cannot narrow conv ${i} from ${n} to ${target[i]} filters`);
  });
  const maps = current.map((n, i) => copyMap(prng, n, target[i] as number));
  // Divide what the next layer reads from channel j by how many channels are copies of g(j).
  const inputScales = maps.map((map, i) => {
    const counts = new Array<number>(current[i] as number).fill(0);
    for (const g of map) counts[g] = (counts[g] ?? 0) + 1;
    return map.map((g) => 1 / (counts[g] as number));
  });
  const convs = params.convs.map(({ kernel, bias }, i) => {
    const map = maps[i] as number[];
    const from = current[i] as number;
    const data = tf.tidy(() => {
      let k = kernel as tf.Tensor;
      if (i > 0) {
        k = tf.gather(k, maps[i - 1] as number[], 2);
        k = tf.mul(k, tf.tensor(inputScales[i - 1] as number[]).reshape([1, 1, -1, 1]));
      }
      k = tf.gather(k, map, 3);
      const std = tf.moments(kernel).variance.sqrt().dataSync()[0] as number;
      const copies = k.shape[3] as number;
      if (copies > from) {
        const noise = noiseTensor(prng, [...k.shape.slice(0, 3), copies - from], options.noise * std);
        k = tf.concat([tf.slice(k, [0, 0, 0, 0], [-1, -1, -1, from]), tf.add(tf.slice(k, [0, 0, 0, from], [-1, -1, -1, -1]), noise)], 3);
      }
      return { k, b: tf.gather(bias, map) };
    });
    const widened = { kernel: tf.variable(data.k, true), bias: tf.variable(data.b, true) };
    tf.dispose([data.k, data.b]);
    return widened;
  });
  const last = maps.length - 1;
  const denseKernel = tf.tidy(() => tf.mul(tf.gather(params.dense.kernel, maps[last] as number[], 0), tf.tensor(inputScales[last] as number[]).reshape([-1, 1])));
  const denseBias = params.dense.bias.clone();
  const dense = { kernel: tf.variable(denseKernel, true), bias: tf.variable(denseBias, true) };
  tf.dispose([denseKernel, denseBias]);
  return { convs, dense };
}
