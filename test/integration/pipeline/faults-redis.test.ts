/**
 * Fault: Redis crashes (SIGKILL) and comes back on the same port in the middle of a run; then,
 * in a second run, the server drops every client connection (CLIENT KILL) mid-run. The
 * server keeps an fsync-always append-only file, as a production Redis behind BullMQ should, so
 * the queue survives; what is under test is that the workers' connections (blocking fetches, lock
 * renewals, run-record updates, heartbeats) reconnect on their own and the run completes with
 * every key exactly once. This test owns its Redis: the shared one is never restarted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { Cluster, type CliProcess } from '../../helpers/cluster.js';
import { testBucket, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, namespaceEnv, ownedTestRedis, startCliWorker, startRestartableRedis, waitForCompletedRun, writeTinyModel, type RestartableRedis } from './faults-support.js';
import { sampleImage } from './helpers.js';

const IMAGES = 60;

// Each test waits on real processes and a whole run; leave room for a loaded CI machine.
describe('fault: Redis restarts or drops connections mid-run', { timeout: 90_000 }, () => {
  let server: RestartableRedis;
  let t: TestRedis;
  let b: TestBucket;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;
  let runs: RunStore;
  let env: Record<string, string>;
  let workers: CliProcess[];
  const cluster = new Cluster();
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/r-${String(i).padStart(2, '0')}.png`);

  beforeAll(async () => {
    [server, b, model] = await Promise.all([startRestartableRedis(), testBucket(), writeTinyModel()]);
    t = ownedTestRedis(server.url);
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    env = namespaceEnv(t, { LOG_LEVEL: 'info' });
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 2), { contentType: 'image/png' })));
    // Small batches and little prefetch stretch the runs so the faults land in their middle.
    const args = ['--batch-size', '2', '--prefetch', '2', '--max-batch-delay-ms', '20'];
    workers = await Promise.all(['redis-w1', 'redis-w2'].map((id) => startCliWorker(cluster, { id, modelJson: model.modelJson, env, args })));
  });

  /** Resolve on the first "batch started" line logged by any worker after this call. */
  const nextBatch = async (): Promise<void> => {
    const seen = workers.map((w) => w.logs.length);
    await Promise.race(workers.map((w, i) => w.waitForLog((l) => l.msg === 'batch started' && w.logs.indexOf(l) >= seen[i], 60_000)));
  };

  const expectWorkersConnected = async (): Promise<void> => {
    // Alive, and connected under their own names (to the new server process after a restart).
    const clients = String(await t.redis.client('LIST'));
    for (const id of ['redis-w1', 'redis-w2']) expect(clients).toContain(`name=gca-${id}`);
    for (const w of workers) expect(w.child.exitCode).toBeNull();
  };

  afterAll(async () => {
    await cluster.stopAll();
    await t?.cleanup();
    await server?.stop();
    await b?.cleanup();
    await model?.remove();
  });

  it('workers reconnect after the restart and the run completes, every key once', async () => {
    const output = `s3://${b.bucket}/out/`;
    const enqueued = await enqueueCli(cluster, `s3://${b.bucket}/in/`, env, ['--output', output, '--run-id', 'redis-run']);
    expect(enqueued.enqueue.counts.added).toBe(IMAGES);

    await nextBatch();
    const before = await runs.requireRun('redis-run');
    await server.restart(1_500);
    // The crash really came mid-run: results were still missing when the server went down.
    expect(before.done + before.failed).toBeLessThan(IMAGES);

    const run = await waitForCompletedRun(runs, 'redis-run', 75_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });

    await expectWorkersConnected();
    await expectExactlyOnce(b.store, output, keys);
  });

  it('workers reconnect after the server drops every connection and the run completes, every key once', async () => {
    const output = `s3://${b.bucket}/out-drop/`;
    const enqueued = await enqueueCli(cluster, `s3://${b.bucket}/in/`, env, ['--output', output, '--run-id', 'drop-run']);
    expect(enqueued.enqueue.counts.added).toBe(IMAGES);

    await nextBatch();
    const before = await runs.requireRun('drop-run');
    // Every client but this one: blocking fetches, lock renewals, run-record writes, heartbeats.
    const killed = Number(await t.redis.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes'));
    expect(killed).toBeGreaterThanOrEqual(4); // two connections per worker at least
    expect(before.done + before.failed).toBeLessThan(IMAGES);

    const run = await waitForCompletedRun(runs, 'drop-run', 75_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });
    await expectWorkersConnected();
    await expectExactlyOnce(b.store, output, keys);
  });
});
