/**
 * The training convolution's custom gradients (scripts/demo-model/conv-grad.ts) against central
 * finite differences of an independent float64 convolution written out in plain loops.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../../scripts/demo-model/backend.js';
import { makeSameConv } from '../../../scripts/demo-model/conv-grad.js';
import { Prng } from '../../../scripts/demo-model/prng.js';

const [N, H, W, C, O] = [2, 5, 4, 3, 2];

/** Σ conv_same(x, k) ⊙ r in float64, NHWC / HWIO, zero padding of 1. */
function lossRef(x: Float64Array, k: Float64Array, r: Float64Array): number {
  let total = 0;
  for (let n = 0; n < N; n++)
    for (let h = 0; h < H; h++)
      for (let w = 0; w < W; w++)
        for (let o = 0; o < O; o++) {
          let acc = 0;
          for (let i = 0; i < 3; i++)
            for (let j = 0; j < 3; j++) {
              const hh = h + i - 1;
              const ww = w + j - 1;
              if (hh < 0 || hh >= H || ww < 0 || ww >= W) continue;
              for (let c = 0; c < C; c++) acc += x[((n * H + hh) * W + ww) * C + c]! * k[((i * 3 + j) * C + c) * O + o]!;
            }
          total += acc * r[((n * H + h) * W + w) * O + o]!;
        }
  return total;
}

function finiteDiff(f: (v: Float64Array) => number, v: Float64Array, eps = 1e-4): Float64Array {
  const g = new Float64Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const keep = v[i]!;
    v[i] = keep + eps;
    const up = f(v);
    v[i] = keep - eps;
    const down = f(v);
    v[i] = keep;
    g[i] = (up - down) / (2 * eps);
  }
  return g;
}

function random(prng: Prng, n: number): Float64Array {
  return Float64Array.from({ length: n }, () => prng.normal());
}

describe('demo-model training convolution', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });

  const prng = new Prng(42);
  const x = random(prng, N * H * W * C);
  const k = random(prng, 9 * C * O);
  const r = random(prng, N * H * W * O);

  it.each([true, false])('forward and both gradients match finite differences (inputGrad=%s)', (inputGrad) => {
    const conv = makeSameConv(inputGrad);
    const xt = tf.tensor4d(Float32Array.from(x), [N, H, W, C]);
    const kt = tf.tensor4d(Float32Array.from(k), [3, 3, C, O]);
    const rt = tf.tensor4d(Float32Array.from(r), [N, H, W, O]);
    const loss = (a: tf.Tensor, b: tf.Tensor): tf.Scalar => tf.sum(tf.mul(conv(a as tf.Tensor4D, b as tf.Tensor4D), rt));
    const value = loss(xt, kt);
    const [dx, dk] = tf.grads(loss)([xt, kt]);
    expect(value.dataSync()[0]).toBeCloseTo(lossRef(x, k, r), 3);

    const dkRef = finiteDiff((v) => lossRef(x, v, r), k);
    const dkGot = dk!.dataSync();
    dkRef.forEach((ref, i) => expect(dkGot[i]).toBeCloseTo(ref, 2));

    const dxGot = dx!.dataSync();
    if (inputGrad) {
      const dxRef = finiteDiff((v) => lossRef(v, k, r), x);
      dxRef.forEach((ref, i) => expect(dxGot[i]).toBeCloseTo(ref, 2));
    } else {
      // The first layer's input is data: its gradient is deliberately skipped.
      expect(Array.from(dxGot).every((v) => v === 0)).toBe(true);
    }
    tf.dispose([xt, kt, rt, value, dx!, dk!]);
  });
});
