/**
 * ObjectStore on @aws-sdk/client-s3. The SDK's standard retry strategy already retries throttling
 * and 5xx with exponential backoff and jitter (`maxAttempts`); what reaches us after that is mapped
 * to our named errors so callers decide retries without parsing messages.
 */
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { Readable } from 'node:stream';
import type { S3Config } from '../config.js';
import { AccessDeniedError, CredentialsError, InvalidInputError, NotFoundError, TransientError, toError } from '../errors.js';
import type { FolderPage, GetOptions, ListOptions, ObjectHead, ObjectStore, ObjectSummary, PutOptions, StoredObject } from './object-store.js';
import { readCapped, S3ObjectRequests } from './s3-object-requests.js';
import { formatS3Uri } from './uri.js';

export interface S3StoreOptions extends S3Config {
  /** Explicit static credentials (tests, embedded demo). Default: the SDK's credential chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /**
   * Sockets per S3 host (kept alive). Default: the SDK's 50. Callers with more concurrent requests
   * than that (a worker with large batches and prefetch) size it to their concurrency, or requests
   * queue inside the SDK.
   */
  maxSockets?: number;
  /**
   * Object GET/PUT/HEAD through the SDK's signer without its middleware stack (s3-object-requests.ts),
   * or through `S3Client.send` like every other request. Default 'direct': same requests, same
   * signatures and retries, a fraction of the CPU.
   */
  objectRequests?: 'direct' | 'sdk';
}

/** The SDK's own socket pool per host, which direct object requests match unless told otherwise. */
export const DEFAULT_S3_SOCKETS = 50;

export function createS3Client(options: S3StoreOptions): S3Client {
  const config: S3ClientConfig = {
    region: options.region,
    forcePathStyle: options.forcePathStyle,
    maxAttempts: options.maxAttempts,
  };
  if (options.endpoint) {
    config.endpoint = options.endpoint;
    // S3-compatible servers (s3rver, older MinIO) store aws-chunked bodies with the checksum
    // trailer inside the object. Only compute checksums when an operation requires them.
    config.requestChecksumCalculation = 'WHEN_REQUIRED';
    config.responseChecksumValidation = 'WHEN_REQUIRED';
  }
  if (options.credentials) config.credentials = options.credentials;
  if (options.maxSockets !== undefined) {
    const agent = { keepAlive: true, maxSockets: options.maxSockets };
    config.requestHandler = { httpAgent: agent, httpsAgent: agent };
  }
  return new S3Client(config);
}

export class S3ObjectStore implements ObjectStore {
  /** Buckets a request has shown to exist: a HEAD miss in them needs no HeadBucket to be told from a missing bucket. */
  private readonly knownBuckets = new Set<string>();

  constructor(
    readonly client: S3Client,
    /** Direct object requests (GET, PUT of a buffer, HEAD); without it everything goes through the SDK. */
    private readonly objects?: S3ObjectRequests,
  ) {}

  static fromConfig(options: S3StoreOptions): S3ObjectStore {
    const client = createS3Client(options);
    const direct = (options.objectRequests ?? 'direct') === 'direct';
    return new S3ObjectStore(client, direct ? new S3ObjectRequests(client, { maxAttempts: options.maxAttempts, maxSockets: options.maxSockets ?? DEFAULT_S3_SOCKETS }) : undefined);
  }

  /** Close the client's and the direct requests' sockets. */
  destroy(): void {
    this.objects?.destroy();
    this.client.destroy();
  }

