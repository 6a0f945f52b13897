/**
 * OnnxEngine behaviour beyond numerical parity: batch invariance, input validation, lifecycle.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, InvalidInputError } from '../../../src/shared/errors.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import type { OnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { diskGraphCache } from '../../../src/worker/engine/onnx/graph-cache.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { randomImages } from './helpers/images.js';

const spec = vggShapedSpec({ seed: 17, inputStd: 64 });
let engine: OnnxEngine;
beforeAll(async () => {
  engine = await createOnnxEngine({ spec, cache: null, runtime: { intraOpThreads: 1 } });
});
afterAll(async () => {
  await engine.dispose();
});

describe('OnnxEngine', () => {
  it('describes itself for provenance', () => {
    expect(engine.info).toMatchObject({ engine: 'onnx', backend: 'onnx-cpu', device: 'CPU (1 threads)', modelName: spec.name, layer: 'block2_conv2', inputHeight: 32, inputWidth: 32, numClasses: 10, weightsHash: spec.weightsHash });
  });

  it("an image's CAMs are the same alone and inside a batch of 8 (per-image pooling)", async () => {
    const images = randomImages(8, 32, 32, 41);
    for (const method of ['gradcam', 'gradcam++'] as const) {
      const request = { targets: { kind: 'topk' as const }, topK: 2, method, score: 'logit' as const };
      const batch = await engine.explain({ ...request, images });
      const alone = await engine.explain({ ...request, images: [images[5]] });
      expect(batch[5].cams.map((c) => c.classIndex)).toEqual(alone[0].cams.map((c) => c.classIndex));
      batch[5].cams.forEach((cam, j) => {
        const ref = alone[0].cams[j];
        cam.grid.forEach((v, k) => expect(Math.abs(v - ref.grid[k])).toBeLessThan(1e-5));
        expect(cam.rawMax).toBeCloseTo(ref.rawMax, 5);
      });
    }
  });

  it('resolves top-k from its own probabilities, best first', async () => {
    const images = randomImages(3, 32, 32, 43);
    const results = await engine.explain({ images, targets: { kind: 'topk' }, topK: 4, method: 'hirescam', score: 'prob' });
    for (const r of results) {
      const order = Array.from(r.probabilities.keys()).sort((a, b) => r.probabilities[b] - r.probabilities[a] || a - b);
      expect(r.cams.map((c) => c.classIndex)).toEqual(order.slice(0, 4));
      r.cams.forEach((c) => expect(c.score).toBeCloseTo(r.probabilities[c.classIndex], 6));
    }
  });

  it('rejects images of the wrong size and bad targets with named errors', async () => {
    await expect(engine.predict(randomImages(1, 31, 32))).rejects.toThrow(InvalidInputError);
    await expect(engine.predict(randomImages(1, 31, 32))).rejects.toThrow(/expects 32x32x3/);
    await expect(engine.explain({ images: randomImages(1, 32, 32), targets: { kind: 'indices', indices: [10] }, topK: 1, method: 'gradcam', score: 'prob' })).rejects.toThrow(ConfigError);
  });

  it('compiles every method\'s graph at creation and opens one session per gradient method, when that method is first asked for', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'onnx-sessions-'));
    const graphs = (): string[] => readdirSync(dir).filter((f) => f.endsWith('.onnx'));
    const lazy = await createOnnxEngine({ spec, cache: diskGraphCache(dir), runtime: { intraOpThreads: 1 }, methods: ['layercam', 'gradcam', 'hirescam'] });
    try {
      expect(graphs()).toHaveLength(3); // every method's, compiled at start-up
      expect(lazy.sessionStats().open).toEqual(['layercam']); // only the first method's session is open
      const images = randomImages(2, 32, 32, 47);
      const request = { images, targets: { kind: 'top1' as const }, topK: 1, score: 'prob' as const };
      await lazy.explain({ ...request, method: 'layercam' });
      await lazy.predict(images);
      expect(lazy.sessionStats()).toMatchObject({ open: ['layercam'], opened: 1 });
      const [a, b] = await Promise.all([lazy.explain({ ...request, method: 'gradcam' }), lazy.explain({ ...request, method: 'gradcam' })]);
      expect(lazy.sessionStats()).toMatchObject({ open: ['layercam', 'gradcam'], opened: 2 });
      expect(a[0].cams[0].grid).toEqual(b[0].cams[0].grid);
      // Each method's graph matches the engine that serves every method.
      const all = await engine.explain({ ...request, method: 'gradcam' });
      a[0].cams[0].grid.forEach((v, i) => expect(Math.abs(v - all[0].cams[0].grid[i])).toBeLessThan(1e-6));
      await expect(lazy.explain({ ...request, method: 'xgradcam' })).rejects.toThrow(/does not serve CAM method xgradcam \(serves layercam, gradcam, hirescam\)/);
      expect(graphs()).toHaveLength(3);
      expect(lazy.graphStats()).toMatchObject({ compiled: 3, dir, temporary: false });
    } finally {
      await lazy.dispose();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('returns nothing for an empty batch and refuses work after dispose', async () => {
    const other = await createOnnxEngine({ spec, cache: null, runtime: { intraOpThreads: 1 } });
    expect(await other.explain({ images: [], targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'prob' })).toEqual([]);
    await other.dispose();
    await other.dispose(); // idempotent
    await expect(other.predict(randomImages(1, 32, 32))).rejects.toThrow(/disposed/);
  });
});
