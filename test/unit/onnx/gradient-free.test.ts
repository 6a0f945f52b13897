/**
 * Eigen-CAM and Score-CAM need no gradient, so ONNX Runtime serves them from a forward-only graph:
 * on the NumPy reference (scripts/reference/gradcam_reference.py), with Score-CAM's masked rows
 * forwarded in chunks that do not divide the row count, and on a model whose head the ONNX
 * compiler cannot differentiate (an overlapping max-pool after the target), where both maps must
 * match the TF.js engine (autodiff-free forward in another runtime).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/shared/errors.js';
import { GRADIENT_FREE_METHODS } from '../../../src/shared/explain-options.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { createOnnxEngine, type OnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { compareWithReference, loadReference } from '../engine/reference-fixture.js';

const ref = loadReference();

describe('ONNX forward-only graph vs NumPy reference', () => {
  let engine: OnnxEngine;
  beforeAll(async () => {
    engine = await createOnnxEngine({ spec: ref.spec, layer: ref.layer, cache: null, runtime: { intraOpThreads: 1 }, methods: [...GRADIENT_FREE_METHODS] });
  });
  afterAll(async () => {
    await engine.dispose();
  });

  for (const method of GRADIENT_FREE_METHODS) {
    it(`${method} (logit score, 3 masked rows per forward) matches within 1e-3`, async () => {
      const { compared, images } = await compareWithReference(engine, ref, method, 'logit', 3);
      expect(compared).toBeGreaterThan(images * 3);
    });
  }

  it('refuses a gradient method with a ModelError that says what the graph serves', async () => {
    const request = { images: ref.images.slice(0, 1), targets: { kind: 'top1' as const }, topK: 1, method: 'gradcam' as const, score: 'logit' as const };
    await expect(engine.explain(request)).rejects.toThrow(ModelError);
    await expect(engine.explain(request)).rejects.toThrow(/forward-only graph, which serves eigencam and scorecam/);
  });
});

describe('a head the ONNX compiler cannot differentiate', () => {
  const spec = vggShapedSpec({ seed: 8, inputStd: 64 });
  // An overlapping max-pool after the target has no closed-form backward in the ONNX compiler.
  const undifferentiable = { ...spec, layers: spec.layers.map((l) => (l.name === 'block2_pool' && l.type === 'maxpool2d' ? { ...l, poolSize: [3, 3] as [number, number], padding: 'same' as const } : l)) };

  it('runs eigencam and scorecam on ONNX Runtime, equal to the TF.js engine within 1e-3', async () => {
    const onnx = await createEngine({ spec: undifferentiable, engine: 'onnx', methods: ['scorecam'], onnx: { cacheDir: null, intraOpThreads: 1 } });
    const tfjs = await createTfjsEngine({ spec: undifferentiable, backend: 'wasm' });
    try {
      expect(onnx.info.engine).toBe('onnx');
      const [h, w] = [onnx.info.inputHeight, onnx.info.inputWidth];
      let seed = 7;
      const rand = (): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31) * 255 - 120;
      const images = [0, 1].map(() => ({ data: Float32Array.from({ length: h * w * 3 }, rand), height: h, width: w }));
      for (const method of GRADIENT_FREE_METHODS) {
        const request = { images, targets: { kind: 'topk' as const }, topK: 2, method, score: 'logit' as const, forwardRows: 5 };
        const [a, b] = [await onnx.explain(request), await tfjs.explain(request)];
        a.forEach((r, i) => {
          expect(r.cams.map((c) => c.classIndex)).toEqual(b[i].cams.map((c) => c.classIndex));
          r.cams.forEach((cam, t) => {
            expect(cam.degenerate).toBeNull();
            let worst = 0;
            cam.grid.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - b[i].cams[t].grid[j]))));
            expect(worst).toBeLessThan(1e-3);
          });
        });
      }
    } finally {
      await onnx.dispose();
      await tfjs.dispose();
    }
  });
});
