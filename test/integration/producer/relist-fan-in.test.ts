/**
 * A re-listing's check of done keys (enqueue → RunStore.resultLines → mergeBounded) merges the
 * run's parts with a fan-in limit: it never holds more than `fanIn` part streams open, however many
 * parts the run has, and still finds every done key. Opening every part at once cost about 12 KB
 * of heap per part before the first key was answered. Real Redis, s3rver and BullMQ; the streams
 * are counted by a wrapper around the real store.
 */
import { Readable } from 'node:stream';
import { Queue } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseEnqueueRequest } from '../../../src/producer/enqueue-options.js';
import { enqueueRun } from '../../../src/producer/enqueue.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { bullPrefix } from '../../../src/shared/queue/contract.js';
import { listPartKeys } from '../../../src/shared/queue/result-parts.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const PARTS = 300;
const FAN_IN = 16;
const KEYS = Array.from({ length: PARTS + 1 }, (_, i) => `in/${String(i).padStart(4, '0')}.jpg`);
/** Objects in the bucket: every tenth key and the pending last one, enough to re-list (PUTs cost). */
const IMAGES = KEYS.filter((_, i) => i % 10 === 0 || i === PARTS);
const ok = (key: string) => ({ key, status: 'ok' as const, top1: { index: 1, label: 'x', probability: 0.5 } });

/**
 * The real store, with the body streams its readers hold open counted (and the most at once). A
 * small body ends on its own before its reader is done with it, so each is handed over in a
 * stream that closes only when its reader destroys it (or reads its end), one chunk at a time.
 */
function countingStore(store: ObjectStore): { store: ObjectStore; open: () => number; max: () => number } {
  let open = 0;
  let max = 0;
  const counting = Object.create(store) as ObjectStore;
  counting.getStream = async (...args) => {
    const res = await store.getStream(...args);
    open++;
    max = Math.max(max, open);
    const held = Readable.from(res.stream, { objectMode: false, highWaterMark: 1, autoDestroy: false });
    let done = false;
    const release = (): void => {
      if (done) return;
      done = true;
      open--;
      res.stream.destroy();
    };
    held.once('end', release).once('close', release);
    return { ...res, stream: held };
  };
  return { store: counting, open: () => open, max: () => max };
}

describe('a re-listing checks done keys with at most fanIn parts open', () => {
  let t: TestRedis;
  let b: TestBucket;
  let queue: Queue<AuditJobPayload>;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    queue = new Queue<AuditJobPayload>(t.queueName, { connection: t.redis.duplicate(), prefix: bullPrefix({ prefix: t.prefix }) });
    await Promise.all(IMAGES.map((key) => b.store.put(b.bucket, key, 'x', { contentType: 'image/jpeg' })));
  });
  afterEach(async () => {
    await queue.close();
    await t.cleanup();
    await b.cleanup();
  });

  it(`${PARTS} parts, fan-in ${FAN_IN}: every done key found, never more than ${FAN_IN} streams open, no intermediate left`, async () => {
    const counted = countingStore(b.store);
    const runs = new RunStore(t.redis, { prefix: t.prefix }, { store: counted.store });
    const upload = s3StreamUploader(b.store.client);
    const deps = { store: b.store, queue, runs, redis: t.redis, finalize: (id: string) => finalizeRun(id, { runs, redis: t.redis, upload }), spill: { upload, fanIn: FAN_IN } };
    const request = parseEnqueueRequest(`s3://${b.bucket}/in/`, { runId: 'r', output: `s3://${b.bucket}/out/r/` });
    // A run whose listing reached the end (`listed`): later enqueues re-list and check done keys.
    await runs.createRun({ id: 'r', source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/r/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    await runs.addJobs('r', KEYS.map((key) => ({ key })));
    await runs.finishEnqueue('r');
    const done = KEYS.slice(0, PARTS); // the last key stays pending: the run is not finalized
    // One result per part, counted: workers that each wrote a batch of one.
    const writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store, batching: { maxLines: 1, maxDelayMs: 1 } });
    await Promise.all(done.map((key) => writer.recordResult('r', ok(key))));
    expect((await listPartKeys(b.store, b.bucket, 'out/r/_parts/')).length).toBe(PARTS);

    // A done key the check missed would be registered as new (`added`) and queued again.
    const again = await enqueueRun(request, deps);
    expect(again.counts).toMatchObject({ listed: IMAGES.length, added: 0, known: IMAGES.length });
    expect(counted.max()).toBeLessThanOrEqual(FAN_IN); // was PARTS: every part opened at once
    expect(counted.open()).toBe(0);
    // Only the workers' parts remain: the merge's intermediates are gone.
    expect((await listPartKeys(b.store, b.bucket, 'out/r/_parts/')).length).toBe(PARTS);
  });
});
