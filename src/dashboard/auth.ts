/**
 * Access control for every route (pages, API, server-sent events, bull-board): one `onRequest` hook.
 *
 * Accepted proofs, checked with timing-safe comparisons:
 *   - `Authorization: Bearer <token>` (token mode) or `Authorization: Basic …` (basic mode), for
 *     scripts and for browsers that answer the basic-auth prompt;
 *   - the `gca_session` cookie set by the login form, because EventSource and <img> cannot send
 *     headers. The cookie carries an expiry and an HMAC under a key that is random per process, so
 *     it never contains the secret and a restart logs everybody out.
 * Secrets never reach a log line: the logger redacts `authorization`, and this module logs nothing.
 */
import { createHmac, randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { DashboardAuth } from './options.js';

export const SESSION_COOKIE = 'gca_session';

/** Paths reachable without credentials: the login form, its stylesheet and script, and the liveness probe. */
const PUBLIC_PATHS = new Set(['/login', '/static/style.css', '/static/login.js', '/healthz']);

export interface AuthGate {
  /** True when the request carries valid credentials (always true when auth is off). */
  check(request: FastifyRequest): boolean;
  /** Verify what the login form posted; returns a cookie value on success. */
  login(fields: { token?: string; user?: string; password?: string }): string | null;
  readonly sessionTtlSeconds: number;
  readonly mode: DashboardAuth['kind'];
}

export function createAuthGate(auth: DashboardAuth, sessionTtlSeconds: number, now: () => number = Date.now): AuthGate {
  const sessionKey = randomBytes(32);
  const sign = (expiry: string): string => createHmac('sha256', sessionKey).update(expiry).digest('base64url');

  const validSession = (cookie: string | undefined): boolean => {
    if (!cookie) return false;
    const dot = cookie.indexOf('.');
    if (dot <= 0) return false;
    const expiry = cookie.slice(0, dot);
    if (!/^\d{1,15}$/.test(expiry) || Number(expiry) < now()) return false;
    return safeEqual(cookie.slice(dot + 1), sign(expiry));
  };

  const validHeader = (header: string | undefined): boolean => {
    if (!header) return false;
    const space = header.indexOf(' ');
    if (space < 0) return false;
    const scheme = header.slice(0, space).toLowerCase();
    const value = header.slice(space + 1).trim();
    if (auth.kind === 'token' && scheme === 'bearer') return safeEqual(value, auth.token);
    if (auth.kind === 'basic' && scheme === 'basic') {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon < 0) return false;
      // Evaluate both comparisons so timing does not reveal which half was wrong.
      const userOk = safeEqual(decoded.slice(0, colon), auth.user);
      const passOk = safeEqual(decoded.slice(colon + 1), auth.password);
      return userOk && passOk;
    }
    return false;
  };

  return {
    mode: auth.kind,
    sessionTtlSeconds,
    check(request) {
      if (auth.kind === 'none') return true;
      return validHeader(request.headers.authorization) || validSession(readCookie(request.headers.cookie, SESSION_COOKIE));
    },
    login(fields) {
      let ok = false;
      if (auth.kind === 'none') ok = true;
      else if (auth.kind === 'token') ok = safeEqual(fields.token ?? '', auth.token);
      else {
        const userOk = safeEqual(fields.user ?? '', auth.user);
        const passOk = safeEqual(fields.password ?? '', auth.password);
        ok = userOk && passOk;
      }
      if (!ok) return null;
      const expiry = String(now() + sessionTtlSeconds * 1000);
      return `${expiry}.${sign(expiry)}`;
    },
  };
}

/**
 * Constant-time string comparison. Hashing both sides first gives equal-length inputs, so neither
 * the content nor the length of the secret leaks through timing.
 */
export function safeEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

export function readCookie(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/**
 * Failed authentications per client address in a fixed one-minute window. Past the limit every
 * request from that address is refused with 429 until the window ends, which turns guessing a
 * password over the network from thousands of tries a second into twenty a minute.
 */
export class FailureLimiter {
  private readonly windows = new Map<string, { start: number; failures: number }>();

  constructor(
    private readonly maxFailures = 20,
    private readonly windowMs = 60_000,
    private readonly now: () => number = Date.now,
  ) {}

  blocked(client: string): boolean {
    const w = this.windows.get(client);
    if (!w) return false;
    if (this.now() - w.start >= this.windowMs) {
      this.windows.delete(client);
      return false;
    }
    return w.failures >= this.maxFailures;
  }

  fail(client: string): void {
    const t = this.now();
    const w = this.windows.get(client);
    if (!w || t - w.start >= this.windowMs) {
      // Bounded memory under a spray of addresses: old windows are worthless, drop them all.
      if (this.windows.size >= 10_000) this.windows.clear();
      this.windows.set(client, { start: t, failures: 1 });
    } else {
      w.failures += 1;
    }
  }
}

/** Install the gate in front of every route. Pages redirect to the login form; the API answers 401. */
export function installAuth(app: FastifyInstance, gate: AuthGate, limiter: FailureLimiter): void {
  if (gate.mode === 'none') return;
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '';
    const client = request.ip;
    if (limiter.blocked(client)) {
      return reply.code(429).header('Retry-After', '60').send({ error: 'TOO_MANY_ATTEMPTS', message: 'too many failed sign-in attempts from this address; wait a minute' });
    }
    // The login form is public; its handler reports failed submissions to the same limiter.
    if (PUBLIC_PATHS.has(path)) return;
    const presented = request.headers.authorization !== undefined || readCookie(request.headers.cookie, SESSION_COOKIE) !== undefined;
    if (gate.check(request)) return;
    // Only wrong credentials count; a browser's first, credential-less request is not an attack.
    if (presented) limiter.fail(client);
    if (gate.mode === 'basic') void reply.header('WWW-Authenticate', 'Basic realm="gradcam-audit", charset="UTF-8"');
    const wantsHtml = request.method === 'GET' && (request.headers.accept ?? '').includes('text/html') && !path.startsWith('/api/');
    if (wantsHtml && gate.mode === 'token') return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 303);
    return reply.code(401).send({ error: 'UNAUTHORIZED', message: authHint(gate.mode) });
  });
}

export function authHint(mode: DashboardAuth['kind']): string {
  return mode === 'token'
    ? 'this dashboard requires a token: send "Authorization: Bearer <DASHBOARD_TOKEN>" or sign in at /login'
    : 'this dashboard requires credentials: send HTTP basic auth (DASHBOARD_USER / DASHBOARD_PASSWORD) or sign in at /login';
}
