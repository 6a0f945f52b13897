/**
 * A job is only as trustworthy as whoever could write to the queue (bull-board, anyone with Redis
 * access). Workers check every job against its run record before touching S3: a job whose source
 * lies outside the run's source prefix, whose output or options differ from the run's, that names
 * an unknown run, or whose image was never listed into the run, fails permanently, is never read,
 * writes nothing and moves none of the run's counters. A second delivery of a job whose result is
 * already counted is no stranger's: it completes as a skip.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
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
});
