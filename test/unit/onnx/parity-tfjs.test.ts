/**
 * Parity of the ONNX engine (closed-form head backward compiled into the graph) with the TF.js
 * engine (autodiff through the head): same ModelSpec, same images, every compiled method, both
 * score modes, batches of 1, 3 and 8, top-1 / top-k / explicit targets.
 */
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CamMethod, ScoreMode, TargetSpec } from '../../../src/shared/explain-options.js';
import type { Engine, EngineImageResult } from '../../../src/worker/engine/engine.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { ONNX_CAM_METHODS } from '../../../src/worker/engine/onnx/support.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import type { ModelSpec } from '../../../src/worker/model/spec.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { decodeImage, preprocess } from '../../../src/worker/image/index.js';
import { randomImages } from './helpers/images.js';

const PROB_TOL = 1e-4;
const CAM_TOL = 1e-3;

const MODELS: Array<{ title: string; spec: ModelSpec }> = [
  { title: 'VGG-shaped, flatten head', spec: vggShapedSpec({ seed: 3, inputStd: 64 }) },
  {
    title: 'GAP head, unpooled last block, dropout',
    spec: vggShapedSpec({ seed: 5, inputStd: 64, head: 'gap', poolLastBlock: false, dropout: 0.5, denseUnits: [24, 16], name: 'vgg-gap' }),
  },
  {
    // 30x30 input: block2's 7x7 map loses a row and column in its 'valid' 2x2 pool.
    title: 'odd pool remainder',
    spec: vggShapedSpec({ seed: 9, inputStd: 64, inputShape: [30, 30, 3], name: 'vgg-odd' }),
  },
];

const BATCHES: Array<{ n: number; targets: TargetSpec; topK: number }> = [
  { n: 1, targets: { kind: 'top1' }, topK: 5 },
  { n: 3, targets: { kind: 'topk' }, topK: 3 },
  { n: 8, targets: { kind: 'indices', indices: [7, 0] }, topK: 5 },
];

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function compare(onnx: EngineImageResult[], tfjs: EngineImageResult[]): void {
  expect(onnx.length).toBe(tfjs.length);
  onnx.forEach((o, i) => {
    const t = tfjs[i];
    expect(maxAbsDiff(o.probabilities, t.probabilities)).toBeLessThan(PROB_TOL);
    expect(o.cams.map((c) => c.classIndex)).toEqual(t.cams.map((c) => c.classIndex));
    o.cams.forEach((c, j) => {
      const r = t.cams[j];
      expect(c.degenerate === null).toBe(r.degenerate === null);
      expect(c.score).toBeCloseTo(r.score, 4);
      expect(maxAbsDiff(c.grid, r.grid)).toBeLessThan(CAM_TOL);
      expect(Math.abs(c.rawMax - r.rawMax)).toBeLessThanOrEqual(1e-3 * Math.max(1e-6, Math.abs(r.rawMax)) + 1e-9);
    });
  });
}

describe.each(MODELS)('ONNX vs TF.js engine: $title', ({ spec }) => {
  let onnx: Engine;
  let tfjs: Engine;
  beforeAll(async () => {
    onnx = await createOnnxEngine({ spec, cache: null, runtime: { intraOpThreads: 1 } });
    tfjs = await createTfjsEngine({ spec, backend: 'cpu' });
  });
  afterAll(async () => {
    await onnx?.dispose();
    await tfjs?.dispose();
  });

  it('reports the same layer, classes and CAM grid', () => {
    expect(onnx.info.layer).toBe(tfjs.info.layer);
    expect(onnx.info.numClasses).toBe(tfjs.info.numClasses);
    expect(onnx.info.engine).toBe('onnx');
    expect(onnx.info.backend).toBe('onnx-cpu');
  });

  it.each(BATCHES)('batch $n ($targets.kind): every method, both scores', async ({ n, targets, topK }) => {
    const [h, w] = spec.inputShape;
    const images = randomImages(n, h, w, 11 + n);
    let compared = 0;
    for (const method of ONNX_CAM_METHODS as CamMethod[]) {
      for (const score of ['prob', 'logit'] as ScoreMode[]) {
        const request = { images, targets, topK, method, score };
        const [o, t] = [await onnx.explain(request), await tfjs.explain(request)];
        compare(o, t);
        compared += o.reduce((s, r) => s + r.cams.filter((c) => c.degenerate === null).length, 0);
      }
    }
    // The comparison must have had real (non-degenerate) maps to compare.
    expect(compared).toBeGreaterThan(0);
  });

  it('predict() matches TF.js probabilities', async () => {
    const [h, w] = spec.inputShape;
    const images = randomImages(3, h, w, 99);
    const [o, t] = [await onnx.predict(images), await tfjs.predict(images)];
    o.forEach((p, i) => expect(maxAbsDiff(p, t[i])).toBeLessThan(PROB_TOL));
  });
});

describe('ONNX vs TF.js engine on real images (decoded and preprocessed as the worker does)', () => {
  const spec = vggShapedSpec({ seed: 13, inputStd: 64, inputShape: [48, 48, 3], name: 'vgg-48' });
  const files = ['photo-333x217.jpg', 'rgb-97x401.png', 'gray-150x90.png', 'cmyk-45x37.tiff'];
  let onnx: Engine;
  let tfjs: Engine;
  beforeAll(async () => {
    onnx = await createOnnxEngine({ spec, cache: null, runtime: { intraOpThreads: 1 } });
    tfjs = await createTfjsEngine({ spec, backend: 'cpu' });
  });
  afterAll(async () => {
    await onnx?.dispose();
    await tfjs?.dispose();
  });

  it('agrees on every method with top-3 targets', async () => {
    const images = await Promise.all(
      files.map(async (f) => {
        const bytes = await readFile(new URL(`../../fixtures/images/parity/${f}`, import.meta.url));
        return preprocess(await decodeImage(bytes, {}, f), { width: 48, height: 48, resize: 'bilinear' });
      }),
    );
    for (const method of ONNX_CAM_METHODS as CamMethod[]) {
      const request = { images, targets: { kind: 'topk' as const }, topK: 3, method, score: 'logit' as const };
      compare(await onnx.explain(request), await tfjs.explain(request));
    }
  });
});
