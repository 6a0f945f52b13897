import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3ObjectStore } from '../../../src/shared/storage/s3-store.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import { s3Options, services, testBucket, type TestBucket } from '../../helpers/services.js';

describe('fault-injecting S3 proxy', () => {
  let tb: TestBucket;
  let proxy: FaultProxy;
  beforeAll(async () => {
    tb = await testBucket();
    proxy = await startFaultProxy(services().s3Endpoint, { seed: 42 });
  });
  afterAll(async () => {
    await proxy.close();
    await tb.cleanup();
  });

  it('makes 30% 500s (and a few 503 SlowDowns) invisible to a client that retries', async () => {
    // 503 SlowDown is a throttling error with a long SDK backoff: a few of them keep the test quick.
    proxy.setRules([{ kind: 'status503', probability: 0.3, limit: 3 }, { kind: 'status500', probability: 0.3 }]);
    const store = S3ObjectStore.fromConfig(s3Options({ endpoint: proxy.url, maxAttempts: 6 }));
    for (let i = 0; i < 30; i++) {
      const body = Buffer.from(`object ${i}`);
      await store.put(tb.bucket, `p/${i}.txt`, body, { contentType: 'text/plain' });
      expect((await store.get(tb.bucket, `p/${i}.txt`)).body.equals(body)).toBe(true);
    }
    expect(proxy.stats.injected).toBeGreaterThan(5);
    expect(proxy.stats.byKind.status503).toBe(3);
    expect(proxy.stats.byKind.status500).toBeGreaterThan(3);
    store.destroy();
  });

  it('surfaces persistent 500s as retryable errors naming the object', async () => {
    proxy.setRules([{ kind: 'status500', match: (r) => r.method === 'GET' }]);
    const store = S3ObjectStore.fromConfig(s3Options({ endpoint: proxy.url, maxAttempts: 2 }));
    const err = await store.get(tb.bucket, 'p/0.txt').catch((e: unknown) => e);
    expect((err as { retryable?: boolean }).retryable).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`s3://${tb.bucket}/p/0.txt.*HTTP 500`));
    store.destroy();
  });
});
