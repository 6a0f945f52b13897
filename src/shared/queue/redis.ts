/**
 * ioredis connection factory. BullMQ workers block on Redis and must never give up on a command
 * (`maxRetriesPerRequest: null`); short-lived clients (CLI, dashboard reads) fail fast instead so a
 * Redis outage surfaces as a clear error rather than a hang.
 */
import { Redis, type RedisOptions } from 'ioredis';
import { redact } from '../config.js';
import { TransientError } from '../errors.js';

export type RedisRole = 'worker' | 'queue' | 'client';

export interface RedisFactoryOptions {
  /** `worker`: blocking BullMQ connections; `queue`: producers/Queue objects; `client`: plain reads. */
  role: RedisRole;
  /** Connection name shown by `CLIENT LIST`, e.g. `gca-worker-host-123`. */
  name?: string;
  /** Cap on the reconnect backoff in ms. Default 5000. */
  maxReconnectDelayMs?: number;
}

export function createRedis(url: string, options: RedisFactoryOptions): Redis {
  const maxDelay = options.maxReconnectDelayMs ?? 5000;
  const redisOptions: RedisOptions = {
    connectionName: options.name,
    // Exponential reconnect with jitter, capped: a restarted Redis is picked up within seconds and
    // a fleet of workers does not reconnect in lockstep.
    retryStrategy: (times) => Math.min(maxDelay, 100 * 2 ** Math.min(times, 10)) * (0.5 + Math.random() / 2),
    maxRetriesPerRequest: options.role === 'client' ? 2 : null,
    enableReadyCheck: true,
    // Producers and CLI commands should fail when Redis is down at start, not queue commands forever.
    enableOfflineQueue: options.role !== 'client',
    lazyConnect: false,
  };
  return new Redis(url, redisOptions);
}

/**
 * Wait until the connection is ready, or fail with an error that names the (redacted) URL and the
 * last connection error (ECONNREFUSED, ENOTFOUND, an auth failure), which usually says what to fix.
 */
export async function waitForRedis(redis: Redis, url: string, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    let lastError = '';
    const timer = setTimeout(() => {
      cleanup();
      const cause = lastError ? ` (last error: ${lastError})` : '';
      reject(new TransientError(`cannot reach Redis at ${redact(url)} within ${timeoutMs} ms${cause}; is redis-server running and REDIS_URL right?`));
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
