import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import type { ModelSpec, DenseLayerSpec, Conv2DLayerSpec } from '../../../src/worker/model/spec.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import type { TfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import { compileModel, defaultTargetLayer } from '../../../src/worker/engine/tfjs/build.js';
import { maxPoolFirstTie } from '../../../src/worker/engine/tfjs/max-pool-first.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { CAM_METHODS } from '../../../src/shared/explain-options.js';
import type { TargetSpec } from '../../../src/shared/explain-options.js';
import { ConfigError, InvalidInputError, ModelError } from '../../../src/shared/errors.js';
import { seededImages } from './helpers.js';

const spec = vggShapedSpec({ seed: 5, inputShape: [24, 24, 3], blocks: [{ filters: 8, convs: 2 }, { filters: 16, convs: 2 }], denseUnits: [32], classes: 10, inputStd: 60 });
let engine: TfjsEngine;

beforeAll(async () => {
  engine = await createTfjsEngine({ spec, backend: 'wasm' });
});
afterAll(async () => {
  await engine.dispose();
});

function withScaledHead(base: ModelSpec, factor: number): ModelSpec {
  return {
    ...base,
    layers: base.layers.map((l) => (l.name === 'predictions' ? { ...(l as DenseLayerSpec), kernel: (l as DenseLayerSpec).kernel.map((v) => v * factor) } : l)),
  };
}

