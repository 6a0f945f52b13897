/**
 * Dashboard options: defaults in one place, validated once at start-up. The one rule that matters
 * most lives here: a dashboard reachable from other machines must have credentials, because it can
 * retry jobs and serves every image of every audited bucket.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../shared/errors.js';
import { parseIntInRange, type Env } from '../shared/config.js';
import { MAX_SOURCE_BYTES } from '../shared/image-types.js';
import { PART_READ_DEFAULTS, type PartReads } from '../shared/queue/part-cache.js';
import { THROTTLE_DEFAULTS, type ThrottleOptions } from './failure-throttle.js';
import { isLoopback, parseAllowedHost, type AllowedHost } from './host-policy.js';

/** How requests prove who they are. `none` is only allowed on loopback addresses. */
export type DashboardAuth =
  | { kind: 'none' }
  | { kind: 'token'; token: string }
  | { kind: 'basic'; user: string; password: string };

export interface DashboardOptions {
  /** TCP port (`--port`). Default 3000; 0 picks a free port (tests). */
  port: number;
  /** Bind address (`--host`). Default `127.0.0.1`. */
  host: string;
  auth: DashboardAuth;
  /** Interval of the live server-sent events stream in ms. Default 1000 (the UI must update within 2 s). */
  liveIntervalMs: number;
  /**
   * Live event streams open at once (one per open page); more are answered 503. Each costs a
   * connection, a snapshot per interval and, for a client that stopped reading, up to one tick
   * beyond Node's socket buffer (live.ts). Default 200.
   */
  maxLiveStreams: number;
  /** Longer side of gallery thumbnails in pixels. Default 256. */
  thumbnailSize: number;
  /** Thumbnails kept in memory (LRU). Default 512 entries. */
  thumbnailCacheEntries: number;
  /** Byte budget of the thumbnail cache. Default 32 MiB. */
  thumbnailCacheBytes: number;
  /** Largest object read into memory for a thumbnail. Default `MAX_SOURCE_BYTES` (100 MiB), the worker's own limit. */
  maxThumbnailSourceBytes: number;
  /** Thumbnails decoded at once (each holds its source in memory). Default 2. */
  thumbnailConcurrency: number;
  /** Page size cap of list endpoints. Default 200. */
  maxPageSize: number;
  /**
   * Estimated heap for parsed result part files, which a live run's pages re-read on every poll,
   * and for the blocks of finished runs' manifests that per-image requests looked up
   * (shared/queue/part-cache.ts). Default 64 MiB: about 16 MiB of part files, some 50,000 lines.
   * The manifests' indexes are kept apart (under 1 MiB per 1M images, 256 runs).
   */
  partCacheBytes: number;
  /**
   * How part files are read: each GET (or LIST) attempt is aborted after `attemptTimeoutMs` and
   * sent again, up to `attempts`; `concurrency` GETs at once. Default `PART_READ_DEFAULTS`.
   */
  partReads: PartReads;
  /**
   * Longest a request waits for part files still being read before it answers without them (the
   * run's counters come from Redis either way; the late parts show on a later request).
   * Default 1000: a live page polls every second, and a part GET took up to 44 s on a busy S3 server.
   */
  partWaitMs: number;
  /**
   * Requests that take longer than this many ms are logged (warn: method, path, status, ms), so an
   * unanswered page can be traced to its route afterwards. Default 5000.
   */
  slowRequestMs: number;
  /** Lifetime of a login cookie in seconds. Default 12 h. */
  sessionTtlSeconds: number;
  /**
   * Host names answered besides the bound ones (`--allowed-host`, `DASHBOARD_ALLOWED_HOSTS`): the
   * public name behind a reverse proxy, a Kubernetes Service name. Default none.
   */
  allowedHosts: AllowedHost[];
  /**
   * Which peers may set `X-Forwarded-For/-Proto/-Host` (`--trust-proxy`, `DASHBOARD_TRUST_PROXY`):
   * Fastify's `trustProxy`, as a list of proxy addresses/CIDRs (or `loopback`, `linklocal`,
   * `uniquelocal`) or a hop count. Default `false`: the socket's peer is the client. It decides the
   * address failed sign-ins are counted against, and the origin that actions are compared with.
   */
  trustProxy: false | number | string[];
  /**
   * bull-board's job adding, editing, retrying, cleaning and queue pause/obliterate
   * (`--queue-admin`, `DASHBOARD_QUEUE_ADMIN=true`). Default false: bull-board is read-only; the
   * dashboard's own retry of failed images stays available.
   */
  queueAdmin: boolean;
  /** Slow-down of failed sign-ins per client address (see failure-throttle.ts). */
  throttle: ThrottleOptions;
  /**
   * Longest a client may take to send one whole request, headers and body, in ms (Node's
   * `requestTimeout`): a client that trickles a body is cut off instead of holding a connection
   * and its buffer forever. It covers receiving the request only, so the live event stream's
   * response runs on. Default 30 s.
   */
  requestTimeoutMs: number;
  /** Connections open at once; the server refuses more (Node's `maxConnections`). Default 1000. */
  maxConnections: number;
  /** Largest request body in bytes (JSON actions). Default 256 KiB. */
  bodyLimitBytes: number;
  /**
   * Largest body of the public sign-in form in bytes: it holds a token or a user and password
   * (at most 4 + 1 + 4 + 2 KiB of fields). Default 16 KiB.
   */
  loginBodyLimitBytes: number;
}

