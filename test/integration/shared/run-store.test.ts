import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { listWorkers, writeHeartbeat, type WorkerHeartbeat } from '../../../src/shared/queue/heartbeat.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

describe('RunStore against a real Redis', () => {
  let t: TestRedis;
  let b: TestBucket;
  let store: RunStore;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    store = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
  });
  afterEach(async () => {
    await t.cleanup();
    await b.cleanup();
  });

  const newRun = (id: string) => ({ id, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });

  it('creates runs idempotently and dedupes enqueued keys', async () => {
    const first = await store.createRun(newRun('r1'));
    expect(first.created).toBe(true);
    expect((await store.createRun(newRun('r1'))).created).toBe(false);
    const keys = ['a.jpg', 'b.jpg', 'c.jpg'];
    expect(await store.addJobs('r1', keys.map((key) => ({ key })))).toEqual([0, 1, 2]);
    expect(await store.addJobs('r1', ['b.jpg', 'd.jpg'].map((key) => ({ key })))).toEqual([1]);
    const run = await store.finishEnqueue('r1');
    expect(run.total).toBe(4);
    expect(run.state).toBe('queued');
    expect(await store.listRunIds()).toEqual(['r1']);
  });

  it('creates a run whole: concurrent creators and readers never see a record holding only its id', async () => {
    // Two enqueues of the same run at once (the CLI derives the id from the arguments) read the
    // record to compare it with their request; a half-written one made the second refuse the run.
    const conns = Array.from({ length: 6 }, () => new Redis(t.redis.options));
    try {
      for (let round = 0; round < 20; round++) {
        const id = `whole-${round}`;
        const stores = conns.map((c) => new RunStore(c, { prefix: t.prefix }, { store: b.store }));
        let reading = true;
        const seen: Array<Record<string, string>> = [];
        const readers = conns.slice(0, 3).map(async (c) => {
          while (reading) {
            const h = await c.hgetall(store.keys(id).record);
            if (h.id) seen.push(h);
          }
        });
        const results = await Promise.all(stores.slice(3).map((s) => s.createRun(newRun(id))));
        reading = false;
        await Promise.all(readers);
        expect(results.filter((r) => r.created)).toHaveLength(1);
        for (const r of results) expect(r.record).toMatchObject({ id, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/`, state: 'enqueuing' });
        for (const h of seen) expect(h, `a reader saw ${JSON.stringify(h)}`).toMatchObject({ source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/` });
      }
    } finally {
      await Promise.all(conns.map((c) => c.quit()));
    }
  });

  it('keeps what enqueues found under the output prefix: may-exist for good, empty only where nothing says otherwise', async () => {
    const at = async (id: string) => (await store.requireRun(id)).outputsAtEnqueue;
    // Created with an answer, it is recorded; re-enqueues finding the prefix empty leave it.
    await store.createRun({ ...newRun('e'), outputsAtEnqueue: 'empty' });
    await store.createRun({ ...newRun('e'), outputsAtEnqueue: 'empty' });
    expect(await at('e')).toBe('empty');
    await store.createRun({ ...newRun('e'), outputsAtEnqueue: 'may-exist' });
    expect(await at('e')).toBe('may-exist');
    await store.createRun({ ...newRun('e'), outputsAtEnqueue: 'empty' });
    expect(await at('e')).toBe('may-exist');
    // A run created without one (an older version's producer) has none: workers treat it as doubt.
    await store.createRun(newRun('old'));
    expect(await at('old')).toBeUndefined();
    await t.redis.hset(store.keys('odd').record, 'id', 'odd', 'outputsAtEnqueue', 'unheard-of');
    expect(await at('odd')).toBeUndefined();
    // A re-enqueue by this version fills it in.
    await store.createRun({ ...newRun('old'), outputsAtEnqueue: 'empty' });
    expect(await at('old')).toBe('empty');
  });

  it('counts each image exactly once under concurrent increments from many connections', async () => {
    await store.createRun(newRun('r2'));
    const keys = Array.from({ length: 200 }, (_, i) => `img-${i}.jpg`);
    await store.addJobs('r2', keys.map((key) => ({ key })));
    await store.finishEnqueue('r2');

    // 8 independent connections each report every image, some as failed: duplicates must not count.
    const clients = Array.from({ length: 8 }, () => new Redis(t.url));
    const stores = clients.map((c) => new RunStore(c, { prefix: t.prefix }, { store: b.store }));
    const outcomes = await Promise.all(
      stores.flatMap((s, w) =>
        keys.map((key, i) => s.recordResult('r2', i % 10 === 0 ? { key, status: 'failed', error: `INVALID: bad ${w}` } : { key, status: 'ok', degenerate: i % 7 === 0 })),
      ),
    );
    clients.forEach((c) => c.disconnect());

    expect(outcomes.filter((o) => o.counted)).toHaveLength(200);
    const run = await store.requireRun('r2');
    expect(run.done).toBe(180);
    expect(run.failed).toBe(20);
    expect(run.done + run.failed).toBe(run.total);
    expect(run.degenerate).toBe(keys.filter((_, i) => i % 7 === 0 && i % 10 !== 0).length);
    expect(outcomes.filter((o) => o.complete && o.counted)).toHaveLength(1);

    let scanned = 0;
    for await (const page of store.scanResults('r2', 50)) scanned += page.length;
    expect(scanned).toBe(200);
    const tput = await store.throughput('r2');
    expect(tput.reduce((s, b) => s + b.count, 0)).toBe(200);
  });

  it('lets exactly one process claim finalization, and reopens a run when a failure is retried successfully', async () => {
    await store.createRun(newRun('r3'));
    await store.addJobs('r3', [{ key: 'x.jpg' }]);
    await store.finishEnqueue('r3');
    const o = await store.recordResult('r3', { key: 'x.jpg', status: 'failed', error: 'TRANSIENT: S3 503' });
    expect(o.complete).toBe(true);
    const claims = await Promise.all(Array.from({ length: 10 }, (_, i) => store.claimFinalizer('r3', `owner-${i}`, 60_000)));
    expect(claims.filter((c) => c === 'claimed')).toHaveLength(1);
    expect(claims.filter((c) => c === 'held')).toHaveLength(9);
    const owner = `owner-${claims.indexOf('claimed')}`;
    const { generation } = await store.requireRun('r3');
    expect(await store.markCompleted('r3', 'owner-x', generation)).toBe('lock-lost');
    expect(await store.markCompleted('r3', owner, generation + 1)).toBe('generation-moved');
    expect((await store.requireRun('r3')).state).toBe('finalizing');
    expect(await store.markCompleted('r3', owner, generation)).toBe('done');
    expect((await store.requireRun('r3')).state).toBe('completed');
    expect(await store.findUnfinalized()).toEqual([]);

    const upgrade = await store.recordResult('r3', { key: 'x.jpg', status: 'ok' });
    expect(upgrade.counted).toBe(true);
    const reopened = await store.requireRun('r3');
    expect(reopened).toMatchObject({ state: 'running', done: 1, failed: 0 });
    expect((await store.findUnfinalized()).map((r) => r.id)).toEqual(['r3']);
    // A later duplicate "ok" is ignored.
    expect((await store.recordResult('r3', { key: 'x.jpg', status: 'ok' })).counted).toBe(false);
  });

  it('lists only workers with a fresh heartbeat', async () => {
    const hb = (id: string): WorkerHeartbeat => ({
      workerId: id, host: 'h', pid: 1, engine: 'tfjs', backend: 'cpu', device: 'CPU', batchSize: 8, imagesPerSecond: 1.5,
      processed: 3, failed: 0, inFlight: 0, startedAt: new Date().toISOString(), lastSeen: new Date().toISOString(), version: '0', status: 'running',
    });
    const now = Date.now();
    await writeHeartbeat(t.redis, { prefix: t.prefix }, hb('fresh'), now);
    await writeHeartbeat(t.redis, { prefix: t.prefix }, hb('stale'), now - 60_000);
    const online = await listWorkers(t.redis, { prefix: t.prefix }, 30_000, now);
    expect(online.map((w) => w.workerId)).toEqual(['fresh']);
  });
});
