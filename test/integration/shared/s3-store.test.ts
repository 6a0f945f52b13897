import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotFoundError } from '../../../src/shared/errors.js';
import { S3ObjectStore } from '../../../src/shared/storage/s3-store.js';
import { s3Options, testBucket, uniqueName, type TestBucket } from '../../helpers/services.js';

describe('S3ObjectStore against a real S3 server', () => {
  let tb: TestBucket;
  beforeAll(async () => {
    tb = await testBucket();
  });
  afterAll(async () => {
    await tb.cleanup();
  });

  // Proves pagination at S3's default page size (1,000) with the fewest objects that need a second
  // page, and many continuation tokens with a small page size. 1,050 uploads instead of 2,500 keep
  // the test well inside its budget on a loaded 2-core machine (s3rver writes two files per PUT).
  it('lists 1,050 keys across pages, in order, with constant page size', async () => {
    const keys = Array.from({ length: 1050 }, (_, i) => `many/${String(i).padStart(5, '0')}.jpg`);
    // Upload with bounded concurrency (the server is local; the SDK keeps sockets alive).
    let next = 0;
    const uploader = async (): Promise<void> => {
      for (let i = next++; i < keys.length; i = next++) await tb.store.put(tb.bucket, keys[i]!, Buffer.from(keys[i]!), { contentType: 'image/jpeg' });
    };
    await Promise.all(Array.from({ length: 16 }, uploader));
    await tb.store.put(tb.bucket, 'other/outside.jpg', Buffer.from('x'), { contentType: 'image/jpeg' });

    const pageSizes: number[] = [];
    const listed: string[] = [];
    for await (const page of tb.store.listPages(tb.bucket, 'many/')) {
      pageSizes.push(page.length);
      for (const o of page) listed.push(o.key);
    }
    expect(pageSizes).toEqual([1000, 50]);
    expect(listed).toEqual(keys);

    // Small pages exercise many continuation tokens, and the last page is a partial one.
    const small: number[] = [];
    const smallKeys: string[] = [];
    for await (const page of tb.store.listPages(tb.bucket, 'many/', { pageSize: 97 })) {
      small.push(page.length);
      for (const o of page) smallKeys.push(o.key);
    }
    expect(small).toEqual([...Array<number>(10).fill(97), 1050 - 970]);
    expect(smallKeys).toEqual(keys);
  }, 120_000);

  it('tells whether a prefix holds any object with one listing of at most one key', async () => {
    await Promise.all(['has/a/1.jpg', 'has/a/2.jpg', 'has/b.jpg'].map((k) => tb.store.put(tb.bucket, k, Buffer.from(k), { contentType: 'image/jpeg' })));
    const paths: string[] = [];
    const seen = (message: unknown): void => void paths.push(String((message as { request: http.ClientRequest }).request.path));
    subscribe('http.client.request.start', seen);
    try {
      expect(await tb.store.hasObjects(tb.bucket, 'has/')).toBe(true);
      expect(await tb.store.hasObjects(tb.bucket, 'has/a/')).toBe(true);
      expect(await tb.store.hasObjects(tb.bucket, 'has/a/2')).toBe(true);
      expect(await tb.store.hasObjects(tb.bucket, 'has/c/')).toBe(false);
      expect(await tb.store.hasObjects(tb.bucket, 'hasnt/')).toBe(false);
    } finally {
      unsubscribe('http.client.request.start', seen);
    }
    expect(paths).toHaveLength(5);
    for (const p of paths) expect(p).toMatch(/[?&]max-keys=1(&|$)/);
    await expect(tb.store.hasObjects(uniqueName('missing'), 'x/')).rejects.toThrow(NotFoundError);
  });

  it('round-trips binary buffers and streams byte for byte, with ETags', async () => {
    const buf = randomBytes(300_000);
    const put = await tb.store.put(tb.bucket, 'bin/buffer.bin', buf, { contentType: 'application/octet-stream', metadata: { source: 'test' } });
    const got = await tb.store.get(tb.bucket, 'bin/buffer.bin');
    expect(Buffer.compare(got.body, buf)).toBe(0);
    expect(got.etag).toBe(put.etag);
    expect(got.etag).toBe(createHash('md5').update(buf).digest('hex'));
    expect(got.metadata.source).toBe('test');

    const streamed = randomBytes(1_500_000);
    const chunks = Array.from({ length: 15 }, (_, i) => streamed.subarray(i * 100_000, (i + 1) * 100_000));
    await tb.store.put(tb.bucket, 'bin/stream.bin', Readable.from(chunks), { contentType: 'application/octet-stream', contentLength: streamed.length });
    const back = await tb.store.get(tb.bucket, 'bin/stream.bin');
    expect(back.size).toBe(streamed.length);
    expect(createHash('sha256').update(back.body).digest('hex')).toBe(createHash('sha256').update(streamed).digest('hex'));

    const { stream, size } = await tb.store.getStream(tb.bucket, 'bin/stream.bin');
    const parts: Buffer[] = [];
    for await (const c of stream) parts.push(c as Buffer);
    expect(size).toBe(streamed.length);
    expect(Buffer.compare(Buffer.concat(parts), streamed)).toBe(0);
  });

  it('reads a byte range with the whole object\'s ETag (the manifest index checks versions by it)', async () => {
    const buf = randomBytes(200_000);
    const put = await tb.store.put(tb.bucket, 'bin/ranged.bin', buf, { contentType: 'application/octet-stream' });
    const got = await tb.store.get(tb.bucket, 'bin/ranged.bin', { range: { start: 65_536, end: 131_073 } });
    expect(Buffer.compare(got.body, buf.subarray(65_536, 131_073))).toBe(0);
    expect(got.size).toBe(65_537);
    expect(got.etag).toBe(put.etag);
  });

  it('stores keys with spaces, unicode, + and % exactly', async () => {
    for (const key of ['odd/a b+c%20d.jpg', 'odd/ünï/猫.png', 'odd/.../x.jpg']) {
      await tb.store.put(tb.bucket, key, Buffer.from(key), { contentType: 'text/plain' });
      expect((await tb.store.get(tb.bucket, key)).body.toString()).toBe(key);
      expect(await tb.store.exists(tb.bucket, key)).toBe(true);
    }
    const listed: string[] = [];
    for await (const page of tb.store.listPages(tb.bucket, 'odd/')) listed.push(...page.map((o) => o.key));
    expect(listed.sort()).toEqual(['odd/.../x.jpg', 'odd/a b+c%20d.jpg', 'odd/ünï/猫.png'].sort());
  });

  it('reports missing keys and buckets clearly', async () => {
    expect(await tb.store.head(tb.bucket, 'nope.jpg')).toBeNull();
    expect(await tb.store.exists(tb.bucket, 'nope.jpg')).toBe(false);
    await expect(tb.store.get(tb.bucket, 'nope.jpg')).rejects.toThrow(NotFoundError);
    await expect(tb.store.get(tb.bucket, 'nope.jpg')).rejects.toThrow(`no object at s3://${tb.bucket}/nope.jpg`);
    const missing = uniqueName('missing');
    await expect(tb.store.head(missing, 'x')).rejects.toThrow(new RegExp(`bucket "${missing}" does not exist`));
    const listing = (async () => {
      for await (const _ of tb.store.listPages(missing, '')) void _;
    })();
    await expect(listing).rejects.toThrow(NotFoundError);
    expect(await tb.store.bucketExists(missing)).toBe(false);
  });

  it('refuses oversized objects before reading them', async () => {
    await tb.store.put(tb.bucket, 'big.bin', Buffer.alloc(10_000), { contentType: 'application/octet-stream' });
    await expect(tb.store.get(tb.bucket, 'big.bin', { maxBytes: 1000 })).rejects.toThrow(/above the 1000-byte limit/);
  });

  it('holds maxBytes for a body sent without a Content-Length too, on both GET paths', async () => {
    // An S3-compatible endpoint (or a proxy) that streams objects chunked: 16 MiB, or 100 bytes.
    let sent = 0;
    const server = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'image/jpeg', ETag: '"abc"', 'Transfer-Encoding': 'chunked' });
      if (req.url?.includes('small')) return void res.end(Buffer.alloc(100, 7));
      const chunk = Buffer.alloc(64 * 1024, 1);
      let n = 0;
      const send = (): void => {
        while (n < 256 && !res.destroyed) {
          n++;
          sent += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', send);
        }
        res.end();
      };
      send();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      for (const objectRequests of ['direct', 'sdk'] as const) {
        const store = S3ObjectStore.fromConfig(s3Options({ endpoint, maxAttempts: 1, objectRequests }));
        try {
          sent = 0;
          const outcome = await store.get('bucket1', 'big.jpg', { maxBytes: 1024 }).then(
            (o) => `read ${o.body.length} bytes`,
            (e: Error & { code?: string }) => `${e.code}: ${e.message}`,
          );
          expect(outcome, objectRequests).toMatch(/^TOO_LARGE: s3:\/\/bucket1\/big\.jpg is at least \d+ bytes, above the 1024-byte limit$/);
          expect(sent, `${objectRequests}: bytes the server got out before the read was cut off`).toBeLessThan(16 * 1024 * 1024);
          expect((await store.get('bucket1', 'small.jpg', { maxBytes: 1024 })).body, objectRequests).toEqual(Buffer.alloc(100, 7));
        } finally {
          store.destroy();
        }
      }
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  it('surfaces an unreachable endpoint as a retryable error', async () => {
    const dead = S3ObjectStore.fromConfig(s3Options({ endpoint: 'http://127.0.0.1:9', maxAttempts: 1 }));
    const err = await dead.get('bucket', 'key').catch((e: unknown) => e);
    expect((err as { retryable?: boolean }).retryable).toBe(true);
    expect((err as Error).message).toMatch(/s3:\/\/bucket\/key/);
    dead.destroy();
  });
});