export const DASHBOARD_DEFAULTS: Readonly<Omit<DashboardOptions, 'auth'>> = Object.freeze({
  port: 3000,
  host: '127.0.0.1',
  liveIntervalMs: 1000,
  maxLiveStreams: 200,
  thumbnailSize: 256,
  thumbnailCacheEntries: 512,
  thumbnailCacheBytes: 32 * 1024 * 1024,
  maxThumbnailSourceBytes: MAX_SOURCE_BYTES,
  thumbnailConcurrency: 2,
  maxPageSize: 200,
  partCacheBytes: 64 * 1024 * 1024,
  partReads: PART_READ_DEFAULTS,
  partWaitMs: 1000,
  slowRequestMs: 5000,
  sessionTtlSeconds: 12 * 3600,
  allowedHosts: [],
  trustProxy: false,
  queueAdmin: false,
  throttle: THROTTLE_DEFAULTS,
  requestTimeoutMs: 30_000,
  maxConnections: 1000,
  bodyLimitBytes: 256 * 1024,
  loginBodyLimitBytes: 16 * 1024,
});

export interface DashboardFlags {
  port?: string;
  host?: string;
  token?: string;
  /** Repeatable `--allowed-host`; each value may also be a comma-separated list. */
  allowedHost?: string[];
  trustProxy?: string;
  queueAdmin?: boolean;
}

/** Build options from flags and the environment (`DASHBOARD_TOKEN`, `DASHBOARD_USER`, `DASHBOARD_PASSWORD`). */
export function resolveDashboardOptions(flags: DashboardFlags, env: Env = process.env, overrides: Partial<DashboardOptions> = {}): DashboardOptions {
  const port = flags.port === undefined ? DASHBOARD_DEFAULTS.port : parseIntInRange('--port', flags.port, 0, 65535);
  const host = (flags.host ?? DASHBOARD_DEFAULTS.host).trim();
  if (host === '') throw new ConfigError('--host', 'expected an address such as 127.0.0.1 or 0.0.0.0, got an empty value');
  const allowedHosts = [...(flags.allowedHost ?? []), env.DASHBOARD_ALLOWED_HOSTS ?? '']
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v !== '')
    .map(parseAllowedHost);
  const trustProxy = parseTrustProxy(flags.trustProxy ?? env.DASHBOARD_TRUST_PROXY, flags.trustProxy !== undefined ? '--trust-proxy' : 'DASHBOARD_TRUST_PROXY');
  const queueAdmin = flags.queueAdmin === true || parseSwitch('DASHBOARD_QUEUE_ADMIN', env.DASHBOARD_QUEUE_ADMIN);
  const options: DashboardOptions = { ...DASHBOARD_DEFAULTS, port, host, auth: resolveAuth(flags, env), allowedHosts, trustProxy, queueAdmin, ...overrides };
  assertSafeBinding(options);
  return options;
}

