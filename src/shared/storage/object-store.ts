/**
 * The storage contract the producer, workers and dashboard use. The S3 implementation works against
 * AWS S3, MinIO and s3rver; tests use the real S3 implementation against a real server.
 */
import type { Readable } from 'node:stream';

export interface ObjectSummary {
  key: string;
  size: number;
  etag: string;
  lastModified?: Date;
}

export interface StoredObject {
  body: Buffer;
  etag: string;
  size: number;
  contentType?: string;
  metadata: Record<string, string>;
}

export interface ObjectHead {
  etag: string;
  size: number;
  contentType?: string;
  metadata: Record<string, string>;
}

export interface PutOptions {
  contentType: string;
  /** User metadata (x-amz-meta-*); keys lowercase ASCII. */
  metadata?: Record<string, string>;
  /** Byte length of a stream body; lets the SDK send a plain PUT instead of chunked encoding. */
  contentLength?: number;
}

/** Bytes `start` (inclusive) to `end` (exclusive) of an object. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface GetOptions {
  signal?: AbortSignal;
  /** Refuse (InvalidInputError TOO_LARGE) a body larger than this. */
  maxBytes?: number;
  range?: ByteRange;
}

export interface ListOptions {
  /** Keys per page (ListObjectsV2 MaxKeys). Default 1000, the S3 maximum. */
  pageSize?: number;
  /** Resume after this key (exclusive). */
  startAfter?: string;
  signal?: AbortSignal;
}

/** One page of a folder listing: the objects directly in the folder and its sub-folders, each in key order. */
export interface FolderPage {
  objects: ObjectSummary[];
  /** Sub-folder prefixes (S3 CommonPrefixes), each ending with the delimiter. */
  folders: string[];
}

export interface ObjectStore {
  /** Pages of a prefix listing, streamed: memory stays constant in the number of keys. */
  listPages(bucket: string, prefix: string, options?: ListOptions): AsyncIterable<ObjectSummary[]>;
  /**
   * One level of a prefix listing (ListObjectsV2 with Delimiter `/`): objects directly under the
   * prefix and the folders below it, which can then be listed in parallel. Optional: a store (or a
   * wrapper that rewrites listings) without it is listed sequentially.
   */
  listFolders?(bucket: string, prefix: string, options?: Pick<ListOptions, 'pageSize' | 'signal'>): AsyncIterable<FolderPage>;
  /**
   * Whether any object's key starts with `prefix`: one ListObjectsV2 with MaxKeys 1, however many
   * objects there are. Throws NotFoundError when the bucket does not exist.
   */
  hasObjects(bucket: string, prefix: string, options?: Pick<ListOptions, 'signal'>): Promise<boolean>;
  /**
   * The object read whole, or only the bytes of `range` (an HTTP Range GET; `size` is then the
   * range's length and `etag` still the whole object's, so a reader of ranges can tell that the
   * object changed between them).
   */
  get(bucket: string, key: string, options?: GetOptions): Promise<StoredObject>;
  /**
   * The object's body as a stream. `signal` aborts the request until the object's answer arrives;
   * after that the body streams on regardless (destroy the stream to end it), so a per-attempt
   * timeout does not cut a long body short.
   */
  getStream(bucket: string, key: string, options?: { signal?: AbortSignal }): Promise<{ stream: Readable; etag: string; size: number; contentType?: string }>;
  put(bucket: string, key: string, body: Buffer | Uint8Array | string | Readable, options: PutOptions): Promise<{ etag: string }>;
  /** Null when the object does not exist. Throws NotFoundError when the bucket does not. */
  head(bucket: string, key: string): Promise<ObjectHead | null>;
  exists(bucket: string, key: string): Promise<boolean>;
  delete(bucket: string, key: string): Promise<void>;
  bucketExists(bucket: string): Promise<boolean>;
  createBucket(bucket: string): Promise<void>;
}
