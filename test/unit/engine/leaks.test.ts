import * as tf from '@tensorflow/tfjs';
import { expect, test } from 'vitest';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import { CAM_METHODS } from '../../../src/shared/explain-options.js';
import { seededImages } from './helpers.js';

test('tf.memory().numTensors stays flat over 1,000 images, every method and target kind', async () => {
  const spec = vggShapedSpec({ seed: 2, inputShape: [8, 8, 3], blocks: [{ filters: 4, convs: 1 }, { filters: 4, convs: 1 }], denseUnits: [8], classes: 5, inputStd: 60 });
  const before = tf.memory().numTensors;
  const engine = await createTfjsEngine({ spec, backend: 'wasm' });
  const images = seededImages(25, 8, 8, 1);
  // Warm-up: kernels and the engine's weights allocate once.
  await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'prob' });
  const baseline = tf.memory().numTensors;
  let seen = 0;
  for (let batch = 0; batch < 40; batch++) {
    const method = CAM_METHODS[batch % CAM_METHODS.length];
    const targets = batch % 3 === 0 ? { kind: 'top1' as const } : batch % 3 === 1 ? { kind: 'topk' as const } : { kind: 'indices' as const, indices: [0, 4] };
    const results = await engine.explain({ images, targets, topK: 3, method, score: batch % 2 ? 'prob' : 'logit' });
    seen += results.length;
    expect(tf.memory().numTensors).toBe(baseline);
  }
  await engine.predict(images);
  expect(seen).toBe(1000);
  expect(tf.memory().numTensors).toBe(baseline);
  // A rejected request leaks nothing either.
  await expect(engine.explain({ images, targets: { kind: 'indices', indices: [9] }, topK: 1, method: 'gradcam', score: 'prob' })).rejects.toThrow();
  expect(tf.memory().numTensors).toBe(baseline);
  await engine.dispose();
  expect(tf.memory().numTensors).toBe(before);
});
