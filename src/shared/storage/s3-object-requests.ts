/**
 * GET, PUT and HEAD of one object, signed by the SDK but sent without its middleware stack.
 *
 * A worker makes up to five object requests per image (idempotency HEAD, which a first audit
 * skips, source GET, three output PUTs).
 * Through `S3Client.send` each one walks some twenty middlewares (endpoint rules, schema
 * serde, retry, checksums, user agent, logger, …) and costs about 2 ms of CPU; a missing key (the
 * HEAD of every new image) goes through the SDK's error deserialization and costs 5-8 ms (see
 * docs/benchmarks.md, "S3 object requests"). For these three plain requests that is most of the
 * worker's CPU outside the engine, so they take this path:
 *
 * - the endpoint comes from the SDK's own endpoint rules (`config.endpointProvider`), resolved once
 *   per bucket with the client's region, FIPS/dual-stack, path-style and custom endpoint settings,
 *   so AWS virtual-hosted and path-style URLs, MinIO and s3rver come out exactly as the SDK would
 *   send them;
 * - requests are signed by the SDK's own SigV4 signer (`config.signer`), which takes credentials
 *   from the client's provider chain and refreshes them before they expire; the clock offset is the
 *   client's own (`config.systemClockOffset`) and is corrected from the server's Date header when a
 *   request is refused as skewed, as the SDK does;
 * - retries follow the SDK's standard strategy (up to `maxAttempts`, exponential backoff with full
 *   jitter, the SDK's own classification of throttling, transient and server errors);
 * - failures are raised shaped like the SDK's exceptions (`name` = S3 error code,
 *   `$metadata.httpStatusCode`), so `mapError` turns both into the same named errors;
 * - no checksum headers: S3 requires none for these operations (SigV4 already signs the payload's
 *   SHA-256), and S3-compatible servers store aws-chunked trailers inside the object.
 *
 * Anything else (a bucket whose endpoint rules ask for another auth scheme, such as S3 Express
 * directory buckets or multi-region access points, or extra headers) returns `null` from `route`
 * and the store sends it through the SDK.
 */
import http from 'node:http';
import https from 'node:https';
import type { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { DEFAULT_RETRY_DELAY_BASE, isClockSkewError, isServerError, isThrottlingError, isTransientError, MAXIMUM_RETRY_DELAY, THROTTLING_RETRY_DELAY_BASE } from '@smithy/core/retry';
import type { ObjectHead, PutOptions, StoredObject } from './object-store.js';

export interface ObjectRequestOptions {
  /** Attempts per request, retries included (S3Config.maxAttempts). */
  maxAttempts: number;
  /** Sockets per S3 host, kept alive. */
  maxSockets: number;
}

/** An S3 error response, shaped like the SDK's service exceptions so `mapError` reads both alike. */
export class S3ResponseError extends Error {
  readonly $metadata: { httpStatusCode: number; attempts?: number; clockSkewCorrected?: true };
  constructor(code: string, message: string, status: number) {
    super(message);
    this.name = code;
    this.$metadata = { httpStatusCode: status };
  }
}

/** Where a bucket's requests go and how they are signed; from the SDK's endpoint rules. */
export interface ObjectRoute {
  transport: typeof http | typeof https;
  agent: http.Agent;
  hostname: string;
  port: number | undefined;
  /** Host header as signed: the port only when it is not the scheme's default. */
  host: string;
  protocol: string;
  /** Path before the key: '' for virtual-hosted buckets, '/bucket' for path-style. */
  basePath: string;
  signer: Awaited<ReturnType<S3Client['config']['signer']>>;
  signingRegion: string;
  signingService: string;
  clockSkewCorrection: boolean;
}

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** Bytes received before a body sent without a Content-Length passed `maxBytes` (then dropped). */
  overLimit?: number;
}

