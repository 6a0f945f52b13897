/**
 * Redis holds the backlog, not the run: `--max-backlog` bounds the images queued at any moment and
 * listing resumes from the run's cursor. The listing is generated (src/dev/synthetic-listing.ts) so
 * 50k keys need no 50k objects.
 */
import { Queue, Worker } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { syntheticKey, syntheticListing } from '../../../src/dev/synthetic-listing.js';
import { parseEnqueueRequest } from '../../../src/producer/enqueue-options.js';
import { enqueueRun, type EnqueueDeps } from '../../../src/producer/enqueue.js';
import { bullPrefix, type AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

describe('enqueue under --max-backlog', { timeout: 240_000 }, () => {
  let t: TestRedis;
  let b: TestBucket;
  let queue: Queue<AuditJobPayload>;
  let runs: RunStore;
  let store: ObjectStore;
  const KEYS = 50_000;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    store = syntheticListing(b.store, { bucket: b.bucket, prefix: 'big/', count: KEYS });
    queue = new Queue<AuditJobPayload>(t.queueName, { connection: t.redis.duplicate(), prefix: bullPrefix({ prefix: t.prefix }) });
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store });
  });
  afterEach(async () => {
    await queue.close();
    await t.cleanup();
    await b.cleanup();
  });

  const deps = (): EnqueueDeps => ({
    store,
    queue,
    runs,
    redis: t.redis,
    finalize: (id) => finalizeRun(id, { runs, redis: t.redis, upload: s3StreamUploader(b.store.client) }),
    backlogPollMs: 50,
  });
  const queued = async () => {
    const c = await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized');
    return (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) + (c.prioritized ?? 0);
  };

  it('with no workers, a 50k-key enqueue leaves at most --max-backlog jobs in Redis', async () => {
    const req = (detach: boolean) => parseEnqueueRequest(`s3://${b.bucket}/big/`, { runId: 'bounded', output: `s3://${b.bucket}/out/bounded/`, maxBacklog: '5000', detach });
    const first = await enqueueRun(req(true), deps());
    expect(first.paused).toBe(true);
    expect(first.counts.added).toBe(5000);
    expect(await queued()).toBe(5000);
    expect(await runs.backlog('bounded')).toBe(5000);
    expect(first.run).toMatchObject({ total: 5000, enqueueComplete: false, cursor: syntheticKey('big/', 4999) });
    // Nothing drained: running it again adds nothing.
    const again = await enqueueRun(req(true), deps());
    expect(again).toMatchObject({ paused: true, counts: { added: 0 } });
    expect(await queued()).toBe(5000);
  });

  it('keeps listing with a backlog under two pages: the last page\'s jobs are added before waiting for room', async () => {
    // A page's jobs are added after the next page is registered; a producer that waited for room
    // first held back the very jobs whose results make room, and never finished.
    const small = syntheticListing(b.store, { bucket: b.bucket, prefix: 'few/', count: 60 });
    let peak = 0;
    const worker = new Worker<AuditJobPayload>(
      t.queueName,
      async (job) => {
        peak = Math.max(peak, await runs.backlog('small'));
        await runs.recordResult(job.data.runId, { key: job.data.source.key, status: 'ok', top1: { index: 1, label: 'x', probability: 0.5 }, degenerate: false });
      },
      { connection: t.redis.duplicate(), prefix: bullPrefix({ prefix: t.prefix }), concurrency: 4 },
    );
    try {
      const req = parseEnqueueRequest(`s3://${b.bucket}/few/`, { runId: 'small', output: `s3://${b.bucket}/out/small/`, maxBacklog: '15' });
      const stuck = new Promise<never>((_, reject) => setTimeout(() => reject(new Error('enqueue still waiting for room after 30 s')), 30_000).unref());
      const result = await Promise.race([enqueueRun(req, { ...deps(), store: small, pageSize: 10 }), stuck]);
      expect(result.counts.added).toBe(60);
      expect(result.run).toMatchObject({ total: 60, enqueueComplete: true });
      expect(peak).toBeLessThanOrEqual(15);
    } finally {
      await worker.close();
    }
  });
});