  async *listPages(bucket: string, prefix: string, options: ListOptions = {}): AsyncIterable<ObjectSummary[]> {
    let continuationToken: string | undefined;
    let first = true;
    do {
      const out = await this.call(bucket, prefix, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: bucket,
            Prefix: prefix,
            MaxKeys: options.pageSize ?? 1000,
            ContinuationToken: continuationToken,
            StartAfter: first ? options.startAfter : undefined,
          }),
          { abortSignal: options.signal },
        ),
      );
      first = false;
      const page: ObjectSummary[] = (out.Contents ?? []).flatMap((o) =>
        o.Key === undefined ? [] : [{ key: o.Key, size: o.Size ?? 0, etag: stripQuotes(o.ETag), lastModified: o.LastModified }],
      );
      if (page.length > 0) yield page;
      continuationToken = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (continuationToken);
  }

  async *listFolders(bucket: string, prefix: string, options: Pick<ListOptions, 'pageSize' | 'signal'> = {}): AsyncIterable<FolderPage> {
    let continuationToken: string | undefined;
    do {
      const out = await this.call(bucket, prefix, () =>
        this.client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, Delimiter: '/', MaxKeys: options.pageSize ?? 1000, ContinuationToken: continuationToken }),
          { abortSignal: options.signal },
        ),
      );
      const objects: ObjectSummary[] = (out.Contents ?? []).flatMap((o) =>
        o.Key === undefined ? [] : [{ key: o.Key, size: o.Size ?? 0, etag: stripQuotes(o.ETag), lastModified: o.LastModified }],
      );
      const folders = (out.CommonPrefixes ?? []).flatMap((p) => (p.Prefix === undefined ? [] : [p.Prefix]));
      if (objects.length > 0 || folders.length > 0) yield { objects, folders };
      continuationToken = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (continuationToken);
  }

  async hasObjects(bucket: string, prefix: string, options: Pick<ListOptions, 'signal'> = {}): Promise<boolean> {
    const out = await this.call(bucket, prefix, () => this.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, MaxKeys: 1 }), { abortSignal: options.signal }));
    return (out.Contents ?? []).length > 0;
  }

  async get(bucket: string, key: string, options: GetOptions = {}): Promise<StoredObject> {
    return this.call(bucket, key, async () => {
      // Ranges go through the SDK: the direct requests read whole objects only.
      const route = options.range ? undefined : await this.objects?.route(bucket);
      if (route && this.objects) {
        const got = await this.objects.get(route, key, options);
        if ('tooLarge' in got) throw tooLarge(bucket, key, got.tooLarge, options.maxBytes ?? 0);
        this.knownBuckets.add(bucket);
        return got;
      }
      const range = options.range && `bytes=${options.range.start}-${options.range.end - 1}`;
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key, ...(range ? { Range: range } : {}) }), { abortSignal: options.signal });
      const size = out.ContentLength;
      if (options.maxBytes !== undefined && size !== undefined && size > options.maxBytes) {
        (out.Body as Readable | undefined)?.destroy?.();
        throw tooLarge(bucket, key, { size, announced: true }, options.maxBytes);
      }
      let body: Buffer = Buffer.alloc(0);
      if (out.Body instanceof Readable) {
        // Without a Content-Length the limit is counted as the body arrives (readCapped).
        const read = await readCapped(out.Body, options.maxBytes);
        if ('overLimit' in read) throw tooLarge(bucket, key, { size: read.overLimit, announced: false }, options.maxBytes ?? 0);
        body = read.body;
      } else if (out.Body) body = Buffer.from(await out.Body.transformToByteArray());
      return { body, etag: stripQuotes(out.ETag), size: body.length, contentType: out.ContentType, metadata: out.Metadata ?? {} };
    });
  }

  async getStream(bucket: string, key: string, options: { signal?: AbortSignal } = {}): Promise<{ stream: Readable; etag: string; size: number; contentType?: string }> {
    return this.call(bucket, key, async () => {
      // The SDK would abort the body too if the caller's signal fired while it streams; a signal of
      // our own follows the caller's only until the answer arrives.
      const opening = new AbortController();
      const abort = (): void => opening.abort(options.signal?.reason);
      if (options.signal?.aborted) abort();
      options.signal?.addEventListener('abort', abort, { once: true });
      const out = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }), { abortSignal: opening.signal }).finally(() => options.signal?.removeEventListener('abort', abort));
      const stream = out.Body instanceof Readable ? out.Body : Readable.from([]);
      return { stream, etag: stripQuotes(out.ETag), size: out.ContentLength ?? 0, contentType: out.ContentType };
    });
  }

  async put(bucket: string, key: string, body: Buffer | Uint8Array | string | Readable, options: PutOptions): Promise<{ etag: string }> {
    return this.call(bucket, key, async () => {
      const route = body instanceof Readable ? null : await this.objects?.route(bucket);
      if (route && this.objects && !(body instanceof Readable)) {
        const bytes = typeof body === 'string' ? Buffer.from(body) : Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
        const out = await this.objects.put(route, key, bytes, options);
        this.knownBuckets.add(bucket);
        return out;
      }
      const out = await this.client.send(
        new PutObjectCommand({
          Bucket: bucket,
          Key: key,
          Body: body,
          ContentType: options.contentType,
          ContentLength: options.contentLength ?? (typeof body === 'string' ? Buffer.byteLength(body) : body instanceof Readable ? undefined : body.byteLength),
          Metadata: options.metadata,
        }),
      );
      return { etag: stripQuotes(out.ETag) };
    });
  }

  async head(bucket: string, key: string): Promise<ObjectHead | null> {
    const route = await this.call(bucket, key, async () => this.objects?.route(bucket));
    if (route && this.objects) {
      const found = await this.call(bucket, key, () => (this.objects as S3ObjectRequests).head(route, key));
      if (found) {
        this.knownBuckets.add(bucket);
        return found;
      }
      if (!this.knownBuckets.has(bucket) && !(await this.bucketExists(bucket))) throw noSuchBucket(bucket);
      this.knownBuckets.add(bucket);
      return null;
    }
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      return { etag: stripQuotes(out.ETag), size: out.ContentLength ?? 0, contentType: out.ContentType, metadata: out.Metadata ?? {} };
    } catch (err) {
      if (statusOf(err) === 404) {
        // HEAD has no body, so "no such key" and "no such bucket" look alike; tell them apart.
        if (!(await this.bucketExists(bucket))) throw noSuchBucket(bucket);
        return null;
      }
      throw mapError(err, bucket, key);
    }
  }

  async exists(bucket: string, key: string): Promise<boolean> {
    return (await this.head(bucket, key)) !== null;
  }

  async delete(bucket: string, key: string): Promise<void> {
    await this.call(bucket, key, () => this.client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key })));
  }

  async bucketExists(bucket: string): Promise<boolean> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: bucket }));
      return true;
    } catch (err) {
      const status = statusOf(err);
      if (status === 404) return false;
      throw mapError(err, bucket, '');
    }
  }

  async createBucket(bucket: string): Promise<void> {
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: bucket }));
    } catch (err) {
      const name = (err as { name?: string }).name;
      if (name === 'BucketAlreadyOwnedByYou' || name === 'BucketAlreadyExists') return;
      throw mapError(err, bucket, '');
    }
  }

  private async call<T>(bucket: string, key: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw mapError(err, bucket, key);
    }
  }
}

