/**
 * Full-size VGG16 (random weights, 224x224, 138M parameters): ONNX engine vs TF.js engine at
 * batch 1, every method. Opt-in (`npm run test:parity-vgg16`, or GRADCAM_PARITY_VGG16=1) because
 * building both engines moves ~2 GB and the TF.js forward alone takes seconds on a shared CPU.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAM_METHODS } from '../../../src/shared/explain-options.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import { randomVgg16Spec } from '../../../src/worker/model/vgg-shaped.js';
import { randomImages } from './helpers/images.js';

const enabled = process.env.GRADCAM_PARITY_VGG16 === '1';

describe.runIf(enabled)('full-size VGG16: ONNX vs TF.js engine', () => {
  let onnx: Engine;
  let tfjs: Engine;
  beforeAll(async () => {
    const spec = randomVgg16Spec({ seed: 1, inputStd: 64 });
    onnx = await createOnnxEngine({ spec, cache: null });
    tfjs = await createTfjsEngine({ spec, backend: 'wasm' });
  }, 600_000);
  afterAll(async () => {
    await onnx?.dispose();
    await tfjs?.dispose();
  });

  it('block5_conv3 14x14 CAMs and probabilities agree for every method (batch 1)', async () => {
    expect(onnx.info.layer).toBe('block5_conv3');
    const images = randomImages(1, 224, 224, 5);
    let informative = 0;
    for (const method of CAM_METHODS) {
      for (const score of ['prob', 'logit'] as const) {
        const request = { images, targets: { kind: 'topk' as const }, topK: 2, method, score };
        const [o] = await onnx.explain(request);
        const [t] = await tfjs.explain(request);
        let worstP = 0;
        o.probabilities.forEach((p, c) => (worstP = Math.max(worstP, Math.abs(p - t.probabilities[c]))));
        expect(worstP).toBeLessThan(1e-4);
        expect(o.cams.map((c) => c.classIndex)).toEqual(t.cams.map((c) => c.classIndex));
        o.cams.forEach((cam, j) => {
          expect([cam.height, cam.width]).toEqual([14, 14]);
          expect(cam.degenerate === null).toBe(t.cams[j].degenerate === null);
          let worst = 0;
          cam.grid.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - t.cams[j].grid[k]))));
          expect(worst).toBeLessThan(1e-3);
          if (cam.degenerate === null) informative++;
        });
      }
    }
    // Random weights must still give real maps, or the comparison would be of zeros.
    expect(informative).toBeGreaterThan(10);
  }, 600_000);
});
