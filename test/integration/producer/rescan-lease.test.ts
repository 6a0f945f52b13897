/**
 * Re-listing leases (RunStore.beginRescan): while a re-enqueue re-lists a finished listing, counted
 * keys go to the run's `recent` set, and only then. A producer that dies mid-re-listing must stop
 * costing Redis a key per counted image once its lease expires; concurrent re-listings share the
 * set; ending is idempotent. Real Redis, s3rver and BullMQ. Leases that must expire last a few
 * hundred ms; leases that must stay live last 30 s (their RunStore's `rescanLeaseMs`), so a slow
 * machine cannot make them lapse.
 */
import { Queue } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseEnqueueRequest } from '../../../src/producer/enqueue-options.js';
import { enqueueRun, type EnqueueDeps } from '../../../src/producer/enqueue.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { bullPrefix } from '../../../src/shared/queue/contract.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const LEASE_MS = 400;
const LONG_LEASE_MS = 30_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const ok = (key: string) => ({ key, status: 'ok' as const, top1: { index: 1, label: 'x', probability: 0.5 } });
const IMAGES = Array.from({ length: 9 }, (_, i) => `in/${i}.jpg`);

describe('re-listing leases against a real Redis', () => {
  let t: TestRedis;
  let b: TestBucket;
  let runs: RunStore;
  let long: RunStore;
  let queue: Queue<AuditJobPayload>;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store, rescanLeaseMs: LEASE_MS, batching: { maxDelayMs: 1 } });
    long = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store, rescanLeaseMs: LONG_LEASE_MS, batching: { maxDelayMs: 1 } });
    queue = new Queue<AuditJobPayload>(t.queueName, { connection: t.redis.duplicate(), prefix: bullPrefix({ prefix: t.prefix }) });
    await Promise.all(IMAGES.map((key) => b.store.put(b.bucket, key, 'x', { contentType: 'image/jpeg' })));
  });
  afterEach(async () => {
    await queue.close();
    await t.cleanup();
    await b.cleanup();
  });

  const deps = (over: Partial<EnqueueDeps> = {}): EnqueueDeps => ({
    store: b.store,
    queue,
    runs,
    redis: t.redis,
    finalize: (id) => finalizeRun(id, { runs, redis: t.redis, upload: s3StreamUploader(b.store.client) }),
    pageSize: 2,
    ...over,
  });
  const request = () => parseEnqueueRequest(`s3://${b.bucket}/in/`, { runId: 'r', output: `s3://${b.bucket}/out/r/` });
  const recent = () => t.redis.zrange(runs.keys('r').recent, '0', '-1');
  const leases = () => t.redis.zcard(runs.keys('r').rescans);
  const newRun = async (id: string) => {
    await runs.createRun({ id, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    await runs.addJobs(id, IMAGES.map((key) => ({ key })));
    await runs.finishEnqueue(id);
  };

  it('a re-listing whose producer died stops adding to `recent` once its lease expires, and the set goes', async () => {
    await enqueueRun(request(), deps()); // the listing ends: later enqueues re-list
    await runs.beginRescan('r'); // a re-enqueue killed mid-re-listing: it never ends its lease
    await enqueueRun(request(), deps()); // the operator runs it again, to completion
    await sleep(LEASE_MS);
    await Promise.all(IMAGES.map((key) => runs.recordResult('r', ok(key))));
    expect(await recent()).toEqual([]); // was every counted image, for good, with the counter
    expect(await leases()).toBe(0);
    expect((await runs.requireRun('r')).done).toBe(IMAGES.length);
  });

  it('concurrent re-listings share `recent` until the last live one ends; an expired one registers nothing', async () => {
    await newRun('r');
    const a = (await long.beginRescan('r')) as string;
    const c = (await long.beginRescan('r')) as string;
    await runs.recordResult('r', ok('in/0.jpg'));
    // Counted during the re-listing, after its snapshot: known, not registered again.
    const first = await runs.registerPage('r', [{ key: 'in/0.jpg', size: 1, etag: 'e' }, { key: 'in/new.jpg', size: 1, etag: 'e' }], { kind: 'rescan', lease: a });
    expect(first).toMatchObject({ status: 'ok', states: ['recorded', 'new'] });
    await runs.endRescan('r', a);
    await runs.recordResult('r', ok('in/1.jpg')); // c is still live
    expect(await recent()).toEqual(['in/0.jpg', 'in/1.jpg']);
    expect((await runs.registerPage('r', [{ key: 'in/1.jpg', size: 1, etag: 'e' }], { kind: 'rescan', lease: c })).states).toEqual(['recorded']);
    expect((await runs.registerPage('r', [{ key: 'in/9.jpg', size: 1, etag: 'e' }], { kind: 'rescan', lease: a })).status).toBe('lease-expired');
    await runs.endRescan('r', c);
    await runs.recordResult('r', ok('in/2.jpg'));
    expect(await recent()).toEqual([]);

    // One lapses while another lives: counts are still kept for the live one; the lapsed one stays lost.
    const old = (await runs.beginRescan('r')) as string;
    const live = (await long.beginRescan('r')) as string;
    await sleep(LEASE_MS);
    await runs.recordResult('r', ok('in/3.jpg'));
    expect(await recent()).toEqual(['in/3.jpg']);
    expect(await runs.renewRescan('r', old)).toBe(false);
    expect((await runs.registerPage('r', [{ key: 'in/9.jpg', size: 1, etag: 'e' }], { kind: 'rescan', lease: old })).status).toBe('lease-expired');
    expect(await long.renewRescan('r', live)).toBe(true);
    expect((await runs.registerPage('r', [{ key: 'in/3.jpg', size: 1, etag: 'e' }], { kind: 'rescan', lease: live })).states).toEqual(['recorded']);
    expect((await runs.requireRun('r')).total).toBe(IMAGES.length + 1); // in/new.jpg only
  });

  it('ending a lease twice (a resend after a reconnect) leaves the other re-listing its lease', async () => {
    await newRun('r');
    const a = (await long.beginRescan('r')) as string;
    const c = (await long.beginRescan('r')) as string;
    await long.endRescan('r', a);
    await long.endRescan('r', a);
    await runs.recordResult('r', ok('in/0.jpg'));
    expect(await recent()).toEqual(['in/0.jpg']);
    expect((await runs.registerPage('r', [{ key: 'in/0.jpg', size: 1, etag: 'e' }], { kind: 'rescan', lease: c })).states).toEqual(['recorded']);
    expect(await leases()).toBe(1);
  });

  it('an enqueue re-listing for longer than its lease keeps it renewed, and ends it', async () => {
    await enqueueRun(request(), deps());
    // Five pages, 260 ms each: the re-listing takes three times the lease.
    const slow = Object.create(b.store) as ObjectStore;
    slow.listPages = async function* (bucket, prefix, opts) {
      for await (const page of b.store.listPages(bucket, prefix, opts)) {
        await sleep(260);
        yield page;
      }
    };
    const res = await enqueueRun(request(), deps({ store: slow }));
    expect(res.counts).toMatchObject({ added: 0, known: IMAGES.length });
    expect(await leases()).toBe(0);
  });

  it('an enqueue stopped by its signal ends its re-listing lease', async () => {
    await enqueueRun(request(), deps({ runs: long }));
    const stop = new AbortController();
    const stopped = enqueueRun(
      request(),
      deps({
        runs: long,
        signal: stop.signal,
        onProgress: (p) => {
          if (p.pages === 2) stop.abort(new Error('SIGINT'));
        },
      }),
    );
    await expect(stopped).rejects.toThrow('SIGINT');
    expect(await leases()).toBe(0); // ended, not left to its 30 s expiry
  });
});