const EMPTY = Buffer.alloc(0);
/** Corrections below this are not worth a retry (the SDK's threshold): S3 tolerates 15 minutes of skew. */
const CLOCK_SKEW_THRESHOLD_MS = 240_000;
/** Error bodies are short XML documents; more than this is not an S3 error body. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;

export class S3ObjectRequests {
  private readonly routes = new Map<string, Promise<ObjectRoute | null>>();
  private readonly httpAgent: http.Agent;
  private readonly httpsAgent: https.Agent;

  constructor(
    private readonly client: S3Client,
    private readonly options: ObjectRequestOptions,
  ) {
    this.httpAgent = new http.Agent({ keepAlive: true, maxSockets: options.maxSockets });
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: options.maxSockets });
  }

  /** Null when this bucket's requests need the SDK (another auth scheme or extra headers). */
  route(bucket: string): Promise<ObjectRoute | null> {
    let route = this.routes.get(bucket);
    if (!route) {
      route = this.resolveRoute(bucket);
      // A failed resolution (region provider error) is retried by the next request.
      route.catch(() => this.routes.delete(bucket));
      this.routes.set(bucket, route);
    }
    return route;
  }

  async get(route: ObjectRoute, key: string, options: { signal?: AbortSignal; maxBytes?: number }): Promise<StoredObject | { tooLarge: { size: number; announced: boolean } }> {
    const res = await this.send(route, 'GET', key, {}, undefined, options);
    const tooLarge = tooLargeOf(res, options.maxBytes);
    if (tooLarge !== undefined) return { tooLarge };
    return { body: res.body, etag: etagOf(res.headers), size: res.body.length, contentType: res.headers['content-type'], metadata: metadataOf(res.headers) };
  }

  async put(route: ObjectRoute, key: string, body: Buffer, options: PutOptions): Promise<{ etag: string }> {
    const headers: Record<string, string> = { 'content-type': options.contentType, 'content-length': String(body.length) };
    for (const [name, value] of Object.entries(options.metadata ?? {})) headers[`x-amz-meta-${name.toLowerCase()}`] = value;
    const res = await this.send(route, 'PUT', key, headers, body, {});
    return { etag: etagOf(res.headers) };
  }

  /** Null on 404 (no such key, or no such bucket: HEAD has no body to tell them apart). */
  async head(route: ObjectRoute, key: string): Promise<ObjectHead | null> {
    try {
      const res = await this.send(route, 'HEAD', key, {}, undefined, {});
      return { etag: etagOf(res.headers), size: Number(res.headers['content-length'] ?? 0), contentType: res.headers['content-type'], metadata: metadataOf(res.headers) };
    } catch (err) {
      if (err instanceof S3ResponseError && err.$metadata.httpStatusCode === 404) return null;
      throw err;
    }
  }

  destroy(): void {
    this.httpAgent.destroy();
    this.httpsAgent.destroy();
  }

  private async resolveRoute(bucket: string): Promise<ObjectRoute | null> {
    const config = this.client.config;
    const custom = config.isCustomEndpoint && config.endpoint ? await config.endpoint() : undefined;
    const endpoint = config.endpointProvider({
      Bucket: bucket,
      Region: await config.region(),
      UseFIPS: await config.useFipsEndpoint(),
      UseDualStack: await config.useDualstackEndpoint(),
      ForcePathStyle: config.forcePathStyle,
      Accelerate: config.useAccelerateEndpoint,
      UseGlobalEndpoint: await valueOf(config.useGlobalEndpoint),
      DisableMultiRegionAccessPoints: await valueOf(config.disableMultiregionAccessPoints),
      ...(custom ? { Endpoint: `${custom.protocol}//${custom.hostname}${custom.port ? `:${custom.port}` : ''}${custom.path}` } : {}),
    });
    const schemes = endpoint.properties?.authSchemes as Array<{ name?: string; signingName?: string; signingRegion?: string }> | undefined;
    const auth = schemes?.[0];
    if (!auth || auth.name !== 'sigv4' || !auth.signingRegion || Object.keys(endpoint.headers ?? {}).length > 0) return null;
    const url = endpoint.url;
    const secure = url.protocol === 'https:';
    const port = url.port === '' ? undefined : Number(url.port);
    const signingService = auth.signingName ?? 's3';
    return {
      transport: secure ? https : http,
      agent: secure ? this.httpsAgent : this.httpAgent,
      hostname: url.hostname,
      port,
      host: url.host,
      protocol: url.protocol,
      basePath: url.pathname.replace(/\/+$/, ''),
      signer: await config.signer({ name: 'sigv4', signingName: signingService, signingRegion: auth.signingRegion, properties: {} }),
      signingRegion: auth.signingRegion,
      signingService,
      clockSkewCorrection: (await config.disableClockSkewCorrection()) !== true,
    };
  }

  /** One request with the SDK's standard retries; non-2xx answers are thrown as S3ResponseError. */
  private async send(route: ObjectRoute, method: 'GET' | 'PUT' | 'HEAD', key: string, headers: Record<string, string>, body: Buffer | undefined, options: { signal?: AbortSignal; maxBytes?: number }): Promise<Response> {
    const path = `${route.basePath}/${encodeKey(key)}`;
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.once(route, method, path, headers, body, options);
      } catch (err) {
        const e = err as Error & { $metadata?: { attempts?: number } };
        if (e.$metadata) e.$metadata.attempts = attempt;
        if (attempt >= this.options.maxAttempts || options.signal?.aborted || !retryable(e as SdkError)) throw err;
        // Full jitter on an exponential ceiling, as the SDK's standard strategy.
        const base = isThrottlingError(e as SdkError) ? THROTTLING_RETRY_DELAY_BASE : DEFAULT_RETRY_DELAY_BASE;
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * Math.min(MAXIMUM_RETRY_DELAY, base * 2 ** attempt))));
      }
    }
  }

  private async once(route: ObjectRoute, method: string, path: string, headers: Record<string, string>, body: Buffer | undefined, options: { signal?: AbortSignal; maxBytes?: number }): Promise<Response> {
    const offsetBefore = this.client.config.systemClockOffset;
    const signed = await route.signer.sign(
      { method, protocol: route.protocol, hostname: route.hostname, port: route.port, path, query: {}, headers: { ...headers, host: route.host }, body },
      { signingDate: new Date(Date.now() + (route.clockSkewCorrection ? offsetBefore : 0)), signingRegion: route.signingRegion, signingService: route.signingService },
    );
    const res = await new Promise<Response>((resolve, reject) => {
      const req = route.transport.request(
        { agent: route.agent, method, hostname: route.hostname, port: route.port, path, headers: signed.headers, ...(options.signal ? { signal: options.signal } : {}) },
        (incoming) => void readResponse(incoming, method, options.maxBytes).then(resolve, reject),
      );
      req.on('error', reject);
      req.end(body);
    });
    if (res.status >= 200 && res.status < 300) return res;
    const error = errorOf(res);
    if (route.clockSkewCorrection && isClockSkewError(error as SdkError)) this.correctClock(res, error, offsetBefore);
    throw error;
  }

  /**
   * The SDK's clock-skew correction: the server's Date (not a cached answer's) sets the client's
   * offset, shared with its SDK requests. The request is retried when the offset moved by more than
   * the threshold, so that the retry is signed with a different clock.
   */
  private correctClock(res: Response, error: S3ResponseError, offsetBefore: number): void {
    const date = res.headers.date;
    if (!date || res.headers.age !== undefined) return;
    const serverTime = Date.parse(date);
    if (Number.isNaN(serverTime)) return;
    const offset = serverTime - Date.now();
    this.client.config.systemClockOffset = offset;
    if (Math.abs(offset - offsetBefore) >= CLOCK_SKEW_THRESHOLD_MS) error.$metadata.clockSkewCorrected = true;
  }
}

