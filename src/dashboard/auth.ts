/**
 * Access control for every route (pages, API, server-sent events, bull-board): one `onRequest` hook.
 *
 * Accepted proofs, checked with timing-safe comparisons:
 *   - `Authorization: Bearer <token>` (token mode) or `Authorization: Basic …` (basic mode), for
 *     scripts and for browsers that answer the basic-auth prompt;
 *   - the `gca_session` cookie set by the login form, because EventSource and <img> cannot send
 *     headers. The cookie carries an expiry, a random session id and an HMAC under a key that is
 *     random per process, so it never contains the secret and a restart logs everybody out.
 *     Sign-out revokes the cookie in this process (see `revoke`), so a copy of it stops working too.
 * Secrets never reach a log line: the logger redacts `authorization`, and this module logs nothing.
 */
import { createHmac, randomBytes, timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { FailureThrottle } from './failure-throttle.js';
import type { DashboardAuth } from './options.js';

export const SESSION_COOKIE = 'gca_session';

/**
 * Signed-out sessions remembered at once until they would have expired anyway. Past it the session
 * key is replaced, which ends every session: forgetting a revocation would revive a signed-out
 * cookie, so the bound errs towards signing people out. Only signed-in users can add entries.
 */
const MAX_REVOKED_SESSIONS = 10_000;

/** Paths reachable without credentials: the login form, its stylesheet and script, and the liveness probe. */
const PUBLIC_PATHS = new Set(['/login', '/static/style.css', '/static/login.js', '/healthz']);

export interface AuthGate {
  /** True when the request carries valid credentials (always true when auth is off). */
  check(request: FastifyRequest): boolean;
  /** True when the request carries a valid session cookie (unforgeable, so never throttled). */
  hasSession(request: FastifyRequest): boolean;
  /** Verify what the login form posted; returns a cookie value on success. */
  login(fields: { token?: string; user?: string; password?: string }): string | null;
  /** A new session cookie value (expiry + id + HMAC). */
  issueSession(): string;
  /** End the session whose cookie `request` carries, for this and every copy of the cookie. */
  revoke(request: FastifyRequest): void;
  readonly sessionTtlSeconds: number;
  readonly mode: DashboardAuth['kind'];
}

export function createAuthGate(auth: DashboardAuth, sessionTtlSeconds: number, now: () => number = Date.now): AuthGate {
  let sessionKey = randomBytes(32);
  const sign = (payload: string): string => createHmac('sha256', sessionKey).update(payload).digest('base64url');
  /** Revoked session ids with the expiry after which their cookies fail anyway. */
  const revoked = new Map<string, number>();

  /** The cookie's session id and expiry when it is valid, else undefined. */
  const session = (cookie: string | undefined): { id: string; expiry: number } | undefined => {
    const m = /^(\d{1,15})\.([A-Za-z0-9_-]{22})\.([A-Za-z0-9_-]+)$/.exec(cookie ?? '');
    if (!m?.[1] || !m[2] || !m[3]) return undefined;
    const expiry = Number(m[1]);
    if (expiry < now() || !safeEqual(m[3], sign(`${m[1]}.${m[2]}`)) || revoked.has(m[2])) return undefined;
    return { id: m[2], expiry };
  };
  const validSession = (cookie: string | undefined): boolean => session(cookie) !== undefined;

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
    hasSession(request) {
      return auth.kind !== 'none' && validSession(readCookie(request.headers.cookie, SESSION_COOKIE));
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
      return ok ? this.issueSession() : null;
    },
    issueSession() {
      const payload = `${now() + sessionTtlSeconds * 1000}.${randomBytes(16).toString('base64url')}`;
      return `${payload}.${sign(payload)}`;
    },
    revoke(request) {
      const s = session(readCookie(request.headers.cookie, SESSION_COOKIE));
      if (!s) return;
      const t = now();
      for (const [id, expiry] of revoked) if (expiry < t) revoked.delete(id);
      if (revoked.size >= MAX_REVOKED_SESSIONS) {
        sessionKey = randomBytes(32);
        revoked.clear();
        return;
      }
      revoked.set(s.id, s.expiry);
    },
  };
}

/** The `Set-Cookie` value carrying a fresh session (`Secure` when the request came over https). */
export function sessionCookie(gate: AuthGate, request: FastifyRequest): string {
  const secure = request.protocol === 'https' ? '; Secure' : '';
  return `${SESSION_COOKIE}=${gate.issueSession()}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${gate.sessionTtlSeconds}${secure}`;
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
 * Install the gate in front of every route. Pages redirect to the login form; the API answers 401.
 * Credential attempts (an `Authorization` header) pass the failure throttle first; a valid session
 * cookie and a request without credentials do not (see failure-throttle.ts).
 */
export function installAuth(app: FastifyInstance, gate: AuthGate, throttle: FailureThrottle): void {
  if (gate.mode === 'none') return;
  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    const path = request.url.split('?')[0] ?? '';
    // The login form is public; its handler puts submissions through the same throttle.
    if (PUBLIC_PATHS.has(path)) return;
    if (gate.hasSession(request)) return;
    if (request.headers.authorization !== undefined) {
      if (await throttle.attempt(request.ip, () => gate.check(request))) {
        // Browsers resend basic credentials on every request; a session cookie lets the next ones
        // take the fast path instead of each paying the throttle of a crowded address.
        if (gate.mode === 'basic') void reply.header('Set-Cookie', sessionCookie(gate, request));
        return;
      }
    }
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
