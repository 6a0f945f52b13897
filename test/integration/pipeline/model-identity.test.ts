/**
 * A run names its model; a worker serving another model never takes its jobs. Real Redis, real
 * s3rver, weights and a model card in S3 resolved exactly as `enqueue --weights` and a worker
 * resolve them: the mismatched worker hands every job back (none failed, no attempt used, no
 * output written), and the matching worker then completes the run with the card's preprocessing
 * in every prediction's provenance. A job whose payload names another model than its run is
 * rejected as foreign.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ImageManifest } from '../../../src/shared/manifest.js';
import { modelFiles } from '../../../src/shared/model-files.js';
import { JOB_NAME, jobIdFor, PAYLOAD_VERSION, type AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { outputKeysFor } from '../../../src/shared/storage/output-keys.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { resolveModel, servedModelOf, type ServedModel } from '../../../src/worker/model/model-card.js';
import type { PipelineWorker } from '../../../src/worker/pipeline/pipeline-worker.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from './helpers.js';

const IMAGES = ['in/a.png', 'in/b.png', 'in/c.png'];
const HDF5 = (fill: number) => Buffer.concat([Buffer.from('\x89HDF\r\n\x1a\n', 'latin1'), Buffer.alloc(256, fill)]);

async function handedBack(worker: PipelineWorker): Promise<number> {
  const metric = await worker.metrics.handedBack.get();
  return metric.values.reduce((n, v) => n + v.value, 0);
}

describe('model identity: workers only serve runs of their model', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;
  let modelA: ServedModel;
  let modelB: ServedModel;
  const weightsA = () => `s3://${b.bucket}/models/a.h5`;

  beforeAll(async () => {
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), tinyEngine()]);
    h = pipelineHarness(t, b);
    await Promise.all(IMAGES.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 3), { contentType: 'image/png' })));
    await b.store.put(b.bucket, 'models/a.h5', HDF5(1), { contentType: 'application/x-hdf5' });
    await b.store.put(b.bucket, 'models/a.model.json', JSON.stringify({ name: 'model-a', preprocess: 'raw', centerCrop: true }), { contentType: 'application/json' });
    await b.store.put(b.bucket, 'models/b.h5', HDF5(2), { contentType: 'application/x-hdf5' });
    const files = modelFiles({ store: b.store });
    modelA = servedModelOf(await resolveModel(weightsA(), {}, files), 'none');
    modelB = servedModelOf(await resolveModel(`s3://${b.bucket}/models/b.h5`, {}, files), 'none');
  });

  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
  });

  it('records the model of `enqueue --weights` (card included) in the run and every job', async () => {
    expect(modelA.identity).toMatchObject({ weights: weightsA(), preprocess: 'raw', centerCrop: true, layer: null, labels: null, name: 'model-a' });
    expect(modelA.identity?.fingerprint).toMatch(/^etag:[0-9a-f]{32}$/);
    expect(modelB.identity).toMatchObject({ preprocess: 'caffe', centerCrop: false });
  });

  it('a worker serving another model hands the jobs back untouched; the matching worker completes the run', async () => {
    const workerB = await h.startWorker(engine, { handBackDelayMs: 300, batchSize: 2, maxBatchDelayMs: 20 }, undefined, undefined, modelB);
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: `s3://${b.bucket}/out/`, runId: 'needs-a', weights: weightsA() });
    const run = await h.runs.requireRun(runId);
    expect(run.modelIdentity).toEqual(modelA.identity);
    const job = await h.queue.getJob(jobIdFor(runId, run.epoch, IMAGES[0]));
    expect(job?.data.model).toEqual(modelA.identity);

    const deadline = Date.now() + 15_000;
    while ((await handedBack(workerB)) < IMAGES.length * 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await handedBack(workerB)).toBeGreaterThanOrEqual(IMAGES.length * 2); // each job taken and handed back at least twice
    const still = await h.runs.requireRun(runId);
    expect(still).toMatchObject({ done: 0, failed: 0, state: expect.not.stringMatching(/completed/) });
    for (const key of IMAGES) {
      const j = await h.queue.getJob(jobIdFor(runId, run.epoch, key));
      expect(['delayed', 'waiting', 'active']).toContain(await j?.getState());
      expect(j?.attemptsMade).toBe(0);
      expect(await b.store.head(b.bucket, outputKeysFor('out/', key, 'jpeg').prediction)).toBeNull();
    }
    const logs = await h.queue.getJobLogs(jobIdFor(runId, run.epoch, IMAGES[0]));
    expect(logs.logs.join('\n')).toMatch(/handed back: run needs-a: the run needs another model than this worker serves: weights .*a\.h5 "model-a" \(etag:.*\) vs .*b\.h5 .*; preprocess "raw" vs "caffe"; centerCrop true vs false/);
    expect(workerB.stats).toMatchObject({ processed: 0, failed: 0 });

    const workerA = await h.startWorker(engine, { handBackDelayMs: 300, batchSize: 2, maxBatchDelayMs: 20 }, undefined, undefined, modelA);
    const done = await h.waitForRun(runId, 30_000);
    expect(done).toMatchObject({ done: IMAGES.length, failed: 0, state: 'completed' });
    expect(workerA.stats.processed).toBe(IMAGES.length);
    expect(workerB.stats.processed).toBe(0);
    const m = JSON.parse((await b.store.get(b.bucket, outputKeysFor('out/', IMAGES[1], 'jpeg').prediction)).body.toString('utf8')) as ImageManifest;
    expect(m.provenance).toMatchObject({ preprocess: 'raw', centerCrop: true, labels: 'none' });
  });

  it('rejects a job whose payload names another model than its run', async () => {
    const runId = 'needs-a';
    const payload: AuditJobPayload = {
      v: PAYLOAD_VERSION,
      runId,
      source: { bucket: b.bucket, key: IMAGES[2], etag: 'x', size: 1 },
      output: { bucket: b.bucket, prefix: 'out/' },
      options: (await h.runs.requireRun(runId)).options,
      model: modelB.identity,
    };
    const job = await h.queue.add(JOB_NAME, payload, { jobId: 'forged-model', attempts: 3 });
    const deadline = Date.now() + 10_000;
    while ((await job.getState()) !== 'failed' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    const failed = await h.queue.getJob('forged-model');
    expect(await failed?.getState()).toBe('failed');
    expect(failed?.failedReason).toMatch(/NOT_IN_RUN: job's model differs from the model run needs-a recorded/);
    expect((await h.runs.requireRun(runId)).done).toBe(IMAGES.length);
  });
});
