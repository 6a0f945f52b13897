/**
 * Failure semantics that need time to pass: transient errors retried with backoff and recorded as
 * failed once attempts run out; locks renewed while a batch takes longer than the lock itself.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { DEFAULT_JOB_POLICY, JOB_NAME, PAYLOAD_VERSION, jobIdFor, jobOptionsFor, type AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { S3ObjectStore } from '../../../src/shared/storage/s3-store.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { s3Options, testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from './helpers.js';

describe('pipeline worker retries and locks', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;

  beforeAll(async () => {
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), tinyEngine()]);
    h = pipelineHarness(t, b);
    await b.store.put(b.bucket, 'in/x.png', await sampleImage(5), { contentType: 'image/png' });
  });

  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
  });

  const jobIdIn = async (runId: string, key: string): Promise<string> => jobIdFor(runId, (await h.runs.requireRun(runId)).epoch, key);

  /** A run with the given keys, its jobs added through the queue contract directly. */
  async function runWith(runId: string, keys: string[], attempts: number, edit: (p: AuditJobPayload) => AuditJobPayload = (p) => p, options = { ...DEFAULT_EXPLAIN_OPTIONS }): Promise<void> {
    const { record } = await h.runs.createRun({ id: runId, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/${runId}/`, options });
    await h.runs.addJobs(runId, keys.map((key) => ({ key })));
    const etag = (await b.store.head(b.bucket, 'in/x.png'))?.etag ?? '';
    await h.queue.addBulk(
      keys.map((key) => ({
        name: JOB_NAME,
        data: edit({ v: PAYLOAD_VERSION, runId, source: { bucket: b.bucket, key, etag, size: 1 }, output: { bucket: b.bucket, prefix: `${runId}/` }, options }),
        opts: jobOptionsFor(runId, record.epoch, key, { ...DEFAULT_JOB_POLICY, attempts, backoffMs: 50 }),
      })),
    );
    await h.runs.finishEnqueue(runId);
  }

  it('retries transient S3 errors with backoff, then records the image as failed with the reason', async () => {
    // Nothing listens on port 9: every S3 call fails with a connection error, a transient one.
    const unreachable = S3ObjectStore.fromConfig(s3Options({ endpoint: 'http://127.0.0.1:9', maxAttempts: 1 }));
    const worker = await h.startWorker(engine, { batchSize: 2, maxBatchDelayMs: 10 }, undefined, unreachable);
    try {
      await runWith('transient', ['in/x.png'], 3);
      const run = await h.waitForRun('transient', 30_000);
      expect(run).toMatchObject({ total: 1, done: 0, failed: 1 });
      const result = await h.runs.getResult('transient', 'in/x.png');
      expect(result?.error).toMatch(/^TRANSIENT: S3 request for s3:\/\/.* failed/);
      const job = await h.queue.getJob(await jobIdIn('transient', 'in/x.png'));
      expect(job?.attemptsMade).toBe(3); // every attempt was used: it was retried, not failed at once
      expect(await job?.getState()).toBe('failed');
    } finally {
      await worker.stop(2_000);
      unreachable.destroy();
    }
  });

  it('fails jobs it can never serve at once, naming the cause: a foreign payload version, a layer this worker lacks', async () => {
    const worker = await h.startWorker(engine, { batchSize: 2, maxBatchDelayMs: 10 });
    try {
      await runWith('foreign', ['in/x.png'], 6, (p) => ({ ...p, v: 99 as typeof PAYLOAD_VERSION }));
      // The run itself asks for the layer (a job whose options differ from its run's is refused earlier).
      await runWith('layer', ['in/x.png'], 6, undefined, { ...DEFAULT_EXPLAIN_OPTIONS, layer: 'block9_conv9' });
      await Promise.all([h.waitForRun('foreign', 20_000), h.waitForRun('layer', 20_000)]);
      expect((await h.runs.getResult('foreign', 'in/x.png'))?.error).toMatch(/^BAD_PAYLOAD: job payload has version 99, this worker reads version 1/);
      expect((await h.runs.getResult('layer', 'in/x.png'))?.error).toMatch(/^LAYER_MISMATCH: .*"block9_conv9".*--layer block9_conv9/);
      for (const runId of ['foreign', 'layer']) expect((await h.queue.getJob(await jobIdIn(runId, 'in/x.png')))?.attemptsMade).toBe(1);
    } finally {
      await worker.stop(2_000);
    }
  });

  it('keeps renewing the lock while a batch runs longer than the lock duration', async () => {
    let slow = false;
    // The real engine behind a delay: the batch outlasts the 1 s lock several times over.
    const slowEngine: Engine = {
      info: engine.info,
      explain: async (request) => {
        if (slow) await new Promise((r) => setTimeout(r, 3_000));
        return engine.explain(request);
      },
      predict: (images) => engine.predict(images),
      dispose: async () => undefined,
    };
    const worker = await h.startWorker(slowEngine, { batchSize: 2, maxBatchDelayMs: 10, lockDurationMs: 1_000, stalledIntervalMs: 500 });
    try {
      slow = true;
      await runWith('slow', ['in/x.png'], 1);
      const run = await h.waitForRun('slow', 30_000);
      expect(run).toMatchObject({ done: 1, failed: 0 });
      const job = await h.queue.getJob(await jobIdIn('slow', 'in/x.png'));
      expect(await job?.getState()).toBe('completed');
      expect(job?.stalledCounter ?? 0).toBe(0);
      expect(job?.attemptsStarted).toBe(1);
      expect(worker.lockDurationMs).toBe(1_000);
    } finally {
      await worker.stop(2_000);
    }
  });

  it('bounds the drain: jobs still running when the grace period ends are abandoned, not waited for', async () => {
    let release: () => void = () => undefined;
    let slow = false;
    const stuckEngine: Engine = {
      info: engine.info,
      explain: async (request) => {
        if (slow) await new Promise<void>((r) => (release = r)); // a batch that never ends by itself
        return engine.explain(request);
      },
      predict: (images) => engine.predict(images),
      dispose: async () => undefined,
    };
    const a = await h.startWorker(stuckEngine, { batchSize: 2, maxBatchDelayMs: 10, workerId: 'stuck' });
    slow = true;
    const started = new Promise((resolve) => a.batcher.once('batch', resolve));
    await runWith('abandon', ['in/x.png'], 6);
    await started;
    const outcome = await a.stop(300);
    // worker.close() alone would wait for the stuck batch forever.
    expect(outcome).toMatchObject({ clean: false, abandoned: 1 });
    expect(outcome.ms).toBeLessThan(300 + 2 * 1_000 + 1_000); // grace + capped clean-up steps + slack
    release(); // let the in-process leftover finish so the test leaves nothing running
    await h.waitForRun('abandon', 20_000);
  });
});
