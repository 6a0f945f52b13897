/**
 * Agreement with an independent implementation: the NumPy reference computes the forward pass in
 * float64 and the head's backward by hand; the engine runs TF.js in float32 with autodiff.
 * Two models: a VGG16-style head (pool, flatten, dense ReLU, dropout, dense softmax) and a global
 * average pooling head.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CAM_METHODS, SCORE_MODES } from '../../../src/shared/explain-options.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import type { TfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import { compareWithReference, loadReference } from './reference-fixture.js';

for (const prefix of ['gradcam', 'gradcam_gap']) {
  describe(`TF.js engine vs NumPy reference (${prefix})`, () => {
    const ref = loadReference(prefix);
    let engine: TfjsEngine;

    beforeAll(async () => {
      engine = await createTfjsEngine({ spec: ref.spec, layer: ref.layer, backend: 'wasm' });
    });
    afterAll(async () => {
      await engine.dispose();
    });

    test('target layer shape and probabilities within 1e-4, logits within 1e-4 relative', async () => {
      const [h, w] = ref.expected.targetShape;
      expect(engine.info.layer).toBe(ref.layer);
      const probs = await engine.predict(ref.images);
      expect(probs).toHaveLength(ref.images.length);
      probs.forEach((p, i) => {
        ref.expected.probabilities[i].forEach((q, c) => expect(Math.abs(p[c] - q)).toBeLessThan(1e-4));
      });
      const [first] = await engine.explain({ images: ref.images.slice(0, 1), targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });
      expect(first.cams[0].height).toBe(h);
      expect(first.cams[0].width).toBe(w);
      ref.expected.logits[0].forEach((z, c) => expect(Math.abs(first.logits![c] - z)).toBeLessThan(1e-4 * Math.max(1, Math.abs(z))));
    });

    for (const score of SCORE_MODES) {
      for (const method of CAM_METHODS) {
        test(`${method} with ${score} score: every image and class within 1e-3`, async () => {
          const { compared, images } = await compareWithReference(engine, ref, method, score);
          // The fixture must exercise real maps, not only degenerate ones.
          expect(compared).toBeGreaterThan(images * 2);
        });
      }
    }
  });
}
