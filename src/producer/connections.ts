/**
 * The producer's connections for one CLI invocation: Redis (run records, and the BullMQ queue on a
 * connection of its own) and S3.
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
  // The queue gets a connection of its own. Replies on one connection come back in order, so on a
  // shared one each page's registration and backlog check waited behind the whole addBulk pipeline
  // of the chunks still in flight, and the producer idled while Redis ran them. Apart, Redis
  // serves the small calls between the pipeline's commands, and the producer builds the next
  // chunk's jobs while Redis adds the previous ones (docs/benchmarks.md, "Enqueue: where a key's
  // time goes").
  const queueRedis = createRedis(config.redisUrl, { role: 'client', name: `${name}-queue` });
  // Errors surface through waitForRedis and failing commands; the event would only duplicate them.
  redis.on('error', () => undefined);
  queueRedis.on('error', () => undefined);
  try {
    await Promise.all([waitForRedis(redis, config.redisUrl, timeoutMs), waitForRedis(queueRedis, config.redisUrl, timeoutMs)]);
  } catch (err) {
    redis.disconnect();
    queueRedis.disconnect();
    throw err;
  }
  const ks = keySpaceOf(config);
  // BullMQ does not close a connection it was handed: close() below does.
  const queue = new QueueShards<AuditJobPayload>(config.queueName, ks, queueRedis);
  // Without a listener, an 'error' event would crash the process; failed commands still reject.
  queue.on('error', () => undefined);
  return {
    redis,
    runs: new RunStore(redis, ks, { store: options.store }),
    queue,
    async close() {
      await queue.close().catch(() => undefined);
      await Promise.all([redis, queueRedis].map((r) => r.quit().then(() => undefined, () => r.disconnect())));
    },
  };
}

export function openStore(config: AppConfig): S3ObjectStore {
  return S3ObjectStore.fromConfig(config.s3);
}
