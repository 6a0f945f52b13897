/**
 * The producer's connections for one CLI invocation: Redis (run records + BullMQ queue) and S3.
 * `close()` releases all of them so the process exits by itself when the command is done.
 */
import type { RedisConnection } from '../shared/queue/redis.js';
import type { AppConfig } from '../shared/config.js';
import type { AuditJobPayload } from '../shared/queue/contract.js';
import { keySpaceOf } from '../shared/queue/keys.js';
import { createRedis, waitForRedis } from '../shared/queue/redis.js';
import { RunStore } from '../shared/queue/run-store.js';
import { QueueShards } from '../shared/queue/shards.js';
import type { ObjectStore } from '../shared/storage/object-store.js';
import { S3ObjectStore } from '../shared/storage/s3-store.js';

export interface ProducerConnections {
  redis: RedisConnection;
  runs: RunStore;
  /** The audit queue (all its shards). */
  queue: QueueShards<AuditJobPayload>;
  close(): Promise<void>;
}

/** Connect to Redis, failing fast with a clear error when it does not answer. */
export async function connectProducer(config: AppConfig, name: string, options: { store?: ObjectStore; timeoutMs?: number } = {}): Promise<ProducerConnections> {
  const timeoutMs = options.timeoutMs ?? config.redisWaitMs;
  // `client` role: a CLI should fail with a clear error when Redis goes away mid-command (re-running
  // resumes the run), not retry forever. Queue (unlike Worker) needs no blocking connection.
  const redis = createRedis(config.redisUrl, { role: 'client', name });
  // Errors surface through waitForRedis and failing commands; the event would only duplicate them.
  redis.on('error', () => undefined);
  try {
    await waitForRedis(redis, config.redisUrl, timeoutMs);
  } catch (err) {
    redis.disconnect();
    throw err;
  }
  const ks = keySpaceOf(config);
  // The queue shares the connection: BullMQ does not close a connection it was handed.
  const queue = new QueueShards<AuditJobPayload>(config.queueName, ks, redis);
  // Without a listener, an 'error' event would crash the process; failed commands still reject.
  queue.on('error', () => undefined);
  return {
    redis,
    runs: new RunStore(redis, ks, { store: options.store }),
    queue,
    async close() {
      await queue.close().catch(() => undefined);
      await redis.quit().catch(() => redis.disconnect());
    },
  };
}

export function openStore(config: AppConfig): S3ObjectStore {
  return S3ObjectStore.fromConfig(config.s3);
}
