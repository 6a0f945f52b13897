/**
 * Faithfulness against the committed NumPy reference (scripts/reference/faithfulness_reference.py):
 * the same regions (top 20% of the upsampled map, the seeded random rectangle), the same blur, and
 * float64 forwards of the perturbed inputs, on both engines, with the perturbed rows chunked.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { measureFaithfulness, randomRegion, seedOf, topRegion } from '../../../src/worker/engine/faithfulness.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import { imageMetricsOf } from '../../../src/worker/audit/image-audit.js';
import { loadReference } from './reference-fixture.js';

interface Expected {
  fraction: number;
  images: { key: string; seed: number; classIndex: number; probability: number; topPixels: number[]; rect: [number, number, number, number]; topDrop: number; randomDrop: number; score: number }[];
}

const expected = JSON.parse(readFileSync(new URL('../../fixtures/reference/faithfulness_expected.json', import.meta.url), 'utf8')) as Expected;
const ref = loadReference('gradcam');
const [H, W] = [ref.images[0].height, ref.images[0].width];

it('seeds and random rectangles are the reference\'s (FNV-1a, mulberry32)', () => {
  for (const e of expected.images) {
    expect(seedOf(e.key)).toBe(e.seed);
    const mask = randomRegion(W, H, expected.fraction, e.seed);
    const [x0, y0, rw, rh] = e.rect;
    const want = new Uint8Array(W * H);
    for (let y = y0; y < y0 + rh; y++) for (let x = x0; x < x0 + rw; x++) want[y * W + x] = 1;
    expect(Array.from(mask)).toEqual(Array.from(want));
  }
});

for (const kind of ['tfjs', 'onnx'] as const) {
  describe(`${kind} engine`, () => {
    let engine: Engine;
    beforeAll(async () => {
      engine =
        kind === 'tfjs'
          ? await createTfjsEngine({ spec: ref.spec, layer: ref.layer, backend: 'wasm' })
          : await createOnnxEngine({ spec: ref.spec, layer: ref.layer, cache: null, runtime: { intraOpThreads: 1 } });
    });
    afterAll(async () => {
      await engine.dispose();
    });

    it('top and random drops within 1e-4 of the reference, the same top region, and the metrics record carries them', async () => {
      const request = { images: ref.images, targets: { kind: 'top1' as const }, topK: 1, method: 'gradcam' as const, score: 'logit' as const };
      const results = await engine.explain({ ...request, faithfulness: true, imageSeeds: expected.images.map((e) => seedOf(e.key)), forwardRows: 3 });
      const plain = await engine.explain(request);
      results.forEach((r, i) => {
        const want = expected.images[i];
        const cam = r.cams[0];
        expect(cam.classIndex).toBe(want.classIndex);
        expect(plain[i].faithfulness).toBeUndefined();
        const top = topRegion(cam.grid, cam.width, cam.height, W, H, expected.fraction);
        expect(Array.from(top.keys()).filter((j) => top[j] === 1)).toEqual(want.topPixels);
        const f = r.faithfulness!;
        expect(Math.abs(f.topDrop - want.topDrop)).toBeLessThan(1e-4);
        expect(Math.abs(f.randomDrop - want.randomDrop)).toBeLessThan(1e-4);
        expect(f.score).toBeCloseTo(f.topDrop - f.randomDrop, 12);
        const metrics = imageMetricsOf({ result: r, image: { width: 40, height: 40 } });
        expect(metrics).toMatchObject({ faithTopDrop: f.topDrop, faithRandomDrop: f.randomDrop, faithfulness: f.score });
      });
    });
  });
}

it('a degenerate first map gets null (no top region), its batch-mates are still measured', async () => {
  const engine = await createTfjsEngine({ spec: ref.spec, layer: ref.layer, backend: 'wasm' });
  try {
    const images = ref.images.slice(0, 2);
    const results = await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });
    results[0].cams[0] = { ...results[0].cams[0], degenerate: 'test: flagged' };
    const out = await measureFaithfulness({ images, forwardRows: 1 }, results, engine);
    expect(out[0].faithfulness).toBeNull();
    expect(out[1].faithfulness).toMatchObject({ topDrop: expect.any(Number), randomDrop: expect.any(Number) });
  } finally {
    await engine.dispose();
  }
});