describe('TfjsEngine', () => {
  test('reports the engine, backend, default target layer and shapes', () => {
    expect(engine.info).toMatchObject({ engine: 'tfjs', backend: 'wasm', layer: 'block2_conv2', numClasses: 10, inputHeight: 24, inputWidth: 24, weightsHash: spec.weightsHash });
    expect(engine.info.device).toMatch(/wasm/);
  });

  test('probabilities sum to 1 and predict() equals explain() probabilities', async () => {
    const images = seededImages(3, 24, 24, 1);
    const probs = await engine.predict(images);
    const results = await engine.explain({ images, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' });
    probs.forEach((p, i) => {
      expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 5);
      expect(Array.from(results[i].probabilities)).toEqual(Array.from(p));
      // softmax(logits) = probabilities
      const l = results[i].logits!;
      const m = Math.max(...l);
      const z = l.reduce((s, v) => s + Math.exp(v - m), 0);
      l.forEach((v, c) => expect(Math.exp(v - m) / z).toBeCloseTo(p[c], 5));
    });
  });

  test('targets: top1 is the argmax, topk the k best in order, indices as given', async () => {
    const images = seededImages(2, 24, 24, 2);
    const top1 = await engine.explain({ images, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'logit' });
    const topk = await engine.explain({ images, targets: { kind: 'topk' }, topK: 3, method: 'gradcam', score: 'logit' });
    const idx = await engine.explain({ images, targets: { kind: 'indices', indices: [9, 0] }, topK: 5, method: 'gradcam', score: 'logit' });
    for (let i = 0; i < 2; i++) {
      const p = Array.from(top1[i].probabilities);
      const order = p.map((v, c) => [v, c]).sort((a, b) => b[0] - a[0]).map(([, c]) => c);
      expect(top1[i].cams.map((c) => c.classIndex)).toEqual([order[0]]);
      expect(topk[i].cams.map((c) => c.classIndex)).toEqual(order.slice(0, 3));
      expect(idx[i].cams.map((c) => c.classIndex)).toEqual([9, 0]);
      expect(idx[i].cams[0].score).toBeCloseTo(idx[i].logits![9], 6);
      // The top-1 map computed alone equals the first map of the top-k expansion.
      Array.from(top1[i].cams[0].grid).forEach((v, j) => expect(topk[i].cams[0].grid[j]).toBeCloseTo(v, 5));
    }
  });

  for (const method of CAM_METHODS) {
    test(`batch invariance (${method}): an image's CAMs alone equal its CAMs inside a batch of 8`, async () => {
      const images = seededImages(8, 24, 24, 3);
      const targets: TargetSpec = { kind: 'topk' };
      const batch = await engine.explain({ images, targets, topK: 2, method, score: 'logit' });
      for (const i of [0, 5]) {
        const [alone] = await engine.explain({ images: [images[i]], targets, topK: 2, method, score: 'logit' });
        expect(alone.cams.map((c) => c.classIndex)).toEqual(batch[i].cams.map((c) => c.classIndex));
        alone.cams.forEach((cam, t) => {
          expect(cam.degenerate).toBe(batch[i].cams[t].degenerate);
          expect(cam.rawMax).toBeCloseTo(batch[i].cams[t].rawMax, 4);
          cam.grid.forEach((v, j) => expect(Math.abs(v - batch[i].cams[t].grid[j])).toBeLessThan(1e-4));
        });
      }
      // Different images give different maps: the batch is not pooled into one.
      expect(Array.from(batch[0].cams[0].grid)).not.toEqual(Array.from(batch[5].cams[0].grid));
    });
  }

  test('normalised grids lie in [0,1] with max 1 when not degenerate', async () => {
    const results = await engine.explain({ images: seededImages(4, 24, 24, 4), targets: { kind: 'topk' }, topK: 3, method: 'gradcam', score: 'logit' });
    const cams = results.flatMap((r) => r.cams);
    expect(cams.filter((c) => c.degenerate === null).length).toBeGreaterThan(0);
    for (const cam of cams) {
      expect(cam.height * cam.width).toBe(cam.grid.length);
      if (cam.degenerate === null) {
        expect(Math.max(...cam.grid)).toBeCloseTo(1, 6);
        expect(Math.min(...cam.grid)).toBeGreaterThanOrEqual(0);
        expect(cam.rawMean).toBeLessThanOrEqual(cam.rawMax);
      } else {
        expect(cam.grid.every((v) => v === 0)).toBe(true);
      }
    }
  });
});

describe('degenerate maps', () => {
  test('a saturated softmax flags the prob-score map and suggests --score logit; the logit score works', async () => {
    const saturated = await createTfjsEngine({ spec: withScaledHead(spec, 2000), backend: 'wasm' });
    const images = seededImages(2, 24, 24, 6);
    const prob = await saturated.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'prob' });
    const logit = await saturated.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });
    for (let i = 0; i < 2; i++) {
      expect(Math.max(...prob[i].probabilities)).toBeGreaterThan(1 - 1e-6);
      const cam = prob[i].cams[0];
      expect(cam.degenerate).toMatch(/saturated/);
      expect(cam.degenerate).toMatch(/--score logit/);
      expect(cam.grid.every((v) => v === 0)).toBe(true);
      expect(Number.isFinite(cam.rawMax)).toBe(true);
      expect(logit[i].cams[0].degenerate).toBeNull();
      expect(Math.max(...logit[i].cams[0].grid)).toBeCloseTo(1, 6);
    }
    await saturated.dispose();
  });

  test('a dead target layer (all activations 0) gives zero maps with a reason, no NaN', async () => {
    const dead: ModelSpec = {
      ...spec,
      layers: spec.layers.map((l) => (l.name === 'block2_conv2' ? { ...(l as Conv2DLayerSpec), bias: new Float32Array(16).fill(-1e4) } : l)),
    };
    const e = await createTfjsEngine({ spec: dead, backend: 'wasm' });
    for (const method of CAM_METHODS) {
      const [r] = await e.explain({ images: seededImages(1, 24, 24, 7), targets: { kind: 'top1' }, topK: 1, method, score: 'logit' });
      expect(r.cams[0].degenerate).toMatch(/zero/);
      expect(r.cams[0].rawMax).toBe(0);
      expect(r.cams[0].grid.every((v) => v === 0)).toBe(true);
    }
    await e.dispose();
  });

  test('non-finite scores give a NaN/Inf flag instead of NaN pixels', async () => {
    // A NaN bias makes every softmax output NaN (ReLU on wasm maps NaN to 0, so NaN inputs alone do not reach the head).
    const broken: ModelSpec = {
      ...spec,
      layers: spec.layers.map((l) => (l.name === 'predictions' ? { ...(l as DenseLayerSpec), bias: new Float32Array(10).fill(0).map((v, i) => (i === 3 ? Number.NaN : v)) } : l)),
    };
    const e = await createTfjsEngine({ spec: broken, backend: 'wasm' });
    const [r] = await e.explain({ images: seededImages(1, 24, 24, 8), targets: { kind: 'indices', indices: [1] }, topK: 1, method: 'gradcam', score: 'prob' });
    expect(r.cams[0].degenerate).toMatch(/NaN or Inf/);
    expect(r.cams[0].grid.every((v) => v === 0)).toBe(true);
    await e.dispose();
  });
});

