/**
 * Per-test handles on the run's real Redis and S3: each test gets its own key prefix, queue name
 * and bucket, and cleans them up. On failure, set GCA_KEEP_TEST_DATA=1 to keep them for inspection.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { inject } from 'vitest';
import { S3ObjectStore } from '../../src/shared/storage/s3-store.js';
import type { S3StoreOptions } from '../../src/shared/storage/s3-store.js';

export function services(): ReturnType<typeof inject<'services'>> {
  return inject('services');
}

export function uniqueName(kind: string): string {
  return `t-${kind}-${randomBytes(4).toString('hex')}`;
}

export interface TestRedis {
  url: string;
  redis: Redis;
  prefix: string;
  queueName: string;
  cleanup(): Promise<void>;
}

export async function testRedis(): Promise<TestRedis> {
  const { redisUrl } = services();
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const prefix = uniqueName('p');
  const queueName = uniqueName('q');
  return {
    url: redisUrl,
    redis,
    prefix,
    queueName,
    async cleanup() {
      if (process.env.GCA_KEEP_TEST_DATA !== '1') {
        // SCAN + UNLINK only this test's namespace; never FLUSHALL a server others may share.
        for (const pattern of [`${prefix}:*`, `bull:${queueName}:*`]) {
          let cursor = '0';
          do {
            const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
            cursor = next;
            if (keys.length) await redis.unlink(...keys);
          } while (cursor !== '0');
        }
      }
      redis.disconnect();
    },
  };
}

export function s3Options(overrides: Partial<S3StoreOptions> = {}): S3StoreOptions {
  const { s3Endpoint, s3Credentials } = services();
  return {
    endpoint: s3Endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    maxAttempts: 3,
    credentials: s3Credentials,
    ...overrides,
  };
}

/** Environment variables that make the CLI (a child process) talk to the test services. */
export function serviceEnv(extra: Record<string, string> = {}): Record<string, string> {
  return envFor(services(), extra);
}

/** The same for any Redis and S3 (a harness running outside vitest, or with its own Redis). */
export function envFor(s: Pick<ReturnType<typeof services>, 'redisUrl' | 's3Endpoint' | 's3Credentials'>, extra: Record<string, string> = {}): Record<string, string> {
  const { redisUrl, s3Endpoint, s3Credentials } = s;
  return {
    REDIS_URL: redisUrl,
    AWS_ENDPOINT_URL_S3: s3Endpoint,
    AWS_REGION: 'us-east-1',
    ...(s3Credentials ? { AWS_ACCESS_KEY_ID: s3Credentials.accessKeyId, AWS_SECRET_ACCESS_KEY: s3Credentials.secretAccessKey } : {}),
    ...extra,
  };
}

export interface TestBucket {
  store: S3ObjectStore;
  bucket: string;
  cleanup(): Promise<void>;
}

export async function testBucket(): Promise<TestBucket> {
  const store = S3ObjectStore.fromConfig(s3Options());
  const bucket = uniqueName('b');
  await store.createBucket(bucket);
  return {
    store,
    bucket,
    async cleanup() {
      if (process.env.GCA_KEEP_TEST_DATA !== '1') {
        // s3rver removes a folder once its last object is deleted; two concurrent deletes there
        // race on that rmdir and one answers 500 (its object is gone all the same, and retries
        // keep failing). So delete in parallel ignoring errors, then sequentially what is left.
        for await (const page of store.listPages(bucket, '')) {
          for (let i = 0; i < page.length; i += 64) await Promise.all(page.slice(i, i + 64).map((o) => store.delete(bucket, o.key).catch(() => undefined)));
        }
        for await (const page of store.listPages(bucket, '')) {
          for (const o of page) await store.delete(bucket, o.key);
        }
      }
      store.destroy();
    },
  };
}
