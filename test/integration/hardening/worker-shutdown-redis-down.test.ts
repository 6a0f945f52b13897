/**
 * A worker asked to stop while Redis is unreachable must still stop: within --drain-timeout-ms plus
 * a small margin, whether it was idle or held jobs whose results can no longer be recorded.
 * Nothing may wait on a Redis command that can never be answered.
 */
import os from 'node:os';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bullPrefix } from '../../../src/shared/queue/contract.js';
import { Cluster } from '../../helpers/cluster.js';
import { testBucket, type TestBucket } from '../../helpers/services.js';
import { enqueueCli, namespaceEnv, ownedTestRedis, startCliWorker, startRestartableRedis, writeTinyModel, type RestartableRedis } from '../pipeline/faults-support.js';
import { sampleImage } from '../pipeline/helpers.js';

const DRAIN_MS = 2_000;
/**
 * Exit after the drain: closing connections, the engine thread and the process itself. 6 s on an idle
 * machine, stretched by the run-queue length per core when the machine is loaded (up to 4x), since
 * CPU-starved process teardown is slow but bounded. The defect was an exit that never came: the
 * 30 s kill limit below still tells a hang from a slow exit.
 */
const MARGIN_MS = 6_000 * Math.min(4, Math.max(1, os.loadavg()[0]! / os.cpus().length));

// The two cases own their Redis and processes, so they run side by side.
describe.concurrent('worker shutdown with Redis down', { timeout: 90_000 }, () => {
  let b: TestBucket;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;

  beforeAll(async () => {
    [b, model] = await Promise.all([testBucket(), writeTinyModel()]);
    await Promise.all(Array.from({ length: 6 }, async (_, i) => b.store.put(b.bucket, `in/img-${i}.png`, await sampleImage(i + 1), { contentType: 'image/png' })));
  });
  /** A Redis of the test's own and a cluster for its processes, both stopped after `body`. */
  async function withOwnRedis(body: (server: RestartableRedis, cluster: Cluster) => Promise<void>): Promise<void> {
    const server = await startRestartableRedis();
    const cluster = new Cluster();
    try {
      await body(server, cluster);
    } finally {
      await cluster.stopAll();
      await server.stop();
    }
  }
  afterAll(async () => {
    await b?.cleanup();
    await model?.remove();
  });

  /** SIGTERM, then milliseconds until the process exited (or a failure after `limitMs`). */
  async function timeToExit(p: ReturnType<Cluster['start']>, limitMs: number): Promise<{ ms: number; code: number | null }> {
    const t0 = Date.now();
    p.kill('SIGTERM');
    const timer = setTimeout(() => p.kill('SIGKILL'), limitMs);
    const { code, signal } = await p.exited;
    clearTimeout(timer);
    const ms = Date.now() - t0;
    if (signal === 'SIGKILL') throw new Error(`worker still alive ${limitMs} ms after SIGTERM with Redis down; stderr tail:\n${p.stderr.slice(-2000)}`);
    return { ms, code };
  }

  it('stops in time when idle', () =>
    withOwnRedis(async (server, cluster) => {
    const env = namespaceEnv(ownedTestRedis(server.url), { LOG_LEVEL: 'info' });
    const worker = await startCliWorker(cluster, { id: 'idle-w', modelJson: model.modelJson, env, args: ['--drain-timeout-ms', String(DRAIN_MS)] });
    await server.stop();
    const { ms } = await timeToExit(worker, 30_000);
    expect(ms).toBeLessThan(DRAIN_MS + MARGIN_MS);
  }));

  it('stops in time while holding jobs whose results cannot be recorded', () =>
    withOwnRedis(async (server, cluster) => {
    const t = ownedTestRedis(server.url);
    const env = namespaceEnv(t, { LOG_LEVEL: 'info' });
    // Jobs wait 5 s for batch-mates: Redis goes away while the worker holds them.
    const worker = await startCliWorker(cluster, { id: 'busy-w', modelJson: model.modelJson, env, args: ['--drain-timeout-ms', String(DRAIN_MS), '--batch-size', '16', '--max-batch-delay-ms', '5000'] });
    await enqueueCli(cluster, `s3://${b.bucket}/in/`, env, ['--run-id', 'down-run']);
    const queue = new Queue(t.queueName, { connection: t.redis, prefix: bullPrefix({ prefix: t.prefix }) });
    const deadline = Date.now() + 30_000;
    while ((await queue.getActiveCount()) === 0) {
      if (Date.now() > deadline) throw new Error('the worker never took a job');
      await new Promise((r) => setTimeout(r, 50));
    }
    await queue.close();
    await t.cleanup();
    await server.stop();
    const { ms } = await timeToExit(worker, 30_000);
    expect(ms).toBeLessThan(DRAIN_MS + MARGIN_MS);
  }));
});
