/**
 * The run's part index (keys.ts `parts`): readers that keep a listing of a live run's part files
 * (the dashboard's PartCache) add new parts from it instead of listing the folder again, and list
 * afresh whenever the index cannot vouch for what was added: trimmed past their listing, deleted
 * (finalization, Redis data loss), or a result counted by a writer that does not index its parts.
 * Every case must still show every counted line.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { PartCache } from '../../../src/shared/queue/part-cache.js';
import { listPartKeys, partBody, partName, partsPrefix } from '../../../src/shared/queue/result-parts.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import { ObservedStore } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const INDEX_LENGTH = 4;

describe('the run part index', () => {
  let t: TestRedis;
  let b: TestBucket;
  let writer: RunStore;
  let observed: ObservedStore;
  let reader: RunStore;

  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    // One result per part: batches of one line, sent at once.
    writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store, batching: { maxLines: 1 }, partIndexLength: INDEX_LENGTH });
    observed = new ObservedStore(b.store);
    reader = new RunStore(t.redis, { prefix: t.prefix }, { store: observed, partCache: new PartCache(16 * 1024 * 1024) });
  });
  afterEach(async () => {
    await t.cleanup();
    await b.cleanup();
  });

  const ok = (key: string): RunManifestLine => ({ key, status: 'ok', top1: { index: 1, label: 'one', probability: 0.9 }, degenerate: false });

  async function liveRun(id: string, keys: string[]): Promise<void> {
    await writer.createRun({ id, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    await writer.addJobs(id, keys.map((key) => ({ key })));
    await writer.finishEnqueue(id);
  }

  /** Every line the reader sees, and the LISTs it made to see them. */
  async function read(id: string): Promise<{ keys: string[]; lists: number }> {
    observed.resetCounts();
    const keys: string[] = [];
    for await (const page of reader.scanResults(id)) keys.push(...page.map((l) => l.key));
    return { keys, lists: observed.counts.listPages };
  }

  it('indexes each stored part once, in counting order, keeps only the newest, and tells when it no longer reaches back', async () => {
    const keys = Array.from({ length: 6 }, (_, i) => `in/${i}.jpg`);
    await liveRun('idx1', keys);
    for (const key of keys) await writer.recordResult('idx1', ok(key));
    // A duplicate delivery: nothing left to write, so no part and no entry.
    await writer.recordResult('idx1', ok('in/0.jpg'));
    const run = await writer.requireRun('idx1');
    expect(run.partIndex?.seq).toBe(6);
    const prefix = partsPrefix(`out/idx1/`, run.epoch);
    expect(await t.redis.zcard(writer.keys('idx1').parts)).toBe(INDEX_LENGTH);
    const names = await listPartKeys(b.store, b.bucket, prefix);
    const tail = await writer.partsIndexedFrom('idx1', prefix, 6 - INDEX_LENGTH + 1);
    expect(tail?.last).toBe(6);
    expect(tail?.at?.key).toBe(names[6 - INDEX_LENGTH]);
    expect(tail?.parts.map((p) => p.key)).toEqual(names.slice(6 - INDEX_LENGTH + 1));
    // Sizes and ETags as S3 lists them: the part cache keys parsed parts by ETag.
    const listed = new Map<string, { size: number; etag: string }>();
    for await (const page of b.store.listPages(b.bucket, prefix)) for (const o of page) listed.set(o.key, { size: o.size, etag: o.etag });
    for (const p of [tail?.at, ...(tail?.parts ?? [])]) expect({ size: p?.size, etag: p?.etag }).toEqual(listed.get(p?.key ?? ''));
    expect(await writer.partsIndexedFrom('idx1', prefix, 6 - INDEX_LENGTH), 'trimmed past the position').toBeNull();
    expect(await writer.partsIndexedFrom('idx1', prefix, 6)).toEqual({ at: expect.objectContaining({ key: names[5] }), parts: [], last: 6 });
    expect(await writer.partsIndexedFrom('idx1', prefix, 0), 'trimmed past the start').toBeNull();
  });

  it('a reader lists once, then takes new parts from the index; it lists again only when it fell behind the index', async () => {
    const keys = Array.from({ length: 12 }, (_, i) => `in/${String(i).padStart(2, '0')}.jpg`);
    await liveRun('idx2', keys);
    await writer.recordResult('idx2', ok(keys[0] as string));
    expect(await read('idx2')).toEqual({ keys: keys.slice(0, 1), lists: 1 });
    for (let i = 1; i <= 3; i++) {
      await writer.recordResult('idx2', ok(keys[i] as string));
      expect(await read('idx2'), `after result ${i}`).toEqual({ keys: keys.slice(0, i + 1), lists: 0 });
    }
    // More new parts than the index keeps: the reader cannot extend its listing, and lists.
    for (let i = 4; i < 4 + INDEX_LENGTH + 1; i++) await writer.recordResult('idx2', ok(keys[i] as string));
    expect(await read('idx2')).toEqual({ keys: keys.slice(0, 4 + INDEX_LENGTH + 1), lists: 1 });
    await writer.recordResult('idx2', ok(keys[9] as string));
    expect(await read('idx2')).toEqual({ keys: keys.slice(0, 10), lists: 0 });
  });

  it('a result counted without an index entry (a writer from before the index) or an index lost with Redis data makes the reader list', async () => {
    const keys = ['in/a.jpg', 'in/b.jpg', 'in/c.jpg', 'in/d.jpg'];
    await liveRun('idx3', [...keys, 'in/e.jpg']);
    await writer.recordResult('idx3', ok('in/a.jpg'));
    expect((await read('idx3')).lists).toBe(1);

    // What a writer without the index does: the part, then the counting, and no entry.
    const run = await writer.requireRun('idx3');
    const k = writer.keys('idx3');
    await b.store.put(b.bucket, `${partsPrefix('out/idx3/', run.epoch)}${partName(Date.now(), 'oldwriter', 0)}`, partBody([ok('in/b.jpg')]).body, { contentType: 'application/x-ndjson' });
    await t.redis.multi().hdel(k.pending, 'in/b.jpg').hincrby(k.record, 'done', 1).exec();
    expect(await read('idx3')).toEqual({ keys: ['in/a.jpg', 'in/b.jpg'], lists: 1 });

    // Entries lost (a Redis that lost the index): what remains does not connect to the listing.
    await writer.recordResult('idx3', ok('in/c.jpg'));
    await t.redis.del(k.parts);
    await writer.recordResult('idx3', ok('in/d.jpg'));
    expect(await read('idx3')).toEqual({ keys, lists: 1 });
    await writer.recordResult('idx3', ok('in/e.jpg'));
    expect(await read('idx3')).toEqual({ keys: [...keys, 'in/e.jpg'], lists: 0 });
  });

  it('a Redis restart that lost the last commit (AOF everysec) gives its sequence number to another part: the reader notices and lists', async () => {
    const keys = ['in/a.jpg', 'in/b.jpg', 'in/c.jpg', 'in/d.jpg'];
    await liveRun('idx5', keys);
    await writer.recordResult('idx5', ok('in/a.jpg'));
    await writer.recordResult('idx5', ok('in/b.jpg'));
    expect(await read('idx5')).toEqual({ keys: ['in/a.jpg', 'in/b.jpg'], lists: 1 });
    // Redis as it comes back without b's counting script: b pending again, its entry and number gone
    // (its part stays in S3, never counted, as when a worker dies between the PUT and the count).
    const k = writer.keys('idx5');
    await t.redis
      .multi()
      .zremrangebyscore(k.parts, 2, 2)
      .hincrby(k.record, 'partSeq', -1)
      .hincrby(k.record, 'done', -1)
      .hincrby(k.record, 'indexedDone', -1)
      .hset(k.pending, 'in/b.jpg', '0\t')
      .exec();
    await writer.recordResult('idx5', ok('in/c.jpg')); // takes number 2 again
    await writer.recordResult('idx5', ok('in/d.jpg'));
    const after = await read('idx5');
    expect(after.lists).toBe(1);
    expect(after.keys).toEqual(expect.arrayContaining(['in/a.jpg', 'in/c.jpg', 'in/d.jpg']));
  });

  it('finalization deletes the index with the parts, and a reader of the completed run sees every line from the manifest', async () => {
    const keys = Array.from({ length: 5 }, (_, i) => `in/${i}.jpg`);
    await liveRun('idx4', keys);
    for (const key of keys.slice(0, 4)) await writer.recordResult('idx4', ok(key));
    expect((await read('idx4')).keys).toEqual(keys.slice(0, 4));
    const last = await writer.recordResult('idx4', ok(keys[4] as string));
    expect(last.complete).toBe(true);
    const outcome = await finalizeRun('idx4', { runs: writer, redis: t.redis, upload: s3StreamUploader(b.store.client) });
    expect(outcome.status).toBe('written');
    expect(await t.redis.exists(writer.keys('idx4').parts)).toBe(0);
    expect(await listPartKeys(b.store, b.bucket, 'out/idx4/_parts/')).toEqual([]);
    expect((await read('idx4')).keys).toEqual(keys);
  });
});
