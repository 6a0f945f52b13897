/**
 * Everything on a Redis Cluster: a real three-master cluster (redis-server in cluster mode, joined
 * with redis-cli --cluster create), real `gradcam-audit enqueue`, `worker` (two, one SIGKILLed
 * mid-batch and started again), `dashboard` and `status` processes configured only through
 * REDIS_CLUSTER_NODES. The run must end with every key in manifest.jsonl exactly once, and the
 * key layout must be what makes scripts legal on a cluster: each run's keys in one hash slot.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRedisCluster, type LocalRedisCluster } from '../../../src/dev/local-services.js';
import { keySpaceOf, runKeys, type KeySpace } from '../../../src/shared/queue/keys.js';
import { createRedis, waitForRedis, type RedisConnection } from '../../../src/shared/queue/redis.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { Cluster as CliCluster } from '../../helpers/cluster.js';
import { testBucket, uniqueName, type TestBucket } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, startCliWorker, waitForCompletedRun, writeTinyModel } from '../pipeline/faults-support.js';
import { sampleImage } from '../pipeline/helpers.js';
import type { Cluster as RedisCluster } from 'ioredis';

const IMAGES = 24;
const LOCK_ARGS = ['--lock-duration-ms', '4000', '--stalled-interval-ms', '1000'];
const BATCH_ARGS = ['--batch-size', '4', '--prefetch', '8', '--max-batch-delay-ms', '100'];
// The victim gathers slowly, so it surely holds jobs when it is killed (see faults-worker-kill).
const VICTIM_BATCH_ARGS = ['--batch-size', '8', '--prefetch', '16', '--max-batch-delay-ms', '3000'];

/** Every key of the cluster under `pattern`: SCAN on each master (a SCAN sees one node only). */
async function clusterKeys(redis: RedisCluster, pattern: string): Promise<string[]> {
  const out: string[] = [];
  for (const node of redis.nodes('master')) {
    let cursor = '0';
    do {
      const [next, keys] = await node.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      out.push(...keys);
    } while (cursor !== '0');
  }
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
    env = { REDIS_CLUSTER_NODES: cluster.nodes.join(','), GRADCAM_AUDIT_PREFIX: prefix, GRADCAM_AUDIT_QUEUE: uniqueName('q'), LOG_LEVEL: 'info' };
    ks = keySpaceOf({ keyPrefix: prefix, redisUrl: cluster.url });
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

    // Key layout: the run's keys carry the run id as hash tag (one slot, so its scripts are legal),
    // and BullMQ's keys the prefix as hash tag.
    const rk = runKeys(ks, 'cluster-run');
    const c = redis as RedisCluster;
    const slot = (key: string): Promise<number> => c.cluster('KEYSLOT', key) as Promise<number>;
    const runSlots = new Set(await Promise.all(Object.values(rk).map(slot)));
    expect(runSlots.size).toBe(1);
    const bullKeys = await clusterKeys(c, `{${ks.prefix}}:*`);
    expect(bullKeys.length).toBeGreaterThan(0);
    expect(bullKeys.every((k) => k.startsWith(`{${ks.prefix}}:${env.GRADCAM_AUDIT_QUEUE}:`))).toBe(true);

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
    const workers = (await api('/api/workers')) as { workers: Array<{ workerId: string }> };
    // The killed worker's heartbeat stays until it is stale (30 s); the live ones are there.
    expect(workers.workers.map((w) => w.workerId)).toEqual(expect.arrayContaining(['survivor', 'victim-2']));

    const status = await procs.run(['status', 'cluster-run', '--json'], env, 60_000);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ run: { id: 'cluster-run', done: IMAGES, state: 'completed' } });
  });
});