/** A client setting that is either a value or the SDK's provider of it. */
async function valueOf<T>(setting: T | (() => Promise<T>)): Promise<T> {
  return typeof setting === 'function' ? (setting as () => Promise<T>)() : setting;
}

/** What the SDK's classifiers read: `name`, `code`, `$metadata`. */
type SdkError = Parameters<typeof isTransientError>[0];

/** The SDK's retry decision: throttling, transient (network, timeouts, corrected skew) and 5xx. */
function retryable(err: SdkError): boolean {
  return isThrottlingError(err) || isTransientError(err) || isServerError(err);
}

/**
 * An object key as a URI path, as the SDK serializes S3's greedy `{Key+}` label: each segment
 * percent-encoded (RFC 3986 unreserved characters kept), slashes kept. SigV4 signs this path as is.
 */
export function encodeKey(key: string): string {
  return key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');
}

/**
 * The response body in one buffer. With a Content-Length (S3 always sends one for objects) it is
 * read straight into a buffer of that size, one copy from the socket; an object announced above
 * `maxBytes` is not read at all (the socket is dropped).
 */
function readResponse(res: http.IncomingMessage, method: string, maxBytes: number | undefined): Promise<Response> {
  const status = res.statusCode ?? 0;
  const headers = res.headers;
  return new Promise<Response>((resolve, reject) => {
    const ok = status >= 200 && status < 300;
    const length = headers['content-length'] === undefined ? undefined : Number(headers['content-length']);
    if (method === 'HEAD' || (ok && method !== 'GET')) {
      res.on('error', reject);
      res.on('end', () => resolve({ status, headers, body: EMPTY }));
      res.resume();
      return;
    }
    if (ok && maxBytes !== undefined && length !== undefined && length > maxBytes) {
      res.destroy();
      resolve({ status, headers, body: EMPTY });
      return;
    }
    if (ok && length === undefined) {
      readCapped(res, maxBytes).then((r) => resolve('overLimit' in r ? { status, headers, body: EMPTY, overLimit: r.overLimit } : { status, headers, body: r.body }), reject);
      return;
    }
    const limit = ok ? Infinity : MAX_ERROR_BODY_BYTES;
    const sized = ok && length !== undefined ? Buffer.allocUnsafe(length) : null;
    const chunks: Buffer[] = [];
    let received = 0;
    res.on('data', (chunk: Buffer) => {
      if (sized) {
        if (received + chunk.length > sized.length) {
          res.destroy(Object.assign(new Error(`S3 sent more than its Content-Length of ${sized.length} bytes`), { code: 'ECONNRESET' }));
          return;
        }
        chunk.copy(sized, received);
      } else if (received < limit) chunks.push(chunk);
      received += chunk.length;
    });
    res.on('error', reject);
    res.on('end', () => {
      if (sized && received !== sized.length) {
        // A connection cut mid-body: transient, like the SDK's ECONNRESET.
        reject(Object.assign(new Error(`S3 response ended after ${received} of ${sized.length} bytes`), { code: 'ECONNRESET' }));
        return;
      }
      resolve({ status, headers, body: sized ?? Buffer.concat(chunks) });
    });
  });
}

