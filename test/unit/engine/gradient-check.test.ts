/**
 * Gradient check: Grad-CAM's channel weight w_k = mean_ij dS/dA_k must equal the finite-difference
 * derivative of the score along "add h to every position of channel k", divided by h·w. Shifting a
 * whole channel keeps every max-pool window's argmax, so the score is smooth along that direction
 * except at ReLU kinks of the dense layers, which a small step avoids.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, test } from 'vitest';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { initBackend } from '../../../src/worker/engine/tfjs/backend.js';
import { compileModel } from '../../../src/worker/engine/tfjs/build.js';
import { createTfjsEngine, headGradient } from '../../../src/worker/engine/tfjs/engine.js';
import { SCORE_MODES } from '../../../src/shared/explain-options.js';
import { seededImages } from './helpers.js';

const spec = vggShapedSpec({ seed: 7, inputShape: [16, 16, 3], blocks: [{ filters: 8, convs: 2 }, { filters: 12, convs: 1 }], denseUnits: [24], classes: 6, inputStd: 60 });
const LAYER = 'block2_conv1';

beforeAll(async () => {
  await initBackend('wasm');
});

describe('head gradient vs finite differences', () => {
  for (const score of SCORE_MODES) {
    test(`channel weights match central differences (${score} score)`, async () => {
      const model = compileModel(spec, LAYER);
      const images = seededImages(3, 16, 16, 11);
      const x = tf.tensor4d(Float32Array.from(images.flatMap((im) => Array.from(im.data))), [3, 16, 16, 3]);
      const a = model.features(x).target;
      const [h, w, c] = model.targetShape;
      const aData = (await a.data()) as Float32Array;
      const classes = [0, 3, 5];
      const g = headGradient(model, a, classes, score);
      const gData = (await g.data()) as Float32Array;
      g.dispose();

      const scoreOf = (act: Float32Array, row: number): number =>
        tf.tidy(() => {
          const logits = model.head(tf.tensor4d(act, [1, h, w, c]));
          const s = score === 'logit' ? logits : model.probabilities(logits);
          return s.dataSync()[classes[row]];
        });
      const step = 1e-2;
      let checked = 0;
      for (let row = 0; row < classes.length; row++) {
        const base = aData.slice(row * h * w * c, (row + 1) * h * w * c);
        const weights: number[] = [];
        const fds: number[] = [];
        for (let k = 0; k < c; k++) {
          const plus = base.slice();
          const minus = base.slice();
          for (let p = k; p < plus.length; p += c) {
            plus[p] += step;
            minus[p] -= step;
          }
          fds.push((scoreOf(plus, row) - scoreOf(minus, row)) / (2 * step) / (h * w));
          let sum = 0;
          for (let p = k; p < base.length; p += c) sum += gData[row * h * w * c + p];
          weights.push(sum / (h * w));
        }
        const scale = Math.max(...weights.map(Math.abs));
        expect(scale).toBeGreaterThan(0);
        weights.forEach((wk, k) => expect(Math.abs(wk - fds[k])).toBeLessThan(2e-3 * scale + 1e-7));
        checked += c;
      }
      expect(checked).toBe(classes.length * c);
      a.dispose();
      x.dispose();
      model.dispose();
    });
  }

  test('the engine gradcam map equals ReLU(sum_k w_k A_k) built from finite-difference weights', async () => {
    const engine = await createTfjsEngine({ spec, layer: LAYER, backend: 'wasm' });
    const model = compileModel(spec, LAYER);
    const [image] = seededImages(1, 16, 16, 21);
    const [result] = await engine.explain({ images: [image], targets: { kind: 'indices', indices: [2] }, topK: 1, method: 'gradcam', score: 'logit' });
    const a = model.features(tf.tensor4d(image.data, [1, 16, 16, 3])).target;
    const [h, w, c] = model.targetShape;
    const base = (await a.data()) as Float32Array;
    const logitOf = (act: Float32Array): number => tf.tidy(() => model.head(tf.tensor4d(act, [1, h, w, c])).dataSync()[2]);
    const step = 1e-2;
    const raw = new Float64Array(h * w);
    for (let k = 0; k < c; k++) {
      const plus = base.slice();
      const minus = base.slice();
      for (let p = k; p < base.length; p += c) {
        plus[p] += step;
        minus[p] -= step;
      }
      const wk = (logitOf(plus) - logitOf(minus)) / (2 * step) / (h * w);
      for (let p = 0; p < h * w; p++) raw[p] += wk * base[p * c + k];
    }
    const relu = Array.from(raw, (v) => Math.max(v, 0));
    const max = Math.max(...relu);
    expect(result.cams[0].degenerate).toBeNull();
    expect(Math.abs(result.cams[0].rawMax - max)).toBeLessThan(2e-3 * max);
    relu.forEach((v, p) => expect(Math.abs(result.cams[0].grid[p] - v / max)).toBeLessThan(2e-3));
    a.dispose();
    model.dispose();
    await engine.dispose();
  });

  test('the stored-transpose dense backward equals the plain matMul backward', async () => {
    const plain = compileModel(spec, LAYER, { pretransposeDense: false });
    const tuned = compileModel(spec, LAYER, { pretransposeDense: true });
    const images = seededImages(2, 16, 16, 31);
    const x = tf.tensor4d(Float32Array.from(images.flatMap((im) => Array.from(im.data))), [2, 16, 16, 3]);
    const a = plain.features(x).target;
    for (const score of SCORE_MODES) {
      const g1 = headGradient(plain, a, [1, 4], score);
      const g2 = headGradient(tuned, a, [1, 4], score);
      const [v1, v2] = [await g1.data(), await g2.data()];
      const scale = Math.max(...Array.from(v1, Math.abs));
      expect(scale).toBeGreaterThan(0);
      v1.forEach((v, i) => expect(Math.abs(v - v2[i])).toBeLessThanOrEqual(1e-5 * scale));
      tf.dispose([g1, g2]);
    }
    tf.dispose([a, x]);
    plain.dispose();
    tuned.dispose();
  });
});
