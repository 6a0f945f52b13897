/**
 * A real object store seen through a window: every call goes to the wrapped store (a real S3
 * server in the tests), counted per method, and a test may run its own step just before a listing
 * or a read starts (to place a real concurrent action, e.g. the finalizer, at an exact moment).
 */
import type { Readable } from 'node:stream';
import type { GetOptions, ListOptions, ObjectStore, ObjectSummary, PutOptions } from '../../src/shared/storage/object-store.js';

export type StoreStep = (bucket: string, keyOrPrefix: string) => Promise<void>;

export class ObservedStore implements ObjectStore {
  /** Calls per method: listPages counts listings (not pages), getStream and get count reads. */
  readonly counts = { listPages: 0, hasObjects: 0, getStream: 0, get: 0, head: 0 };
  /** HEADs per object key. */
  readonly heads = new Map<string, number>();
  /** Bytes read per object key (whole objects, ranges and streams alike). */
  readonly bytesRead = new Map<string, number>();
  /** Runs before each listing starts. */
  beforeList: StoreStep | null = null;
  /** Runs before each read (get or getStream) is sent. */
  beforeRead: StoreStep | null = null;

  constructor(readonly inner: ObjectStore) {}

  /** Objects read, whole or streamed. */
  get reads(): number {
    return this.counts.get + this.counts.getStream;
  }

  resetCounts(): void {
    for (const k of Object.keys(this.counts) as Array<keyof ObservedStore['counts']>) this.counts[k] = 0;
    this.bytesRead.clear();
    this.heads.clear();
  }

  async *listPages(bucket: string, prefix: string, options?: ListOptions): AsyncIterable<ObjectSummary[]> {
    this.counts.listPages += 1;
    await this.beforeList?.(bucket, prefix);
    yield* this.inner.listPages(bucket, prefix, options);
  }
  // Not a listing for `beforeList`: the steps placed there wait for listings of parts and sources.
  async hasObjects(bucket: string, prefix: string, options?: Pick<ListOptions, 'signal'>): Promise<boolean> {
    this.counts.hasObjects += 1;
    return this.inner.hasObjects(bucket, prefix, options);
  }
  async getStream(bucket: string, key: string, options?: { signal?: AbortSignal }): Promise<{ stream: Readable; etag: string; size: number; contentType?: string }> {
    this.counts.getStream += 1;
    await this.beforeRead?.(bucket, key);
    const got = await this.inner.getStream(bucket, key, options);
    this.countBytes(key, got.size);
    return got;
  }
  async get(bucket: string, key: string, options?: GetOptions) {
    this.counts.get += 1;
    await this.beforeRead?.(bucket, key);
    const got = await this.inner.get(bucket, key, options);
    this.countBytes(key, got.body.length);
    return got;
  }
  private countBytes(key: string, bytes: number): void {
    this.bytesRead.set(key, (this.bytesRead.get(key) ?? 0) + bytes);
  }
  put(bucket: string, key: string, body: Buffer | Uint8Array | string | Readable, options: PutOptions) {
    return this.inner.put(bucket, key, body, options);
  }
  head(bucket: string, key: string) {
    this.counts.head += 1;
    this.heads.set(key, (this.heads.get(key) ?? 0) + 1);
    return this.inner.head(bucket, key);
  }
  exists(bucket: string, key: string) {
    return this.inner.exists(bucket, key);
  }
  delete(bucket: string, key: string) {
    return this.inner.delete(bucket, key);
  }
  bucketExists(bucket: string) {
    return this.inner.bucketExists(bucket);
  }
  createBucket(bucket: string) {
    return this.inner.createBucket(bucket);
  }
}
