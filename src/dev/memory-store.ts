/**
 * An ObjectStore in process memory, with S3's listing order and prefix semantics. For benchmarks
 * that measure the pipeline's Redis and merge costs at millions of images, where a local S3 server
 * would be the bottleneck being measured instead. Tests use the real S3 implementation.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { NotFoundError } from '../shared/errors.js';
import { compareKeys } from '../shared/queue/result-parts.js';
import type { FolderPage, GetOptions, ListOptions, ObjectHead, ObjectStore, ObjectSummary, PutOptions, StoredObject } from '../shared/storage/object-store.js';
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

  /** Each bucket's keys in S3's order, rebuilt after a change: listings are binary searches. */
  private readonly sorted = new Map<string, string[]>();

  private sortedKeys(bucket: string): string[] {
    let keys = this.sorted.get(bucket);
    if (!keys) {
      keys = [...this.bucket(bucket).keys()].sort(compareKeys);
      this.sorted.set(bucket, keys);
    }
    return keys;
  }

  /** Index of the first key of `keys` greater than `after` (or not less than `from`). */
  private static lowerBound(keys: readonly string[], bound: string, inclusive: boolean): number {
    let lo = 0;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = compareKeys(keys[mid] as string, bound);
      if (c < 0 || (!inclusive && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private summary(bucket: string, key: string): ObjectSummary {
    const e = this.bucket(bucket).get(key) as Entry;
    return { key, size: e.body.length, etag: e.etag };
  }

  async *listPages(bucket: string, prefix: string, options: ListOptions = {}): AsyncIterable<ObjectSummary[]> {
    const keys = this.sortedKeys(bucket);
    const start = options.startAfter !== undefined && compareKeys(options.startAfter, prefix) >= 0 ? MemoryObjectStore.lowerBound(keys, options.startAfter, false) : MemoryObjectStore.lowerBound(keys, prefix, true);
    const size = options.pageSize ?? 1000;
    let page: ObjectSummary[] = [];
    for (let i = start; i < keys.length && (keys[i] as string).startsWith(prefix); i++) {
      page.push(this.summary(bucket, keys[i] as string));
      if (page.length === size) {
        this.requests.list++;
        yield page;
        page = [];
      }
    }
    if (page.length > 0) {
      this.requests.list++;
      yield page;
    }
  }

  async *listFolders(bucket: string, prefix: string, options: Pick<ListOptions, 'pageSize'> = {}): AsyncIterable<FolderPage> {
    const keys = this.sortedKeys(bucket);
    const size = options.pageSize ?? 1000;
    let page: FolderPage = { objects: [], folders: [] };
    // Like S3, a folder counts once towards the page size, however many keys it holds.
    for (let i = MemoryObjectStore.lowerBound(keys, prefix, true); i < keys.length && (keys[i] as string).startsWith(prefix); ) {
      const key = keys[i] as string;
      const slash = key.indexOf('/', prefix.length);
      if (slash < 0) {
        page.objects.push(this.summary(bucket, key));
        i++;
      } else {
        const folder = key.slice(0, slash + 1);
        page.folders.push(folder);
        // Skip the folder's keys: they all start with `folder`, and sort before folder + U+FFFF.
        i = MemoryObjectStore.lowerBound(keys, `${folder}\u{10FFFF}`, true);
      }
      if (page.objects.length + page.folders.length === size) {
        this.requests.list++;
        yield page;
        page = { objects: [], folders: [] };
      }
    }
    if (page.objects.length + page.folders.length > 0) {
      this.requests.list++;
      yield page;
    }
  }

  async hasObjects(bucket: string, prefix: string): Promise<boolean> {
    this.requests.list++;
    const keys = this.sortedKeys(bucket);
    const first = keys[MemoryObjectStore.lowerBound(keys, prefix, true)];
    return first !== undefined && first.startsWith(prefix);
  }

  async get(bucket: string, key: string, options: GetOptions = {}): Promise<StoredObject> {
    this.requests.get++;
    const e = this.bucket(bucket).get(key);
    if (!e) throw new NotFoundError(`s3://${bucket}/${key} does not exist`);
    const body = options.range ? e.body.subarray(options.range.start, options.range.end) : e.body;
    return { body, etag: e.etag, size: body.length, contentType: e.contentType, metadata: e.metadata };
  }

  async getStream(bucket: string, key: string, options: { signal?: AbortSignal } = {}): Promise<{ stream: Readable; etag: string; size: number; contentType?: string }> {
    options.signal?.throwIfAborted();
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
    if (!this.bucket(bucket).has(key)) this.sorted.delete(bucket);
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
    if (this.bucket(bucket).delete(key)) this.sorted.delete(bucket);
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
