/**
 * A job is only as trustworthy as whoever could write to the queue (bull-board, anyone with Redis
 * access). Workers check every job against its run record before touching S3: a job whose source
 * lies outside the run's source prefix, whose output or options differ from the run's, that names
 * an unknown run, or whose image was never listed into the run, fails permanently, is never read,
 * writes nothing and moves none of the run's counters. A second delivery of a job whose result is
 * already counted is no stranger's: it completes as a skip.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Job } from 'bullmq';
import { silentLogger } from '../../../src/shared/logger.js';
import { processImageJob, type ImageJobContext } from '../../../src/worker/pipeline/image-job.js';
import { WorkerMetrics } from '../../../src/worker/pipeline/metrics.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { JOB_NAME, PAYLOAD_VERSION, jobOptionsFor, type AuditJobPayload } from '../../../src/shared/queue/contract.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { snapshotObjects } from '../pipeline/faults-support.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from '../pipeline/helpers.js';

describe('workers verify each job against its run record', () => {
  let t: TestRedis;
  let b: TestBucket;
  let secret: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;

  beforeAll(async () => {
    [t, b, secret, engine] = await Promise.all([testRedis(), testBucket(), testBucket(), tinyEngine()]);
    h = pipelineHarness(t, b);
    await Promise.all(['in/a.png', 'in/b.png', 'other/c.png'].map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 1), { contentType: 'image/png' })));
    await secret.store.put(secret.bucket, 'private/x.png', await sampleImage(9), { contentType: 'image/png' });
  });

  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await Promise.all([b?.cleanup(), secret?.cleanup()]);
    await t?.cleanup();
  });

  it('fails foreign jobs permanently without reading their source, writing outputs or moving counters', async () => {
    await h.startWorker(engine, { batchSize: 2, maxBatchDelayMs: 10 });
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { runId: 'real', output: `s3://${b.bucket}/out/` });
    const before = await h.waitForRun(runId);
    expect(before).toMatchObject({ total: 2, done: 2, failed: 0 });
    const outputsBefore = await snapshotObjects(b.store, b.bucket, 'out/');
    // Something landed after the listing: it is inside the source prefix, but not part of the run.
    await b.store.put(b.bucket, 'in/late.png', await sampleImage(4), { contentType: 'image/png' });
    await b.store.put(b.bucket, 'elsewhere/.keep', 'x', { contentType: 'text/plain' });

    const legit = (key: string): AuditJobPayload => ({
      v: PAYLOAD_VERSION,
      runId,
      source: { bucket: b.bucket, key, etag: 'forged', size: 1 },
      output: { bucket: b.bucket, prefix: 'out/' },
      options: { ...DEFAULT_EXPLAIN_OPTIONS },
    });
    const forged: Array<{ why: string; data: AuditJobPayload; code: RegExp }> = [
      { why: 'another bucket', data: { ...legit('private/x.png'), source: { bucket: secret.bucket, key: 'private/x.png', etag: 'e', size: 1 } }, code: /^NOT_IN_RUN: .*source/ },
      { why: 'outside the source prefix', data: legit('other/c.png'), code: /^NOT_IN_RUN: .*source/ },
      { why: 'another output', data: { ...legit('in/a.png'), output: { bucket: b.bucket, prefix: 'elsewhere/' } }, code: /^NOT_IN_RUN: .*output/ },
      { why: 'other options', data: { ...legit('in/b.png'), options: { ...DEFAULT_EXPLAIN_OPTIONS, topK: 3 } }, code: /^NOT_IN_RUN: .*options/ },
      { why: 'never listed into the run', data: legit('in/late.png'), code: /^NOT_IN_RUN: .*in\/late\.png/ },
      { why: 'an unknown run', data: { ...legit('in/a.png'), runId: 'no-such-run' }, code: /^UNKNOWN_RUN: .*no-such-run/ },
    ];
    const jobs = await h.queue.addBulk(forged.map((f, i) => ({ name: JOB_NAME, data: f.data, opts: jobOptionsFor(`forged${i}`, 'e1', f.data.source.key) })));
    for (const [i, job] of jobs.entries()) {
      const deadline = Date.now() + 30_000;
      while ((await job.getState()) !== 'failed') {
        if (Date.now() > deadline) throw new Error(`job "${forged[i]?.why}" not failed in time: ${await job.getState()}`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const done = await h.queue.getJob(String(job.id));
      expect(done?.attemptsMade, forged[i]?.why).toBe(1); // permanent: no retries
      expect(done?.failedReason, forged[i]?.why).toMatch(forged[i]!.code);
    }

    // A second delivery of a job whose result is counted (BullMQ offers a stalled job again when the
    // worker that held it died after recording it): its outputs are stored, so it completes as a
    // skip instead of failing as a stranger's, and nothing moves.
    const head = await b.store.head(b.bucket, 'in/a.png');
    const again: AuditJobPayload = { ...legit('in/a.png'), source: { bucket: b.bucket, key: 'in/a.png', etag: head?.etag ?? '', size: head?.size ?? 0 } };
    const [redelivered] = await h.queue.addBulk([{ name: JOB_NAME, data: again, opts: jobOptionsFor('again', 'e1', 'in/a.png') }]);
    const deadline = Date.now() + 30_000;
    while (!['completed', 'failed'].includes(await redelivered!.getState())) {
      if (Date.now() > deadline) throw new Error(`the second delivery did not end in time: ${await redelivered!.getState()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const ended = await h.queue.getJob(String(redelivered!.id));
    expect(ended?.failedReason).toBeUndefined();
    expect(ended?.returnvalue).toMatchObject({ status: 'skipped', key: 'in/a.png' });

    const after = await h.runs.requireRun(runId);
    expect(after).toMatchObject({ total: 2, done: 2, failed: 0, state: 'completed' });
    expect(await h.runs.getResult(runId, 'in/late.png')).toBeNull();
    expect(await h.runs.getResult(runId, 'private/x.png')).toBeNull();
    expect(await h.runs.requireRun('no-such-run').catch((e: Error) => e.name)).toBe('NotFoundError');
    // Nothing was written anywhere: not under the run's output, not under the forged one.
    expect(await snapshotObjects(b.store, b.bucket, 'out/')).toEqual(outputsBefore);
    expect((await snapshotObjects(b.store, b.bucket, 'elsewhere/')).size).toBe(1);
  });

  it('records a reused image\'s outputs where its keys are, not where its stored document says', async () => {
    // Whoever can write to the output bucket rewrites a stored document's outputs, keeping the
    // metadata that makes it reusable; the run's analysis would read what a line names.
    const docKey = 'out/predictions/in/b.png.json';
    const head = await b.store.head(b.bucket, docKey);
    const stored = await b.store.get(b.bucket, docKey);
    const doc = JSON.parse(stored.body.toString('utf8'));
    const own = doc.outputs;
    doc.outputs = { ...own, overlay: `s3://${secret.bucket}/private/x.png` };
    await b.store.put(b.bucket, docKey, JSON.stringify(doc), { contentType: 'application/json', metadata: head!.metadata });
    const runId = await h.enqueue(`s3://${b.bucket}/in/b`, { runId: 'reuse', output: `s3://${b.bucket}/out/` });
    await h.waitForRun(runId);
    expect((await h.runs.getResult(runId, 'in/b.png'))?.outputs).toEqual(own);
  });
});

/**
 * A job that cannot be checked against its run (a malformed payload, or a check that kept failing)
 * (or that fails its check) may be anyone's: it fails without writing a failure into the run it names, without marking that
 * run started, and without finalizing it. Its image stays pending for its real job.
 */
