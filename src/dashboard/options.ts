/**
 * Dashboard options: defaults in one place, validated once at start-up. The one rule that matters
 * most lives here: a dashboard reachable from other machines must have credentials, because it can
 * retry jobs and serves every image of every audited bucket.
 */
import { isIP } from 'node:net';
import { ConfigError } from '../shared/errors.js';
import { parseIntInRange, type Env } from '../shared/config.js';

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
  /** Longer side of gallery thumbnails in pixels. Default 256. */
  thumbnailSize: number;
  /** Thumbnails kept in memory (LRU). Default 512 entries. */
  thumbnailCacheEntries: number;
  /** Byte budget of the thumbnail cache. Default 32 MiB. */
  thumbnailCacheBytes: number;
  /** Largest object the image proxy reads into memory for a thumbnail. Default 32 MiB. */
  maxThumbnailSourceBytes: number;
  /** Page size cap of list endpoints. Default 200. */
  maxPageSize: number;
  /** Lifetime of a login cookie in seconds. Default 12 h. */
  sessionTtlSeconds: number;
}

export const DASHBOARD_DEFAULTS: Readonly<Omit<DashboardOptions, 'auth'>> = Object.freeze({
  port: 3000,
  host: '127.0.0.1',
  liveIntervalMs: 1000,
  thumbnailSize: 256,
  thumbnailCacheEntries: 512,
  thumbnailCacheBytes: 32 * 1024 * 1024,
  maxThumbnailSourceBytes: 32 * 1024 * 1024,
  maxPageSize: 200,
  sessionTtlSeconds: 12 * 3600,
});

export interface DashboardFlags {
  port?: string;
  host?: string;
  token?: string;
}

/** Build options from flags and the environment (`DASHBOARD_TOKEN`, `DASHBOARD_USER`, `DASHBOARD_PASSWORD`). */
export function resolveDashboardOptions(flags: DashboardFlags, env: Env = process.env, overrides: Partial<DashboardOptions> = {}): DashboardOptions {
  const port = flags.port === undefined ? DASHBOARD_DEFAULTS.port : parseIntInRange('--port', flags.port, 0, 65535);
  const host = (flags.host ?? DASHBOARD_DEFAULTS.host).trim();
  if (host === '') throw new ConfigError('--host', 'expected an address such as 127.0.0.1 or 0.0.0.0, got an empty value');
  const options: DashboardOptions = { ...DASHBOARD_DEFAULTS, port, host, auth: resolveAuth(flags, env), ...overrides };
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

export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) return h === '::1' || h === '0:0:0:0:0:0:0:1' || /^::ffff:127\./.test(h);
  return false;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}
