/**
 * The distributed pipeline on a user's ONNX classifier (the ResNet-style PyTorch fixture):
 * enqueue → worker on the ONNX engine → outputs, prediction documents naming the ONNX target
 * tensor, and an exactly-once manifest.jsonl.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageManifest, RunManifestLine } from '../../../src/shared/manifest.js';
import { MANIFEST_FILE } from '../../../src/shared/run-finalizer.js';
import { outputKeysFor } from '../../../src/shared/storage/output-keys.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { loadModel } from '../../../src/worker/model/source.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { pipelineHarness, sampleImage, type PipelineHarness } from './helpers.js';

const MODEL = join(import.meta.dirname, '../../fixtures/onnx/resnet.onnx');
const KEYS = ['in/a.png', 'in/b.png', 'in/c.png', 'in/d.png'];
const TARGET = '/layer2/Relu_1_output_0';

describe('pipeline on an ONNX ResNet-style model', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;

  beforeAll(async () => {
    const model = await loadModel(MODEL);
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), createEngine({ spec: model, engine: 'onnx', onnx: { cacheDir: null, intraOpThreads: 1 } })]);
    h = pipelineHarness(t, b);
    await Promise.all(KEYS.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 3, 44, 36), { contentType: 'image/png' })));
    await h.startWorker(engine, { batchSize: 4, maxBatchDelayMs: 200, heartbeatIntervalMs: 200 });
  });

  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
  });

  it('explains every image once with the ONNX engine at the pooled tensor', async () => {
    expect(engine.info).toMatchObject({ engine: 'onnx', modelName: 'resnet', layer: TARGET, inputHeight: 32, inputWidth: 32, numClasses: 10 });
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: `s3://${b.bucket}/out/`, runId: 'onnx-run', topK: '3' });
    const run = await h.waitForRun(runId);
    expect(run).toMatchObject({ total: 4, done: 4, failed: 0, state: 'completed' });

    const manifest = (await b.store.get(b.bucket, `out/${MANIFEST_FILE}`)).body.toString('utf8');
    const lines = manifest.trim().split('\n').map((l) => JSON.parse(l) as RunManifestLine);
    expect(lines.map((l) => l.key).sort()).toEqual([...KEYS].sort());
    expect(lines.every((l) => l.status === 'ok')).toBe(true);
    for (const key of KEYS) {
      const doc = JSON.parse((await b.store.get(b.bucket, outputKeysFor('out/', key, 'jpeg').prediction)).body.toString('utf8')) as ImageManifest;
      expect(doc.provenance).toMatchObject({ engine: 'onnx', modelName: 'resnet', layer: TARGET, weightsHash: engine.info.weightsHash });
      expect(doc.predictions).toHaveLength(3);
      const sum = doc.predictions.reduce((s, p) => s + p.probability, 0);
      expect(sum).toBeGreaterThan(0);
      expect(sum).toBeLessThanOrEqual(1 + 1e-6);
      expect(doc.targets[0]).toMatchObject({ gridHeight: 8, gridWidth: 8 });
    }
  });
});
