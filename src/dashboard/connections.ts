/**
 * The dashboard's Redis connections and BullMQ queue, set up so that it keeps answering while
 * Redis is down or reconnecting: every connection it reads through fails a command at once when
 * there is no connection (no offline queue, `role: 'client'`), so a request answers 503 in
 * milliseconds instead of waiting for Redis, and each connection reconnects by itself.
 *
 * The queue connection matters as much as the plain one: with BullMQ's usual settings (an offline
 * queue and unlimited retries, right for workers and producers) `/api/queue`, the failures page and
 * bull-board would wait for as long as Redis stays down.
 */
import type { AppConfig } from '../shared/config.js';
import type { Logger } from '../shared/logger.js';
import { keySpaceOf } from '../shared/queue/keys.js';
import { createRedis, waitForRedis } from '../shared/queue/redis.js';
import { PartCache } from '../shared/queue/part-cache.js';
import { RunStore } from '../shared/queue/run-store.js';
import { QueueShards } from '../shared/queue/shards.js';
import type { ObjectStore } from '../shared/storage/object-store.js';
import type { DashboardDeps } from './deps.js';
import { DASHBOARD_DEFAULTS, type DashboardOptions } from './options.js';

export interface DashboardConnections {
  deps: DashboardDeps;
  /** Close the queue and both connections (not the object store, which the caller owns). */
  close(): Promise<void>;
}

export async function connectDashboard(
  config: Pick<AppConfig, 'redisUrl' | 'keyPrefix' | 'queueName' | 'redisWaitMs'> & Partial<Pick<AppConfig, 'queueShards'>>,
  store: ObjectStore,
  logger: Logger,
  options: Pick<DashboardOptions, 'partCacheBytes' | 'partReads'> = DASHBOARD_DEFAULTS,
): Promise<DashboardConnections> {
  const redis = createRedis(config.redisUrl, { role: 'client', name: 'gca-dashboard' });
  const queueConnection = createRedis(config.redisUrl, { role: 'client', name: 'gca-dashboard-queue' });
  // Until Redis first answers, waitForRedis reports the problem (once, with the last error); a
  // warning per reconnect attempt would only bury it.
  redis.on('error', () => undefined);
  queueConnection.on('error', () => undefined);
  try {
    // Both: without an offline queue, a command sent before a connection is ready fails.
    await Promise.all([waitForRedis(redis, config.redisUrl, config.redisWaitMs), waitForRedis(queueConnection, config.redisUrl, config.redisWaitMs)]);
  } catch (err) {
    // An open connection retrying in the background would keep the process alive forever.
    redis.disconnect();
    queueConnection.disconnect();
    throw err;
  }
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection problem'));
  const keySpace = keySpaceOf(config);
  const queue = new QueueShards(config.queueName, keySpace, queueConnection);
  // The queue repeats its connection's errors; the plain connection already logs them.
  queue.on('error', () => undefined);
  return {
    deps: { runs: new RunStore(redis, keySpace, { store, partCache: new PartCache(options.partCacheBytes, options.partReads) }), redis, keySpace, store, queue, logger },
    async close() {
      await queue.close().catch(() => undefined);
      queueConnection.disconnect();
      redis.disconnect();
    },
  };
}
