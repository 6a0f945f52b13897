import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_JOB_POLICY, JOB_NAME, jobOptionsFor } from '../../../src/shared/queue/contract.js';
import type { KeySpace } from '../../../src/shared/queue/keys.js';
import { finishedJobIds, QueueShards, shardOfJob, shardPrefix } from '../../../src/shared/queue/shards.js';
import { testRedis, type TestRedis } from '../../helpers/services.js';

describe('finishedJobIds against real BullMQ queue shards', () => {
  const SHARDS = 3;
  let t: TestRedis;
  let ks: KeySpace;
  let queue: QueueShards<{ n: number }>;
  beforeEach(async () => {
    t = await testRedis();
    ks = { prefix: t.prefix, queueShards: SHARDS };
    queue = new QueueShards<{ n: number }>(t.queueName, ks, t.redis.duplicate());
  });
  afterEach(async () => {
    await queue.close();
    // Shard keys live under their own hash-tagged prefixes, outside the test's namespace pattern.
    for (let i = 0; i < SHARDS; i++) {
      const keys = await t.redis.keys(`${shardPrefix(ks, i)}:*`);
      if (keys.length > 0) await t.redis.unlink(...keys);
    }
    await t.cleanup();
  });

  const job = (n: number) => ({ name: JOB_NAME, data: { n }, opts: jobOptionsFor('run', 'e1', `k/${n}`, { ...DEFAULT_JOB_POLICY, attempts: 1 }) });
  const idOf = (n: number) => String(job(n).opts.jobId);

  it('names the completed and failed jobs of each shard, not the waiting or unknown ones', async () => {
    const ran = Array.from({ length: 20 }, (_, n) => n);
    expect(new Set(ran.map((n) => shardOfJob(idOf(n), SHARDS))).size).toBe(SHARDS); // every shard holds some
    await queue.addBulk(ran.map(job));
    // Real workers, one per shard: even jobs fail, odd ones complete.
    const connection = new Redis(t.url, { maxRetriesPerRequest: null });
    let finished = 0;
    const workers: Array<Worker<{ n: number }>> = [];
    const all = new Promise<void>((resolve) => {
      const count = () => void (++finished === ran.length && resolve());
      for (let i = 0; i < SHARDS; i++) {
        const w = new Worker<{ n: number }>(t.queueName, async (j) => {
          if (j.data.n % 2 === 0) throw new Error('fails');
        }, { connection, prefix: shardPrefix(ks, i) });
        w.on('completed', count).on('failed', count);
        workers.push(w);
      }
    });
    await all;
    await Promise.all(workers.map((w) => w.close()));
    connection.disconnect();
    await queue.addBulk([20, 21, 22].map(job)); // waiting

    const asked = [...ran, 20, 21, 22].map(idOf).concat('run.e1.never-added');
    expect([...(await finishedJobIds(queue, asked))].sort()).toEqual(ran.map(idOf).sort());
    // A single queue (the first shard) answers for its own jobs only.
    const first = queue.queues[0]!;
    expect([...(await finishedJobIds(first, asked))].sort()).toEqual(ran.filter((n) => shardOfJob(idOf(n), SHARDS) === 0).map(idOf).sort());
  });
});
