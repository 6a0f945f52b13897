import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { JOB_NAME, jobOptionsFor } from '../../../src/shared/queue/contract.js';
import { keySpaceOf } from '../../../src/shared/queue/keys.js';
import { QUEUE_EVENTS_MAX_LEN, QueueShards, shardPrefix } from '../../../src/shared/queue/shards.js';
import { testRedis, type TestRedis } from '../../helpers/services.js';

describe('queue event stream', () => {
  let t: TestRedis;
  let queue: QueueShards<{ n: number }>;
  beforeEach(async () => {
    t = await testRedis();
    queue = new QueueShards<{ n: number }>(t.queueName, keySpaceOf({ keyPrefix: t.prefix, redisUrl: t.url }), t.redis.duplicate());
  });
  afterEach(async () => {
    await queue.close();
    await t.cleanup();
  });

  it('is trimmed to QUEUE_EVENTS_MAX_LEN entries, not BullMQ\'s 10,000, whoever opened the queue', async () => {
    // Each add writes two entries ("added", "waiting"): 3,000 jobs are 6,000, which BullMQ's default keeps.
    for (let i = 0; i < 3000; i += 500) {
      await queue.addBulk(Array.from({ length: 500 }, (_, j) => ({ name: JOB_NAME, data: { n: i + j }, opts: jobOptionsFor('run-ev', 'e1', `k/${i + j}`) })));
    }
    const events = `${shardPrefix({ prefix: t.prefix }, 0)}:${t.queueName}:events`;
    const length = await t.redis.xlen(events);
    // Trimming is approximate, by whole stream nodes (stream-node-max-entries, 100 by default).
    expect(length).toBeGreaterThanOrEqual(QUEUE_EVENTS_MAX_LEN);
    expect(length).toBeLessThanOrEqual(QUEUE_EVENTS_MAX_LEN + 100);
    // The length lives in the queue's meta hash, where every BullMQ script that writes an event reads it.
    expect(await t.redis.hget(`${shardPrefix({ prefix: t.prefix }, 0)}:${t.queueName}:meta`, 'opts.maxLenEvents')).toBe(String(QUEUE_EVENTS_MAX_LEN));
  });
});
