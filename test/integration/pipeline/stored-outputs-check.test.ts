/**
 * When a worker looks for an image's stored outputs (the idempotency HEAD of its prediction
 * document) and when it skips the look: skipped on a job's first attempt in a run whose output
 * prefix the producer found empty; kept for a run into a prefix that holds objects, after a
 * re-enqueue found outputs, for a retried job, and for a run record that does not say (an older
 * version's). Real Redis, real S3, real worker; the worker's store counts its HEADs per key.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransientError } from '../../../src/shared/errors.js';
import { jobIdFor } from '../../../src/shared/queue/contract.js';
import type { GetOptions } from '../../../src/shared/storage/object-store.js';
import { outputKeysFor } from '../../../src/shared/storage/output-keys.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import type { ImageJobResult } from '../../../src/worker/pipeline/image-job.js';
import { RUN_RECORD_CACHE_TTL_MS } from '../../../src/worker/pipeline/verify-job.js';
import { ObservedStore } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from './helpers.js';

/** The worker's view of S3: HEADs counted per key, and a transient failure of a key's first GET on demand. */
class WorkerStore extends ObservedStore {
  readonly failFirstGet = new Set<string>();
  override async get(bucket: string, key: string, options?: GetOptions) {
    if (this.failFirstGet.delete(key)) throw new TransientError(`S3 request for s3://${bucket}/${key} failed with HTTP 503: SlowDown (injected)`);
    return super.get(bucket, key, options);
  }
}

describe('the stored-outputs check (idempotency HEAD) against real Redis and S3', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;
  let store: WorkerStore;

  beforeAll(async () => {
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), tinyEngine()]);
    h = pipelineHarness(t, b);
    store = new WorkerStore(b.store);
    const keys = ['in/a.png', 'in/b.png', 'in/c.png', 'grow/a.png', 'grow/b.png', 'retry/a.png', 'retry/b.png', 'old/a.png', 'old/b.png'];
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 1), { contentType: 'image/png' })));
    await h.startWorker(engine, { batchSize: 4, maxBatchDelayMs: 50 }, undefined, store);
  });

  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
  });

  const prediction = (outPrefix: string, key: string) => outputKeysFor(outPrefix, key, 'jpeg').prediction;
  /** HEADs the worker sent for each key's prediction document under `outPrefix`. */
  const headsOf = (outPrefix: string, keys: readonly string[]) => keys.map((k) => store.heads.get(prediction(outPrefix, k)) ?? 0);
  const resultsOf = async (runId: string, keys: readonly string[]) => {
    const { epoch } = await h.runs.requireRun(runId);
    return Promise.all(keys.map(async (k) => ((await h.queue.getJob(jobIdFor(runId, epoch, k)))?.returnvalue as ImageJobResult | undefined)?.status));
  };

  const IN = ['in/a.png', 'in/b.png', 'in/c.png'];

  it('makes no HEAD in a run whose output prefix was empty, and still writes every output', async () => {
    store.resetCounts();
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: `s3://${b.bucket}/out/`, runId: 'fresh' });
    const run = await h.waitForRun(runId);
    expect(run).toMatchObject({ total: 3, done: 3, failed: 0, outputsAtEnqueue: 'empty' });
    expect(store.counts.head).toBe(0);
    expect(await resultsOf(runId, IN)).toEqual(['ok', 'ok', 'ok']);
    for (const key of IN) {
      const k = outputKeysFor('out/', key, 'jpeg');
      for (const artifact of [k.overlay, k.heatmap, k.prediction]) expect(await b.store.exists(b.bucket, artifact), artifact).toBe(true);
    }
  });

  it('looks in a second run into the same output prefix, and reuses what the first one made', async () => {
    const before = await Promise.all(IN.map((k) => b.store.head(b.bucket, prediction('out/', k))));
    store.resetCounts();
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: `s3://${b.bucket}/out/`, runId: 'again' });
    const run = await h.waitForRun(runId);
    expect(run).toMatchObject({ total: 3, done: 3, failed: 0, outputsAtEnqueue: 'may-exist' });
    expect(headsOf('out/', IN)).toEqual([1, 1, 1]);
    expect(await resultsOf(runId, IN)).toEqual(['skipped', 'skipped', 'skipped']);
    const after = await Promise.all(IN.map((k) => b.store.head(b.bucket, prediction('out/', k))));
    expect(after.map((o) => o?.etag)).toEqual(before.map((o) => o?.etag));
  });

  it('looks once a re-enqueue of the same run found its outputs', async () => {
    store.resetCounts();
    const flags = { output: `s3://${b.bucket}/grow-out/`, runId: 'grow' };
    await h.enqueue(`s3://${b.bucket}/grow/`, flags);
    expect(await h.waitForRun('grow')).toMatchObject({ done: 2, outputsAtEnqueue: 'empty' });
    expect(store.counts.head).toBe(0);
    // The worker trusts the record it read for its cache's TTL: past it, it reads the new answer.
    await new Promise((r) => setTimeout(r, RUN_RECORD_CACHE_TTL_MS + 100));
    // A new image, then the same enqueue again: the run's outputs are there now.
    await b.store.put(b.bucket, 'grow/c.png', await sampleImage(42), { contentType: 'image/png' });
    await h.enqueue(`s3://${b.bucket}/grow/`, flags);
    expect((await h.runs.requireRun('grow')).outputsAtEnqueue).toBe('may-exist');
    const run = await h.waitForRun('grow');
    expect(run).toMatchObject({ total: 3, done: 3 });
    expect(headsOf('grow-out/', ['grow/a.png', 'grow/b.png', 'grow/c.png'])).toEqual([0, 0, 1]);
    expect(await resultsOf('grow', ['grow/c.png'])).toEqual(['ok']);
  });

  it('looks on a retry, though the output prefix was empty', async () => {
    store.resetCounts();
    store.failFirstGet.add('retry/a.png');
    const runId = await h.enqueue(`s3://${b.bucket}/retry/`, { output: `s3://${b.bucket}/retry-out/`, runId: 'retry' });
    const run = await h.waitForRun(runId);
    expect(run).toMatchObject({ total: 2, done: 2, failed: 0, outputsAtEnqueue: 'empty' });
    expect(store.failFirstGet.size).toBe(0); // the first attempt did fail
    expect(headsOf('retry-out/', ['retry/a.png', 'retry/b.png'])).toEqual([1, 0]);
    expect(await resultsOf(runId, ['retry/a.png', 'retry/b.png'])).toEqual(['ok', 'ok']);
  });

  it('looks in a run whose record does not say (created by an older version)', async () => {
    store.resetCounts();
    // Jobs held back until the record looks like an older producer's.
    await h.queue.pause();
    try {
      const runId = await h.enqueue(`s3://${b.bucket}/old/`, { output: `s3://${b.bucket}/old-out/`, runId: 'old' });
      expect((await h.runs.requireRun(runId)).outputsAtEnqueue).toBe('empty');
      await t.redis.hdel(h.runs.keys(runId).record, 'outputsAtEnqueue');
    } finally {
      await h.queue.resume();
    }
    const run = await h.waitForRun('old');
    expect(run.outputsAtEnqueue).toBeUndefined();
    expect(run).toMatchObject({ total: 2, done: 2, failed: 0 });
    expect(headsOf('old-out/', ['old/a.png', 'old/b.png'])).toEqual([1, 1]);
  });
});
