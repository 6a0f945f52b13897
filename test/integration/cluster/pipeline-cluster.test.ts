/**
 * Everything on a Redis Cluster: a real three-master cluster (redis-server in cluster mode, joined
 * with redis-cli --cluster create), real `gradcam-audit enqueue`, `worker` (two, one SIGKILLed
 * mid-batch and started again), `dashboard` and `status` processes configured only through
 * REDIS_CLUSTER_NODES, with the queue in three shards. The run must end with every key in
 * manifest.jsonl exactly once, the key layout must be what makes scripts legal on a cluster (each
 * run's keys in one hash slot), and the three shards must sit on the three masters.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster, type LocalRedisCluster } from '../../../src/dev/local-services.js';
import { keySpaceOf, runKeys, type KeySpace } from '../../../src/shared/queue/keys.js';
import { createRedis, waitForRedis, type RedisConnection } from '../../../src/shared/queue/redis.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { QueueShards, keySlot, shardPrefix } from '../../../src/shared/queue/shards.js';
import { Cluster as CliCluster } from '../../helpers/cluster.js';
import { testBucket, uniqueName, type TestBucket } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, startCliWorker, waitForCompletedRun, writeTinyModel } from '../pipeline/faults-support.js';
import { sampleImage } from '../pipeline/helpers.js';
import type { Cluster as RedisCluster, Redis } from 'ioredis';

const IMAGES = 24;
const SHARDS = 3;
const LOCK_ARGS = ['--lock-duration-ms', '4000', '--stalled-interval-ms', '1000'];
const BATCH_ARGS = ['--batch-size', '4', '--prefetch', '8', '--max-batch-delay-ms', '100'];
// The victim gathers slowly, so it surely holds jobs when it is killed (see faults-worker-kill).
const VICTIM_BATCH_ARGS = ['--batch-size', '8', '--prefetch', '16', '--max-batch-delay-ms', '3000'];

/** Keys of one cluster node under `pattern` (a SCAN sees one node only). */
async function clusterKeys(node: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out;
}

