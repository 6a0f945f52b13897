/**
 * Worker heartbeats: each worker rewrites its entry every few seconds; readers treat entries older
 * than `staleAfterMs` as offline and prune them, so a SIGKILLed worker disappears by itself.
 */
import type { RedisConnection } from './redis.js';
import { workersDataKey, workersIndexKey, type KeySpace } from './keys.js';

export interface WorkerHeartbeat {
  workerId: string;
  host: string;
  pid: number;
  engine: string;
  backend: string;
  device: string;
  batchSize: number;
  /** Images per second over the last heartbeat interval. */
  imagesPerSecond: number;
  processed: number;
  failed: number;
  inFlight: number;
  startedAt: string;
  lastSeen: string;
  version: string;
  /** `running`, or `draining` after SIGTERM. */
  status: 'starting' | 'running' | 'draining';
}

export const DEFAULT_STALE_AFTER_MS = 30_000;

export async function writeHeartbeat(redis: RedisConnection, ks: KeySpace, hb: WorkerHeartbeat, now = Date.now()): Promise<void> {
  await redis.multi().zadd(workersIndexKey(ks), now, hb.workerId).hset(workersDataKey(ks), hb.workerId, JSON.stringify(hb)).exec();
}

export async function removeHeartbeat(redis: RedisConnection, ks: KeySpace, workerId: string): Promise<void> {
  await redis.multi().zrem(workersIndexKey(ks), workerId).hdel(workersDataKey(ks), workerId).exec();
}

/** Online workers (heartbeat within `staleAfterMs`), pruning the stale ones. */
export async function listWorkers(redis: RedisConnection, ks: KeySpace, staleAfterMs = DEFAULT_STALE_AFTER_MS, now = Date.now()): Promise<WorkerHeartbeat[]> {
  const cutoff = now - staleAfterMs;
  const stale = await redis.zrangebyscore(workersIndexKey(ks), '-inf', `(${cutoff}`);
  if (stale.length > 0) {
    await redis.multi().zrem(workersIndexKey(ks), ...stale).hdel(workersDataKey(ks), ...stale).exec();
  }
  const ids = await redis.zrangebyscore(workersIndexKey(ks), cutoff, '+inf');
  if (ids.length === 0) return [];
  const values = await redis.hmget(workersDataKey(ks), ...ids);
  return values.filter((v): v is string => v !== null).map((v) => JSON.parse(v) as WorkerHeartbeat);
}