describe('jobs that were never verified record nothing', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;
  let runId: string;

  beforeAll(async () => {
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), tinyEngine()]);
    h = pipelineHarness(t, b);
    await b.store.put(b.bucket, 'in/a.png', await sampleImage(1), { contentType: 'image/png' });
    // A run whose one image is pending: its real job is removed before any worker sees it.
    runId = await h.enqueue(`s3://${b.bucket}/in/`, { runId: 'victim', output: `s3://${b.bucket}/out/` });
    await h.queue.drain();
  });

  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
  });

  async function expectUntouched(): Promise<void> {
    const run = await h.runs.requireRun(runId);
    expect(run).toMatchObject({ total: 1, done: 0, failed: 0 });
    expect(run.state).not.toBe('completed');
    expect(run.startedAt).toBeUndefined();
    expect(await h.runs.getResult(runId, 'in/a.png')).toBeNull();
  }

  it('a malformed payload naming a pending image of a real run fails alone', async () => {
    await h.startWorker(engine, { batchSize: 1, maxBatchDelayMs: 10 });
    const right = { v: PAYLOAD_VERSION, runId, source: { bucket: b.bucket, key: 'in/a.png', etag: 'e', size: 1 }, output: { bucket: b.bucket, prefix: 'out/' }, options: { ...DEFAULT_EXPLAIN_OPTIONS } };
    const malformed = [
      // What a hand-written job looks like: another version, no options, another output.
      { v: PAYLOAD_VERSION + 1, runId, source: { bucket: b.bucket, key: 'in/a.png' }, output: { bucket: 'elsewhere', prefix: '' } },
      { ...right, output: undefined },
      // Another version, and not the run's: its check fails before its version is looked at.
      { ...right, v: PAYLOAD_VERSION + 1, output: { bucket: b.bucket, prefix: 'elsewhere/' } },
    ] as unknown as AuditJobPayload[];
    const reasons = [/^UNVERIFIED: .*BAD_PAYLOAD: job payload has no options/, /^UNVERIFIED: .*BAD_PAYLOAD: job payload has no output/, /^NOT_IN_RUN: .*output/];
    const jobs = await h.queue.addBulk(malformed.map((data, i) => ({ name: JOB_NAME, data, opts: jobOptionsFor(`malformed${i}`, 'e1', 'in/a.png') })));
    for (const job of jobs) {
      const deadline = Date.now() + 20_000;
      while ((await job.getState()) !== 'failed') {
        if (Date.now() > deadline) throw new Error(`job ${job.id} not failed in time: ${await job.getState()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    await new Promise((r) => setTimeout(r, 100)); // the worker's failed-job backstop runs after the job fails
    await expectUntouched();
    for (const [i, job] of jobs.entries()) {
      const done = await h.queue.getJob(String(job.id));
      expect(done?.attemptsMade).toBe(1);
      expect(done?.failedReason).toMatch(reasons[i]!);
    }
  });

  it('a job whose check fails transiently on its last attempt is not recorded on its word', async () => {
    const recorded: string[] = [];
    const ctx = {
      runs: h.runs,
      logger: silentLogger(),
      metrics: new WorkerMetrics({ queueDepth: async () => 0 }),
      verifyJob: async () => {
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' });
      },
      onRunComplete: async (id: string) => void recorded.push(id),
    } as unknown as ImageJobContext;
    const data: AuditJobPayload = { v: PAYLOAD_VERSION, runId, source: { bucket: b.bucket, key: 'in/a.png', etag: 'e', size: 1 }, output: { bucket: b.bucket, prefix: 'out/' }, options: { ...DEFAULT_EXPLAIN_OPTIONS } };
    const job = { id: 'last', attemptsMade: 5, opts: { attempts: 6 }, data } as unknown as Job<AuditJobPayload>;
    const err = await processImageJob(job, ctx).catch((e: Error) => e);
    await expectUntouched();
    expect(recorded).toEqual([]);
    expect(err).toMatchObject({ name: 'UnrecoverableError', message: expect.stringMatching(/^UNVERIFIED: .*ECONNREFUSED/) });
  });
});
