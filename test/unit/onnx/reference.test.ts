/**
 * The ONNX engine against the committed NumPy reference (scripts/reference/gradcam_reference.py):
 * float64 forward and a hand-written head backward, independent of both ONNX Runtime and TF.js.
 * Every image is explained for every class at once (T = number of classes) in a single run.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { CAM_METHODS, SCORE_MODES } from '../../../src/shared/explain-options.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import type { OnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { compareWithReference, loadReference } from '../engine/reference-fixture.js';

const ref = loadReference();
let engine: OnnxEngine;

beforeAll(async () => {
  engine = await createOnnxEngine({ spec: ref.spec, layer: ref.layer, cache: null, runtime: { intraOpThreads: 1 } });
});
afterAll(async () => {
  await engine.dispose();
});

describe('ONNX engine vs NumPy reference', () => {
  test('probabilities within 1e-4 and logits within 1e-4 relative', async () => {
    const probs = await engine.predict(ref.images);
    probs.forEach((p, i) => ref.expected.probabilities[i].forEach((q, c) => expect(Math.abs(p[c] - q)).toBeLessThan(1e-4)));
    const results = await engine.explain({ images: ref.images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });
    results.forEach((r, i) => ref.expected.logits[i].forEach((z, c) => expect(Math.abs(r.logits![c] - z)).toBeLessThan(1e-4 * Math.max(1, Math.abs(z)))));
    expect(results[0].cams[0].height).toBe(ref.expected.targetShape[0]);
  });

  for (const score of SCORE_MODES) {
    for (const method of CAM_METHODS) {
      test(`${method} with ${score} score: every image and class within 1e-3`, async () => {
        const { compared, images } = await compareWithReference(engine, ref, method, score);
        expect(compared).toBeGreaterThan(images * 3);
      });
    }
  }
});