function resolveAuth(flags: DashboardFlags, env: Env): DashboardAuth {
  const token = nonEmpty(flags.token) ?? nonEmpty(env.DASHBOARD_TOKEN);
  const user = nonEmpty(env.DASHBOARD_USER);
  const password = nonEmpty(env.DASHBOARD_PASSWORD);
  if ((user === undefined) !== (password === undefined)) {
    const missing = user === undefined ? 'DASHBOARD_USER' : 'DASHBOARD_PASSWORD';
    throw new ConfigError(missing, 'basic auth needs both DASHBOARD_USER and DASHBOARD_PASSWORD; set the missing one or unset both');
  }
  if (token !== undefined && user !== undefined) {
    throw new ConfigError('DASHBOARD_TOKEN', 'set either a token (DASHBOARD_TOKEN / --token) or DASHBOARD_USER + DASHBOARD_PASSWORD, not both');
  }
  if (token !== undefined) {
    // A short token can be guessed over the network; refuse it rather than pretend it protects anything.
    if (token.length < 16) throw new ConfigError(flags.token !== undefined ? '--token' : 'DASHBOARD_TOKEN', `expected at least 16 characters, got ${token.length}`);
    return { kind: 'token', token };
  }
  if (user !== undefined && password !== undefined) {
    if (user.includes(':')) throw new ConfigError('DASHBOARD_USER', 'must not contain ":" (it separates user and password in basic auth)');
    if (password.length < 8) throw new ConfigError('DASHBOARD_PASSWORD', `expected at least 8 characters, got ${password.length}`);
    return { kind: 'basic', user, password };
  }
  return { kind: 'none' };
}

/** Refuse to expose an unauthenticated dashboard beyond this machine. */
export function assertSafeBinding(options: Pick<DashboardOptions, 'host' | 'auth'>): void {
  if (options.auth.kind !== 'none' || isLoopback(options.host)) return;
  throw new ConfigError(
    '--host',
    `refusing to serve the dashboard on non-loopback address "${options.host}" without credentials; ` +
      'set DASHBOARD_TOKEN (or --token, at least 16 characters) or DASHBOARD_USER + DASHBOARD_PASSWORD, or bind to 127.0.0.1',
  );
}

/**
 * `--trust-proxy`: which peers' `X-Forwarded-*` headers to believe. Trusting every peer (`true`)
 * is refused: then any client could name its own address and slip past the sign-in throttle.
 */
export function parseTrustProxy(value: string | undefined, what = '--trust-proxy'): false | number | string[] {
  const v = value?.trim() ?? '';
  if (v === '' || v === 'false') return false;
  if (/^\d+$/.test(v)) return parseIntInRange(what, v, 1, 10);
  if (v === 'true' || v === '*') {
    throw new ConfigError(what, 'trusting every peer would let any client choose its own address; name the proxy addresses (e.g. 10.0.0.0/8,loopback) or a hop count (1)');
  }
  const entries = v.split(',').map((e) => e.trim());
  for (const e of entries) {
    const [address, bits, extra] = e.split('/');
    const named = ['loopback', 'linklocal', 'uniquelocal'].includes(e);
    const family = isIP(address ?? '');
    const maskOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 6 ? 128 : 32));
    if (!named && (family === 0 || !maskOk || extra !== undefined)) {
      throw new ConfigError(what, `expected proxy addresses or CIDRs (10.0.0.0/8, ::1), loopback, linklocal, uniquelocal, or a hop count; got "${e}"`);
    }
  }
  return entries;
}

function parseSwitch(name: string, value: string | undefined): boolean {
  const v = value?.trim().toLowerCase() ?? '';
  if (v === '' || v === 'false' || v === '0') return false;
  if (v === 'true' || v === '1') return true;
  throw new ConfigError(name, `expected true or false, got "${value}"`);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