/**
 * A body sent without a Content-Length (chunked: a proxy, an S3-compatible server), read whole
 * unless it passes `maxBytes`: then the stream is destroyed at once, and what came so far is
 * reported, so a limit holds whether or not the size was announced. Used by both GET paths.
 */
export function readCapped(stream: Readable, maxBytes: number | undefined): Promise<{ body: Buffer } | { overLimit: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let received = 0;
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (maxBytes !== undefined && received > maxBytes) {
        stream.off('data', onData);
        stream.off('error', reject);
        stream.on('error', () => undefined); // the destroy below may surface as an error later
        stream.destroy();
        resolve({ overLimit: received });
        return;
      }
      chunks.push(chunk);
    };
    stream.on('data', onData);
    stream.on('error', reject);
    stream.on('end', () => resolve({ body: Buffer.concat(chunks) }));
  });
}

/** Bytes of a response above `maxBytes`, announced (Content-Length) or counted (`overLimit`); undefined within it. */
function tooLargeOf(res: Response, maxBytes: number | undefined): { size: number; announced: boolean } | undefined {
  if (res.overLimit !== undefined) return { size: res.overLimit, announced: false };
  const length = Number(res.headers['content-length']);
  return maxBytes !== undefined && length > maxBytes ? { size: length, announced: true } : undefined;
}

/** S3's XML error (`<Code>`, `<Message>`); a body-less answer (HEAD) is named after its status. */
function errorOf(res: Response): S3ResponseError {
  const xml = res.body.toString('utf8');
  const code = /<Code>([^<]*)<\/Code>/.exec(xml)?.[1] ?? (http.STATUS_CODES[res.status] ?? 'Unknown').replace(/[^A-Za-z]/g, '');
  const message = /<Message>([^<]*)<\/Message>/.exec(xml)?.[1] ?? `HTTP ${res.status}`;
  return new S3ResponseError(code, message, res.status);
}

function etagOf(headers: http.IncomingHttpHeaders): string {
  return (headers.etag ?? '').replace(/^"|"$/g, '');
}

/** User metadata (`x-amz-meta-*`), keys without the prefix, as the SDK returns it. */
function metadataOf(headers: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith('x-amz-meta-') && typeof value === 'string') out[name.slice('x-amz-meta-'.length)] = value;
  }
  return out;
}
