/**
 * An ObjectStore in process memory, with S3's listing order and prefix semantics. For benchmarks
 * that measure the pipeline's Redis and merge costs at millions of images, where a local S3 server
 * would be the bottleneck being measured instead. Tests use the real S3 implementation.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError } from '../shared/errors.js';
import type { ListOptions, ObjectHead, ObjectStore, ObjectSummary, PutOptions, StoredObject } from '../shared/storage/object-store.js';
import type { StreamUploader } from '../shared/queue/result-parts.js';

interface Entry {
  body: Buffer;
  etag: string;
  contentType: string;
  metadata: Record<string, string>;
}

export class MemoryObjectStore implements ObjectStore {
  private readonly buckets = new Map<string, Map<string, Entry>>();
  /** Requests by kind, for request-count arithmetic. */
  readonly requests = { put: 0, get: 0, list: 0, delete: 0 };
  /** Bytes stored by PUTs so far (never decreases): lets a benchmark tell its own memory from the store's. */
  bytesPut = 0;

  private bucket(name: string): Map<string, Entry> {
    const b = this.buckets.get(name);
    if (!b) throw new NotFoundError(`bucket "${name}" does not exist`);
    return b;
  }

  async *listPages(bucket: string, prefix: string, options: ListOptions = {}): AsyncIterable<ObjectSummary[]> {
    const keys = [...this.bucket(bucket).keys()].filter((k) => k.startsWith(prefix) && (options.startAfter === undefined || k > options.startAfter)).sort();
    const size = options.pageSize ?? 1000;
    for (let i = 0; i < keys.length; i += size) {
      this.requests.list++;
      yield keys.slice(i, i + size).map((key) => {
        const e = this.bucket(bucket).get(key) as Entry;
        return { key, size: e.body.length, etag: e.etag };
      });
    }
  }

  async get(bucket: string, key: string): Promise<StoredObject> {
    this.requests.get++;
    const e = this.bucket(bucket).get(key);
    if (!e) throw new NotFoundError(`s3://${bucket}/${key} does not exist`);
    return { body: e.body, etag: e.etag, size: e.body.length, contentType: e.contentType, metadata: e.metadata };
  }

  async getStream(bucket: string, key: string): Promise<{ stream: Readable; etag: string; size: number; contentType?: string }> {
    const o = await this.get(bucket, key);
    // 64 KiB chunks, like a network stream.
    const chunks: Buffer[] = [];
    for (let i = 0; i < o.body.length; i += 65536) chunks.push(o.body.subarray(i, i + 65536));
    return { stream: Readable.from(chunks), etag: o.etag, size: o.size, contentType: o.contentType };
  }

  async put(bucket: string, key: string, body: Buffer | Uint8Array | string | Readable, options: PutOptions): Promise<{ etag: string }> {
    this.requests.put++;
    let buf: Buffer;
    if (body instanceof Readable) {
      const parts: Buffer[] = [];
      for await (const c of body) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
      buf = Buffer.concat(parts);
    } else buf = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
    this.bytesPut += buf.length;
    const etag = createHash('md5').update(buf).digest('hex');
    this.bucket(bucket).set(key, { body: buf, etag, contentType: options.contentType, metadata: options.metadata ?? {} });
    return { etag };
  }

  async head(bucket: string, key: string): Promise<ObjectHead | null> {
    const e = this.bucket(bucket).get(key);
    return e ? { etag: e.etag, size: e.body.length, contentType: e.contentType, metadata: e.metadata } : null;
  }

  async exists(bucket: string, key: string): Promise<boolean> {
    return (await this.head(bucket, key)) !== null;
  }

  async delete(bucket: string, key: string): Promise<void> {
    this.requests.delete++;
    this.bucket(bucket).delete(key);
  }

  async bucketExists(bucket: string): Promise<boolean> {
    return this.buckets.has(bucket);
  }

  async createBucket(bucket: string): Promise<void> {
    if (!this.buckets.has(bucket)) this.buckets.set(bucket, new Map());
  }

  /** A StreamUploader into this store (the finalizer's multipart upload, in memory). */
  uploader(): StreamUploader {
    return async (bucket, key, body, contentType) => {
      await this.put(bucket, key, body, { contentType });
    };
  }

  bytes(bucket: string, prefix = ''): number {
    let n = 0;
    for (const [k, e] of this.bucket(bucket)) if (k.startsWith(prefix)) n += e.body.length;
    return n;
  }
}
