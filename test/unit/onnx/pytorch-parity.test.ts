/**
 * Parity with PyTorch on exported classifiers (test/fixtures/onnx, made by
 * scripts/onnx-fixtures/make_fixtures.py): probabilities within 1e-4 and every CAM method, both
 * scores, top-1 and an explicit class within 1e-3 (maps normalised by their max, as the engines
 * return them), on both engines; batch of all images at once, so batch invariance is covered too.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ScoreMode } from '../../../src/shared/explain-options.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import type { ModelGraph } from '../../../src/worker/model/graph/ir.js';
import { loadModel } from '../../../src/worker/model/source.js';
import { ONNX_FIXTURES_DIR as DIR, REFERENCE_METHODS as METHODS, normalised, pytorchReference as reference, referenceImages as images } from './helpers/pytorch-reference.js';

const SCORES: ScoreMode[] = ['logit', 'prob'];

async function checkParity(engine: Engine, name: string): Promise<void> {
  const ref = reference.models[name];
  expect(engine.info.layer).toBe(ref.target);
  for (const method of METHODS) {
    for (const score of SCORES) {
      for (const explicit of [false, true]) {
        const results = await engine.explain({ images, targets: explicit ? { kind: 'indices', indices: [3] } : { kind: 'top1' }, topK: 1, method, score });
        results.forEach((r, i) => {
          const want = ref.results[i];
          r.probabilities.forEach((p, k) => expect(Math.abs(p - want.probabilities[k]), `${name} p[${k}]`).toBeLessThan(1e-4));
          const cls = explicit ? 3 : want.top1;
          expect(r.cams[0].classIndex).toBe(cls);
          const expected = normalised(want.cams[`${method}/${score}/${cls}`]);
          const got = r.cams[0].grid;
          expect(got.length).toBe(ref.camHeight * ref.camWidth);
          let worst = 0;
          got.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - expected[k]))));
          expect(worst, `${name} ${method}/${score}/${cls} image ${i}`).toBeLessThan(1e-3);
        });
      }
    }
  }
}

describe.each(Object.keys(reference.models))('%s exported by PyTorch', (name) => {
  let graph: ModelGraph;
  const engines: Engine[] = [];
  beforeAll(async () => {
    graph = (await loadModel(join(DIR, reference.models[name].file))) as ModelGraph;
  });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.dispose()));
  });

  it('ONNX engine: probabilities and every CAM match PyTorch autograd', async () => {
    const engine = await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } });
    engines.push(engine);
    await checkParity(engine, name);
  });

  it('TF.js engine: probabilities and every CAM match PyTorch autograd', async () => {
    const engine = await createTfjsEngine({ spec: graph, backend: 'cpu' });
    engines.push(engine);
    await checkParity(engine, name);
  });
});