describe('validation', () => {
  const images = seededImages(1, 24, 24, 9);
  test('out-of-range and duplicate class indices name --targets', async () => {
    const bad = engine.explain({ images, targets: { kind: 'indices', indices: [3, 10] }, topK: 1, method: 'gradcam', score: 'prob' });
    await expect(bad).rejects.toBeInstanceOf(ConfigError);
    await expect(bad).rejects.toThrow(/--targets: class index 10 out of range: the model has 10 classes/);
    await expect(engine.explain({ images, targets: { kind: 'indices', indices: [-1] }, topK: 1, method: 'gradcam', score: 'prob' })).rejects.toThrow(/--targets/);
    await expect(engine.explain({ images, targets: { kind: 'indices', indices: [2, 2] }, topK: 1, method: 'gradcam', score: 'prob' })).rejects.toThrow(/duplicate/);
  });
  test('unknown method, score and bad top-k name their flag', async () => {
    await expect(engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam-x' as never, score: 'prob' })).rejects.toThrow(/--method: expected one of gradcam/);
    await expect(engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'raw' as never })).rejects.toThrow(/--score/);
    await expect(engine.explain({ images, targets: { kind: 'topk' }, topK: 0, method: 'gradcam', score: 'prob' })).rejects.toThrow(/--top-k/);
  });
  test('an image of the wrong size is rejected with INPUT_SHAPE', async () => {
    const wrong = { data: new Float32Array(10 * 10 * 3), height: 10, width: 10 };
    const err = await engine.predict([wrong]).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).code).toBe('INPUT_SHAPE');
  });
  test('unknown and non-spatial target layers give a ModelError naming the layer', () => {
    expect(() => compileModel(spec, 'block9_conv1')).toThrow(ModelError);
    expect(() => compileModel(spec, 'block9_conv1')).toThrow(/"block9_conv1".*no such layer.*block1_conv1/);
    expect(() => compileModel(spec, 'fc1')).toThrow(/"fc1".*not a 4-D feature map/);
    expect(compileModel(spec, 'block1_pool').targetShape).toEqual([12, 12, 8]);
    expect(defaultTargetLayer(spec)).toBe('block2_conv2');
  });
  test('the factory builds TF.js when asked for it (or auto with a forced TF.js backend) and refuses unknown engines', async () => {
    for (const choice of ['tfjs', 'auto'] as const) {
      const e = await createEngine({ spec, engine: choice, backend: 'wasm' });
      expect(e.info).toMatchObject({ engine: 'tfjs', backend: 'wasm', layer: 'block2_conv2' });
      await e.dispose();
    }
    await expect(createEngine({ spec, engine: 'torch' as never })).rejects.toThrow(/--engine/);
  });
});

describe('maxPoolFirstTie', () => {
  test('same values as maxPool; gradient to the first maximum of each window, dropped edges get 0', async () => {
    // 5x5 input, 2x2/2 valid pooling → 2x2; the last row and column are dropped.
    const values = [0, 0, 1, 1, 9, 0, 0, 1, 1, 9, 2, 3, 4, 4, 9, 3, 2, 4, 0, 9, 9, 9, 9, 9, 9];
    const x = tf.tensor4d(values, [1, 5, 5, 1]);
    const y = maxPoolFirstTie(x, [2, 2], [2, 2], 'valid');
    expect(Array.from(await y.data())).toEqual(Array.from(await tf.maxPool(x, 2, 2, 'valid').data()));
    const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(maxPoolFirstTie(t as tf.Tensor4D, [2, 2], [2, 2], 'valid'), tf.tensor4d([1, 2, 3, 4], [1, 2, 2, 1]))))(x);
    // window (0,0): all zero → first; (0,1): all 1 → first; (1,0): 3 at (2,1) and (3,0) → (2,1); (1,1): 4 at (2,2) first.
    const want = new Array(25).fill(0);
    want[0] = 1;
    want[2] = 2;
    want[11] = 3;
    want[12] = 4;
    expect(Array.from(await g.data())).toEqual(want);
    tf.dispose([x, y, g]);
  });
});
