/**
 * ioredis connection factory. BullMQ workers block on Redis and must never give up on a command
 * (`maxRetriesPerRequest: null`); short-lived clients (CLI, dashboard reads) fail fast instead so a
 * Redis outage surfaces as a clear error rather than a hang.
 *
 * A `redis+cluster://` URL (shared/redis-target.ts) gets an ioredis `Cluster` with the same roles.
 */
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import { redact } from '../config.js';
import { TransientError } from '../errors.js';
import { isClusterUrl, parseClusterUrl, type ClusterTarget } from '../redis-target.js';

export { isClusterUrl } from '../redis-target.js';

export type RedisRole = 'worker' | 'queue' | 'client';

/** What the project talks to: one Redis server or a Redis Cluster (same commands, keys permitting). */
export type RedisConnection = Redis | Cluster;

export interface RedisFactoryOptions {
  /** `worker`: blocking BullMQ connections; `queue`: producers/Queue objects; `client`: plain reads. */
  role: RedisRole;
  /** Connection name shown by `CLIENT LIST`, e.g. `gca-worker-host-123`. */
  name?: string;
  /** Cap on the reconnect backoff in ms. Default 5000. */
  maxReconnectDelayMs?: number;
}

export function createRedis(url: string, options: RedisFactoryOptions): RedisConnection {
  const maxDelay = options.maxReconnectDelayMs ?? 5000;
  // Exponential reconnect with jitter, capped: a restarted Redis is picked up within seconds and
  // a fleet of workers does not reconnect in lockstep.
  const retry = (times: number): number => Math.min(maxDelay, 100 * 2 ** Math.min(times, 10)) * (0.5 + Math.random() / 2);
  const redisOptions: RedisOptions = {
    connectionName: options.name,
    retryStrategy: retry,
    maxRetriesPerRequest: options.role === 'client' ? 2 : null,
    enableReadyCheck: true,
    // Producers and CLI commands should fail when Redis is down at start, not queue commands forever.
    enableOfflineQueue: options.role !== 'client',
    lazyConnect: false,
  };
  if (!isClusterUrl(url)) return new Redis(url, redisOptions);
  const target = parseClusterUrl(url);
  const clusterOptions: ClusterOptions = {
    clusterRetryStrategy: retry,
    enableReadyCheck: true,
    enableOfflineQueue: options.role !== 'client',
    // A failover moves slots: follow MOVED/ASK and retry while the cluster elects a new master.
    retryDelayOnFailover: 200,
    retryDelayOnClusterDown: 300,
    redisOptions: { connectionName: options.name, maxRetriesPerRequest: redisOptions.maxRetriesPerRequest, ...clusterNodeAuth(target) },
  };
  return new Cluster(target.nodes, clusterOptions);
}

/** What every connection to a node of the cluster carries: the cluster URL's credentials and TLS. */
function clusterNodeAuth(target: ClusterTarget): Pick<RedisOptions, 'username' | 'password' | 'tls'> {
  return {
    ...(target.username ? { username: target.username } : {}),
    ...(target.password !== undefined ? { password: target.password } : {}),
    ...(target.tls ? { tls: {} } : {}),
  };
}

/**
 * One node of the cluster at `url` on a connection of its own, authenticated as the cluster client's
 * node connections are (a check that asks each master about itself cannot go through the `Cluster`
 * client, which may answer from another node). It fails fast: connect with `connect()`, within
 * `connectTimeoutMs`; no reconnects and no command retries.
 */
export function createClusterNodeRedis(url: string, node: { host: string; port: number }, options: { connectTimeoutMs: number }): Redis {
  return new Redis({
    host: node.host,
    port: node.port,
    lazyConnect: true,
    connectTimeout: options.connectTimeoutMs,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    ...clusterNodeAuth(parseClusterUrl(url)),
  });
}

/**
 * Wait until the connection is ready, or fail with an error that names the (redacted) URL and the
 * last connection error (ECONNREFUSED, ENOTFOUND, an auth failure), which usually says what to fix.
 */
export async function waitForRedis(redis: RedisConnection, url: string, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    let lastError = '';
    const timer = setTimeout(() => {
      cleanup();
      const cause = lastError ? ` (last error: ${lastError})` : '';
      const hint = isClusterUrl(url) ? 'are the cluster nodes up, is cluster_state ok, and are REDIS_CLUSTER_NODES / REDIS_URL right?' : 'is redis-server running and REDIS_URL right?';
      reject(new TransientError(`cannot reach Redis at ${redact(url)} within ${timeoutMs} ms${cause}; ${hint}`));
    }, timeoutMs);
    const onReady = (): void => {
      cleanup();
      resolve();
    };
    const onError = (err: Error): void => {
      lastError = redact(err.message);
    };
    const cleanup = (): void => {
      clearTimeout(timer);
      redis.off('ready', onReady);
      redis.off('error', onError);
    };
    redis.on('ready', onReady);
    redis.on('error', onError);
  });
}
