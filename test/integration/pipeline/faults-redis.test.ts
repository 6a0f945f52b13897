/**
 * Fault: Redis crashes (SIGKILL) and comes back on the same port in the middle of a run. The
 * server keeps an fsync-always append-only file, as a production Redis behind BullMQ should, so
 * the queue survives; what is under test is that the workers' connections (blocking fetches, lock
 * renewals, run-record updates, heartbeats) reconnect on their own and the run completes with
 * every key exactly once. This test owns its Redis: the shared one is never restarted.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { Cluster } from '../../helpers/cluster.js';
import { testBucket, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, namespaceEnv, ownedTestRedis, startCliWorker, startRestartableRedis, waitForCompletedRun, writeTinyModel, type RestartableRedis } from './faults-support.js';
import { sampleImage } from './helpers.js';

const IMAGES = 60;

describe('fault: Redis restarts mid-run', () => {
  let server: RestartableRedis;
  let t: TestRedis;
  let b: TestBucket;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;
  const cluster = new Cluster();
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/r-${String(i).padStart(2, '0')}.png`);

  beforeAll(async () => {
    [server, b, model] = await Promise.all([startRestartableRedis(), testBucket(), writeTinyModel()]);
    t = ownedTestRedis(server.url);
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 2), { contentType: 'image/png' })));
  });

  afterAll(async () => {
    await cluster.stopAll();
    await t?.cleanup();
    await server?.stop();
    await b?.cleanup();
    await model?.remove();
  });

  it('workers reconnect after the restart and the run completes, every key once', async () => {
    const runs = new RunStore(t.redis, { prefix: t.prefix });
    const env = namespaceEnv(t, { LOG_LEVEL: 'info' });
    // Small batches and little prefetch stretch the run so the restart lands in its middle.
    const args = ['--batch-size', '2', '--prefetch', '2', '--max-batch-delay-ms', '20'];
    const workers = await Promise.all(['redis-w1', 'redis-w2'].map((id) => startCliWorker(cluster, { id, modelJson: model.modelJson, env, args })));
    const output = `s3://${b.bucket}/out/`;
    const enqueued = await enqueueCli(cluster, `s3://${b.bucket}/in/`, env, ['--output', output, '--run-id', 'redis-run']);
    expect(enqueued.enqueue.counts.added).toBe(IMAGES);

    await Promise.race(workers.map((w) => w.waitForLog((l) => l.msg === 'batch started', 60_000)));
    const before = await runs.requireRun('redis-run');
    await server.restart(1_500);
    // The crash really came mid-run: results were still missing when the server went down.
    expect(before.done + before.failed).toBeLessThan(IMAGES);

    const run = await waitForCompletedRun(runs, 'redis-run', 75_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });

    // Both workers are alive and connected to the new server process under their own names.
    const clients = String(await t.redis.client('LIST'));
    for (const id of ['redis-w1', 'redis-w2']) expect(clients).toContain(`name=gca-${id}`);
    for (const w of workers) expect(w.child.exitCode).toBeNull();
    await expectExactlyOnce(b.store, output, keys);
  });
});