function stripQuotes(etag: string | undefined): string {
  return (etag ?? '').replace(/^"|"$/g, '');
}

function statusOf(err: unknown): number | undefined {
  return (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

/** `announced`: the size is the object's Content-Length; otherwise the bytes received before the read was cut off. */
function tooLarge(bucket: string, key: string, { size, announced }: { size: number; announced: boolean }, maxBytes: number): InvalidInputError {
  return new InvalidInputError('TOO_LARGE', `${formatS3Uri({ bucket, key })} is ${announced ? '' : 'at least '}${size} bytes, above the ${maxBytes}-byte limit`);
}

function noSuchBucket(bucket: string): NotFoundError {
  return new NotFoundError(`bucket "${bucket}" does not exist (check the bucket name and AWS_ENDPOINT_URL_S3 / AWS_REGION)`);
}

/** Map SDK failures (after its own retries) to named errors that decide our retries. */
export function mapError(err: unknown, bucket: string, key: string): Error {
  if (err instanceof InvalidInputError || err instanceof NotFoundError || err instanceof TransientError || err instanceof AccessDeniedError || err instanceof CredentialsError) return err;
  const name = (err as { name?: string })?.name ?? '';
  const status = statusOf(err);
  const where = formatS3Uri({ bucket, key });
  if (name === 'NoSuchBucket') return noSuchBucket(bucket);
  if (name === 'NoSuchKey' || (status === 404 && key !== '')) return new NotFoundError(`no object at ${where}`, { cause: err });
  if (name === 'AbortError') return toError(err);
  if (name === 'CredentialsProviderError') {
    return new CredentialsError(
      `no AWS credentials for ${where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE, or run with an IAM role (${(err as Error).message})`,
      { cause: err },
    );
  }
  if (status === 403 || name === 'AccessDenied' || name === 'InvalidAccessKeyId' || name === 'SignatureDoesNotMatch') {
    // Credentials rarely fix themselves; surface them as non-retryable with a hint.
    return new AccessDeniedError(`access denied to ${where} (${name || status}); check the credentials and bucket policy`, { cause: err });
  }
  const message = err instanceof S3ServiceException || err instanceof Error ? err.message : String(err);
  return new TransientError(`S3 request for ${where} failed${status ? ` with HTTP ${status}` : ''}: ${name ? `${name}: ` : ''}${message}`, { cause: err });
}
