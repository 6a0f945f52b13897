/**
 * What the dashboard needs from the outside world, injected so tests drive it against a real Redis
 * and a real S3 server with their own key prefixes, queues and buckets.
 */
import type { Queue } from 'bullmq';
import type { RedisConnection } from '../shared/queue/redis.js';
import type { Logger } from '../shared/logger.js';
import type { KeySpace } from '../shared/queue/keys.js';
import type { RunStore } from '../shared/queue/run-store.js';
import type { QueueShards } from '../shared/queue/shards.js';
import type { ObjectStore } from '../shared/storage/object-store.js';

export interface DashboardDeps {
  runs: RunStore;
  /** Plain Redis connection for heartbeat reads. */
  redis: RedisConnection;
  keySpace: KeySpace;
  store: ObjectStore;
  /** The audit queue (failed jobs, retries, bull-board): all its shards, or one plain BullMQ queue. */
  queue: Queue | QueueShards;
  logger: Logger;
  /** Clock, for deterministic rates in tests. Default `Date.now`. */
  now?: () => number;
}