describe('the pipeline on a Redis Cluster', { timeout: 120_000 }, () => {
  let cluster: LocalRedisCluster;
  let b: TestBucket;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;
  let redis: RedisConnection;
  let ks: KeySpace;
  let env: Record<string, string>;
  const procs = new CliCluster();
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/img-${String(i).padStart(2, '0')}.png`);

  beforeAll(async () => {
    [cluster, b, model] = await Promise.all([startRedisCluster(), testBucket(), writeTinyModel()]);
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 1), { contentType: 'image/png' })));
    const prefix = uniqueName('p');
    // REDIS_URL still names the single test Redis: REDIS_CLUSTER_NODES must win over it.
    env = { REDIS_CLUSTER_NODES: cluster.nodes.join(','), GRADCAM_AUDIT_QUEUE_SHARDS: String(SHARDS), GRADCAM_AUDIT_PREFIX: prefix, GRADCAM_AUDIT_QUEUE: uniqueName('q'), LOG_LEVEL: 'info' };
    ks = keySpaceOf({ keyPrefix: prefix, redisUrl: cluster.url, queueShards: SHARDS });
    redis = createRedis(cluster.url, { role: 'queue' });
    await waitForRedis(redis, cluster.url, 10_000);
  });

  afterAll(async () => {
    await procs.stopAll();
    redis?.disconnect();
    await cluster?.stop();
    await b?.cleanup();
    await model?.remove();
  });

  it('enqueue, two workers (one SIGKILLed and restarted), dashboard and status: every key once', async () => {
    expect(ks.cluster).toBe(true);
    const dashboard = procs.start('dashboard', ['dashboard', '--port', '0'], env);
    const [victim, survivor] = await Promise.all([
      startCliWorker(procs, { id: 'victim', modelJson: model.modelJson, env, args: [...VICTIM_BATCH_ARGS, ...LOCK_ARGS] }),
      startCliWorker(procs, { id: 'survivor', modelJson: model.modelJson, env, args: [...BATCH_ARGS, ...LOCK_ARGS] }),
    ]);
    const output = `s3://${b.bucket}/out/`;
    const enqueued = await enqueueCli(procs, `s3://${b.bucket}/in/`, env, ['--output', output, '--run-id', 'cluster-run']);
    expect(enqueued.enqueue.counts.added).toBe(IMAGES);

    await victim.waitForLog((l) => l.msg === 'batch started', 60_000);
    victim.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');
    const restarted = await startCliWorker(procs, { id: 'victim-2', modelJson: model.modelJson, env, args: [...BATCH_ARGS, ...LOCK_ARGS] });

    const runs = new RunStore(redis, ks, { store: b.store });
    const run = await waitForCompletedRun(runs, 'cluster-run', 60_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });
    const lines = await expectExactlyOnce(b.store, output, keys);
    expect([...lines.values()].every((l) => l.status === 'ok')).toBe(true);
    // The killed worker held jobs; another worker's stalled checker gave them back.
    const stalled = [survivor, restarted].flatMap((w) => w.logs.filter((l) => l.msg === 'job stalled (its worker stopped renewing the lock); it goes back to the queue'));
    expect(stalled.length).toBeGreaterThan(0);

    // Key layout: the run's keys carry the run id as hash tag (one slot, so its scripts are legal);
    // our slot function agrees with the cluster's.
    const rk = runKeys(ks, 'cluster-run');
    const c = redis as RedisCluster;
    const slot = (key: string): Promise<number> => c.cluster('KEYSLOT', key) as Promise<number>;
    const runSlots = await Promise.all(Object.values(rk).map(slot));
    expect(new Set(runSlots).size).toBe(1);
    expect(runSlots[0]).toBe(keySlot(rk.record));

    // Each shard's BullMQ keys are on a master of their own, and every shard did part of the run.
    const prefixes = Array.from({ length: SHARDS }, (_, i) => shardPrefix(ks, i));
    for (const p of prefixes) expect(await slot(`${p}:x`)).toBe(keySlot(p));
    const mastersByShard = await Promise.all(
      prefixes.map(async (p) => {
        const holders = await Promise.all(c.nodes('master').map(async (node) => ((await clusterKeys(node, `${p}:*`)).length > 0 ? `${node.options.port}` : null)));
        return holders.filter((h) => h !== null);
      }),
    );
    expect(mastersByShard.every((m) => m.length === 1)).toBe(true);
    expect(new Set(mastersByShard.flat()).size).toBe(SHARDS);
    const shards = new QueueShards(env.GRADCAM_AUDIT_QUEUE as string, ks, redis);
    try {
      // Polled: the run counts a job's result just before BullMQ moves that job to completed.
      await expect.poll(() => shards.getJobCounts('completed', 'failed', 'waiting', 'active')).toEqual({ completed: IMAGES, failed: 0, waiting: 0, active: 0 });
      const perShard = await Promise.all(shards.queues.map((q) => q.getJobCounts('completed')));
      expect(perShard.every((counts) => (counts.completed ?? 0) > 0)).toBe(true);
    } finally {
      await shards.close();
    }

    // The dashboard (a real process on the cluster) answers for the run, its queue and workers.
    const listening = await dashboard.waitForLog((l) => typeof l.address === 'string', 60_000);
    const base = String(listening.address);
    const api = async (path: string): Promise<unknown> => {
      const r = await fetch(`${base}${path}`);
      expect(r.status, path).toBe(200);
      return r.json();
    };
    expect(await api('/api/runs/cluster-run')).toMatchObject({ run: { id: 'cluster-run', done: IMAGES, state: 'completed' } });
    expect(await api('/api/queue')).toMatchObject({ backlog: 0, counts: { completed: IMAGES } });
    const board = (await api('/queues/api/queues')) as { queues: Array<{ name: string }> };
    expect(board.queues.map((q) => q.name).sort()).toEqual(prefixes.map((_, i) => `shard${i}-${env.GRADCAM_AUDIT_QUEUE}`));
    const workers = (await api('/api/workers')) as { workers: Array<{ workerId: string }> };
    // The killed worker's heartbeat stays until it is stale (30 s); the live ones are there.
    expect(workers.workers.map((w) => w.workerId)).toEqual(expect.arrayContaining(['survivor', 'victim-2']));

    const status = await procs.run(['status', 'cluster-run', '--json'], env, 60_000);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ run: { id: 'cluster-run', done: IMAGES, state: 'completed' } });
  });
});
