/**
 * Direct object requests (s3-object-requests.ts) against a real S3 server: what they store and read
 * is what the SDK stores and reads, and they recover from a skewed clock, expiring credentials, 5xx
 * answers and dropped connections as the SDK does. s3rver does not check SigV4 signatures, so a
 * small server here checks them with its own implementation of the algorithm, on the bytes that
 * actually arrive.
 */
import { createHash, createHmac } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AccessDeniedError, CredentialsError } from '../../../src/shared/errors.js';
import { S3ObjectRequests } from '../../../src/shared/storage/s3-object-requests.js';
import { S3ObjectStore } from '../../../src/shared/storage/s3-store.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import { s3Options, services, testBucket, type TestBucket } from '../../helpers/services.js';

describe('direct S3 object requests', () => {
  let tb: TestBucket;
  let sdk: S3ObjectStore;
  let proxy: FaultProxy;
  const opened: S3ObjectStore[] = [];
  const open = (store: S3ObjectStore): S3ObjectStore => (opened.push(store), store);
  beforeAll(async () => {
    tb = await testBucket();
    sdk = open(S3ObjectStore.fromConfig(s3Options({ objectRequests: 'sdk' })));
    proxy = await startFaultProxy(services().s3Endpoint, { seed: 7 });
  });
  afterAll(async () => {
    for (const store of opened) store.destroy();
    await proxy.close();
    await tb.cleanup();
  });

  it('stores and reads exactly what the SDK does: bytes, ETag, content type, metadata, odd keys', async () => {
    const direct = tb.store; // fromConfig's default
    const keys = ['d/plain.bin', "d/a b+c%20d!'()*~=&?#.jpg", 'd/ünï/猫.png', 'd/.../x'];
    for (const [i, key] of keys.entries()) {
      const body = Buffer.from(`${key} ${'x'.repeat(i * 1000)}`);
      const metadata = { 'source-etag': `etag-${i}`, 'options-hash': 'h' };
      // Written by one path, read by both.
      const writer = i % 2 === 0 ? direct : sdk;
      const put = await writer.put(tb.bucket, key, body, { contentType: 'image/png', metadata });
      for (const reader of [direct, sdk]) {
        const got = await reader.get(tb.bucket, key);
        expect(got.body.equals(body)).toBe(true);
        expect(got).toMatchObject({ etag: put.etag, size: body.length, contentType: 'image/png', metadata });
        expect(await reader.head(tb.bucket, key)).toEqual({ etag: put.etag, size: body.length, contentType: 'image/png', metadata });
      }
    }
    const listed: string[] = [];
    for await (const page of sdk.listPages(tb.bucket, 'd/')) listed.push(...page.map((o) => o.key));
    expect(listed.sort()).toEqual([...keys].sort());
    // A Uint8Array view and a string are sent as their bytes, nothing around them.
    const backing = Buffer.from('..view..');
    await direct.put(tb.bucket, 'd/view', new Uint8Array(backing.buffer, backing.byteOffset + 2, 4), { contentType: 'text/plain' });
    expect((await sdk.get(tb.bucket, 'd/view')).body.toString()).toBe('view');
    await direct.put(tb.bucket, 'd/text', 'çà', { contentType: 'text/plain' });
    expect((await sdk.get(tb.bucket, 'd/text')).body.toString()).toBe('çà');
  });

  it('signs what it sends: a SigV4-checking server accepts GET, PUT and HEAD of odd keys, and refuses a wrong secret', async () => {
    const secrets: Record<string, string> = { AKID: 'secret-1' };
    const verifier = await startSigV4Verifier(secrets);
    try {
      const options = { region: 'eu-west-1', endpoint: verifier.url, forcePathStyle: true, maxAttempts: 1 };
      const store = open(S3ObjectStore.fromConfig({ ...options, credentials: { accessKeyId: 'AKID', secretAccessKey: 'secret-1' } }));
      for (const key of ['plain.jpg', "a b+c%20d!'()*~=&?#.jpg", 'ünï/猫.png', 'x/.../y']) {
        await store.put('bkt', key, Buffer.from(key), { contentType: 'image/png', metadata: { 'source-etag': 'e' } });
        expect((await store.get('bkt', key)).body.toString()).toBe(key);
        expect(await store.head('bkt', key)).toMatchObject({ size: Buffer.byteLength(key) });
      }
      expect(verifier.verified).toBe(12);
      expect(verifier.paths).toContain('/bkt/a%20b%2Bc%2520d%21%27%28%29%2A~%3D%26%3F%23.jpg');
      const wrong = open(S3ObjectStore.fromConfig({ ...options, credentials: { accessKeyId: 'AKID', secretAccessKey: 'not-it' } }));
      const err = await wrong.get('bkt', 'plain.jpg').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(AccessDeniedError);
      expect((err as Error).message).toMatch(/SignatureDoesNotMatch/);
    } finally {
      await verifier.close();
    }
  });

  it('makes one request per HEAD that misses once the bucket is known (no HeadBucket each time), and still names a missing bucket', async () => {
    const store = open(S3ObjectStore.fromConfig(s3Options()));
    const methods: string[] = [];
    const count = (message: unknown): void => void methods.push((message as { request: { method: string } }).request.method);
    subscribe('http.client.request.start', count);
    try {
      for (let i = 0; i < 5; i++) expect(await store.head(tb.bucket, `absent/${i}`)).toBeNull();
    } finally {
      unsubscribe('http.client.request.start', count);
    }
    expect(methods).toEqual(['HEAD', 'HEAD', 'HEAD', 'HEAD', 'HEAD', 'HEAD']); // the first miss asks HeadBucket once
    await expect(store.head(`${tb.bucket}-absent`, 'x')).rejects.toThrow(/does not exist/);
  });

  it('corrects a skewed clock from the server and retries, as the SDK does', async () => {
    const store = open(S3ObjectStore.fromConfig(s3Options()));
    store.client.config.systemClockOffset = -3_600_000; // this client believes it is an hour earlier
    expect((await store.get(tb.bucket, 'd/plain.bin')).body.toString()).toMatch(/^d\/plain.bin/);
    expect(Math.abs(store.client.config.systemClockOffset)).toBeLessThan(60_000);
  });

  it('asks the credential provider again when its credentials expire, and names a provider failure', async () => {
    const { accessKeyId, secretAccessKey } = services().s3Credentials ?? { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    let calls = 0;
    // Credentials that expire within the SDK's refresh window are fetched again before each use.
    const client = new S3Client({ region: 'us-east-1', endpoint: services().s3Endpoint, forcePathStyle: true, credentials: async () => (calls++, { accessKeyId, secretAccessKey, expiration: new Date(Date.now() + 1000) }) });
    const store = open(new S3ObjectStore(client, new S3ObjectRequests(client, { maxAttempts: 1, maxSockets: 4 })));
    await store.get(tb.bucket, 'd/plain.bin');
    await store.get(tb.bucket, 'd/plain.bin');
    expect(calls).toBeGreaterThanOrEqual(2);

    const failing = new S3Client({ region: 'us-east-1', endpoint: services().s3Endpoint, forcePathStyle: true, credentials: async () => Promise.reject(Object.assign(new Error('no token file'), { name: 'CredentialsProviderError' })) });
    const none = open(new S3ObjectStore(failing, new S3ObjectRequests(failing, { maxAttempts: 1, maxSockets: 4 })));
    await expect(none.get(tb.bucket, 'd/plain.bin')).rejects.toThrow(CredentialsError);
  });

  it('retries 5xx, SlowDown and dropped connections with backoff, and gives up after maxAttempts', async () => {
    const store = open(S3ObjectStore.fromConfig(s3Options({ endpoint: proxy.url, maxAttempts: 4 })));
    proxy.setRules([{ kind: 'status500', limit: 1 }, { kind: 'reset', limit: 1 }, { kind: 'status503', limit: 1 }]);
    const before = proxy.stats.injected;
    const body = Buffer.from('through faults');
    await store.put(tb.bucket, 'f/one', body, { contentType: 'text/plain' });
    expect(proxy.stats.injected - before).toBe(3);
    expect((await store.get(tb.bucket, 'f/one')).body.equals(body)).toBe(true);

    proxy.setRules([{ kind: 'status500', match: (r) => r.method === 'HEAD' }]);
    const forwardedBefore = proxy.stats.injected;
    const err = await store.head(tb.bucket, 'f/one').catch((e: unknown) => e);
    expect(proxy.stats.injected - forwardedBefore).toBe(4); // one request, four attempts
    expect((err as { retryable?: boolean }).retryable).toBe(true);
    expect((err as Error).message).toMatch(new RegExp(`s3://${tb.bucket}/f/one.*HTTP 500`));
    proxy.setRules([]);
  });

  it('leaves buckets that need another signer to the SDK, and routes AWS buckets as the SDK does', async () => {
    const client = new S3Client({ region: 'eu-west-1', credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
    const requests = new S3ObjectRequests(client, { maxAttempts: 1, maxSockets: 1 });
    expect(await requests.route('my-bucket')).toMatchObject({ hostname: 'my-bucket.s3.eu-west-1.amazonaws.com', basePath: '', protocol: 'https:', signingRegion: 'eu-west-1' });
    // Dots break TLS on virtual-hosted names: path-style, as the SDK's rules say.
    expect(await requests.route('my.dotted.bucket')).toMatchObject({ hostname: 's3.eu-west-1.amazonaws.com', basePath: '/my.dotted.bucket' });
    // S3 Express directory buckets (session auth) and multi-region access points (SigV4a): SDK.
    expect(await requests.route('mybucket--euw1-az1--x-s3')).toBeNull();
    expect(await requests.route('arn:aws:s3::123456789012:accesspoint/mfzwi23gnjvgw.mrap')).toBeNull();
    requests.destroy();
    client.destroy();
  });
});

/**
 * An S3 stand-in that checks AWS Signature Version 4 as S3 does (canonical request over the raw
 * path, the signed headers and the payload's SHA-256, which must match the body received), with an
 * implementation of its own, and keeps what it was sent.
 */
async function startSigV4Verifier(secrets: Record<string, string>): Promise<{ url: string; verified: number; paths: string[]; close(): Promise<void> }> {
  const objects = new Map<string, Buffer>();
  const state = { verified: 0, paths: [] as string[] };
  const hmac = (key: Buffer | string, data: string): Buffer => createHmac('sha256', key).update(data).digest();
  const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');
  const verify = (req: IncomingMessage, body: Buffer): boolean => {
    const auth = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(req.headers.authorization ?? '');
    const secret = auth ? secrets[auth[1]!] : undefined;
    if (!auth || secret === undefined) return false;
    const [, , date, region, signedHeaders, signature] = auth as unknown as string[];
    const payloadHash = req.headers['x-amz-content-sha256'];
    if (payloadHash !== sha256(body)) return false;
    const names = signedHeaders!.split(';');
    if (!names.includes('host') || !names.includes('x-amz-date') || !names.includes('x-amz-content-sha256')) return false;
    const canonicalHeaders = names.map((n) => `${n}:${String(req.headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`).join('');
    const canonicalRequest = [req.method, req.url, '', canonicalHeaders, signedHeaders, payloadHash].join('\n');
    const scope = `${date}/${region}/s3/aws4_request`;
    const stringToSign = ['AWS4-HMAC-SHA256', req.headers['x-amz-date'], scope, sha256(canonicalRequest)].join('\n');
    const key = hmac(hmac(hmac(hmac(`AWS4${secret}`, date!), region!), 's3'), 'aws4_request');
    return hmac(key, stringToSign).toString('hex') === signature;
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      if (!verify(req, body)) {
        const xml = '<?xml version="1.0" encoding="UTF-8"?><Error><Code>SignatureDoesNotMatch</Code><Message>signature mismatch</Message></Error>';
        res.writeHead(403, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) }).end(req.method === 'HEAD' ? undefined : xml);
        return;
      }
      state.verified++;
      state.paths.push(req.url ?? '');
      const path = req.url ?? '';
      if (req.method === 'PUT') {
        objects.set(path, body);
        res.writeHead(200, { etag: `"${createHash('md5').update(body).digest('hex')}"` }).end();
        return;
      }
      const object = objects.get(path);
      if (!object) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-length': object.length, 'content-type': 'image/png' }).end(req.method === 'HEAD' ? undefined : object);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get verified() {
      return state.verified;
    },
    paths: state.paths,
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((r) => server.close(() => r()));
    },
  };
}
