/**
 * The dashboard HTTP server: Fastify with, in order, the request guard (Host names, cross-site
 * actions, JSON-only bodies), the access gate, security headers, the JSON API, the live event
 * stream, bull-board under /queues and the static front end. `createDashboard` builds it without
 * listening, so tests use the same instance the CLI serves.
 */
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';
import { AuditError } from '../shared/errors.js';
import { DECODE_TIMEOUT_SECONDS } from '../shared/image-types.js';
import { validateRunId } from '../shared/queue/contract.js';
import { QueueShards } from '../shared/queue/shards.js';
import { installApi } from './api.js';
import { createAuthGate, installAuth, SESSION_COOKIE, sessionCookie } from './auth.js';
import { BULL_BOARD_BASE, mountBullBoard } from './bull-board.js';
import { RunComparisons } from './comparisons.js';
import type { DashboardDeps } from './deps.js';
import { FailureThrottle, SignInBusyError } from './failure-throttle.js';
import { AnalyticsCache, ImageQueryCache } from './gallery.js';
import { hostPolicyFor } from './host-policy.js';
import { installLiveStream } from './live.js';
import type { DashboardOptions } from './options.js';
import { installRequestGuard } from './request-guard.js';
import { listRunViews, runDetail } from './run-view.js';
import { sameOriginPath } from './same-origin-path.js';
import { installSchemaSupport, object, str, validationAnswer } from './schemas.js';
import { installSecurityHeaders } from './security-headers.js';
import { installStaticFiles, loadStaticFiles } from './static-files.js';
import { Thumbnailer } from './thumbnails.js';

/** How long requests in flight may take to finish when the dashboard closes. */
const CLOSE_GRACE_MS = 1000;

const STATUS_BY_CODE: Record<string, number> = { CONFIG: 400, NOT_FOUND: 404, ACCESS_DENIED: 403, TRANSIENT: 503 };

export async function createDashboard(deps: DashboardDeps, options: DashboardOptions): Promise<FastifyInstance> {
  // Fastify's own request logging would print URLs with image keys on every thumbnail; the
  // dashboard logs what matters (start, retries, errors) through the injected logger instead.
  const trusted = options.trustProxy;
  // A hop count trusts that many proxies nearest to us, whatever their addresses.
  const trustProxy = typeof trusted === 'number' ? (_address: string, hop: number) => hop < trusted : trusted;
  const app = Fastify({ logger: false, trustProxy, bodyLimit: options.bodyLimitBytes, http: requestTimeouts(options.requestTimeoutMs), requestTimeout: options.requestTimeoutMs });
  app.server.maxConnections = options.maxConnections;
  // JSON bodies only, app-wide: Fastify's default text/plain parser would hand a handler what a
  // cross-site form can send. The login form's urlencoded parser lives in its own scope below.
  app.removeContentTypeParser('text/plain');
  const gate = createAuthGate(options.auth, options.sessionTtlSeconds);
  const analytics = new AnalyticsCache(options);
  const thumbnails = new Thumbnailer(deps.store, {
    size: options.thumbnailSize,
    cacheEntries: options.thumbnailCacheEntries,
    cacheBytes: options.thumbnailCacheBytes,
    maxSourceBytes: options.maxThumbnailSourceBytes,
    concurrency: options.thumbnailConcurrency,
    decodeTimeoutSeconds: DECODE_TIMEOUT_SECONDS,
  });
  const now = deps.now ?? Date.now;

  app.setErrorHandler((err, request, reply) => {
    const invalid = validationAnswer(err as FastifyError, request);
    if (invalid) return reply.code(400).send(invalid);
    if (err instanceof AuditError) {
      const status = STATUS_BY_CODE[err.code] ?? 400;
      return reply.code(status).send({ error: err.code, message: err.message });
    }
    if (err instanceof SignInBusyError) {
      void reply.header('Retry-After', String(Math.ceil(err.retryAfterMs / 1000)));
      return reply.code(429).send({ error: 'BUSY', message: err.message });
    }
    if (isRedisUnavailable(err)) {
      return reply.code(503).send({ error: 'TRANSIENT', message: 'Redis is unavailable; the dashboard reconnects by itself (check REDIS_URL and the Redis server)' });
    }
    const status = (err as { statusCode?: number }).statusCode;
    if (status && status >= 400 && status < 500) return reply.code(status).send({ error: 'BAD_REQUEST', message: (err as Error).message });
    deps.logger.error({ err, method: request.method, path: request.url.split('?')[0] }, 'dashboard request failed');
    return reply.code(500).send({ error: 'INTERNAL', message: 'internal error; see the dashboard log' });
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send({ error: 'NOT_FOUND', message: `no route ${request.method} ${request.url.split('?')[0]}` }));

  app.addHook('onResponse', async (request, reply) => {
    if (reply.elapsedTime > options.slowRequestMs) {
      deps.logger.warn({ method: request.method, path: request.url.split('?')[0], status: reply.statusCode, ms: Math.round(reply.elapsedTime) }, 'slow dashboard request');
    }
  });
  installRequestGuard(app, { hosts: hostPolicyFor(options.host, options.allowedHosts), extraOrigins: options.allowedHosts, logger: deps.logger });
  const throttle = new FailureThrottle(options.throttle);
  installAuth(app, gate, throttle);
  installSecurityHeaders(app, BULL_BOARD_BASE);
  installSchemaSupport(app);

  await app.register(async (login) => {
    // The login form posts urlencoded fields, the one non-JSON body the dashboard takes; parse
    // them (without another dependency) in this scope only.
    login.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))));
    });
    type LoginFields = { token?: string; user?: string; password?: string; next?: string };
    const fields = object({ token: str(4096, 0), user: str(1024, 0), password: str(4096, 0), next: str(2048, 0) });
    // Anyone may post here before signing in: the body it buffers is kept small.
    login.post<{ Body: LoginFields | undefined }>('/login', { bodyLimit: options.loginBodyLimitBytes, schema: { body: fields, querystring: object({ next: str(2048) }) } }, async (req, reply) => {
      // Same wait for right and wrong credentials, so the answer's timing tells a guesser nothing.
      const body = req.body ?? {};
      if (!(await throttle.attempt(req.ip, () => gate.login(body) !== null))) {
        return reply.redirect('/login?failed=1', 303);
      }
      void reply.header('Set-Cookie', sessionCookie(gate, req));
      // Only a path on this origin, after parsing it as a browser would: an open redirect would
      // make the login form a phishing aid. The guard has checked the Host this origin is built from.
      return reply.redirect(sameOriginPath(body.next, `${req.protocol}://${req.host}`), 303);
    });
  });
  app.post('/logout', { schema: { querystring: object({}) } }, async (req, reply) => {
    // Clearing the cookie alone would leave any copy of it valid until it expires.
    gate.revoke(req);
    void reply.header('Set-Cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return reply.redirect('/login', 303);
  });

  installApi(app, { deps, options, analytics, images: new ImageQueryCache(options), thumbnails, comparisons: new RunComparisons(deps.store) });
  // Every open stream ticks once per interval; they share one overview snapshot per half interval,
  // so ten open tabs cost Redis what one does.
  const overview = sharedFor(options.liveIntervalMs / 2, () => listRunViews(deps.runs, 100, now()));
  installLiveStream(
    app,
    {
      async snapshot(runId) {
        const t = now();
        const events: Array<{ event: string; data: unknown }> = [{ event: 'runs', data: { runs: await overview() } }];
        if (runId !== undefined && isValidRunId(runId)) {
          const run = await deps.runs.getRun(runId);
          if (run) events.push({ event: 'run', data: runDetail(run, await deps.runs.throughput(run.id), await analytics.get(deps.runs, run), t) });
        }
        return events;
      },
    },
    { intervalMs: options.liveIntervalMs, maxStreams: options.maxLiveStreams },
  );
  // Browsers keep spare connections open (keep-alive, preconnects); close() would wait for them
  // until Node's request timeout, a minute later. In-flight requests get a short grace instead.
  let forceClose: NodeJS.Timeout | undefined;
  app.addHook('preClose', async () => {
    forceClose = setTimeout(() => app.server.closeAllConnections(), CLOSE_GRACE_MS);
    forceClose.unref();
  });
  app.addHook('onClose', async () => clearTimeout(forceClose));
  await mountBullBoard(app, deps.queue instanceof QueueShards ? [...deps.queue.queues] : [deps.queue], { readOnly: !options.queueAdmin });
  installStaticFiles(app, loadStaticFiles());
  return app;
}

/**
 * Node's timeouts for receiving a request. Headers must come within the request timeout (Node
 * refuses a longer headers timeout), and Node checks both only every `connectionsCheckingInterval`
 * (30 s by default), so the check runs at a quarter of the timeout: a stalled request is cut off
 * within 1.25 times the timeout rather than up to twice it.
 */
function requestTimeouts(requestTimeoutMs: number): { requestTimeout: number; headersTimeout: number; connectionsCheckingInterval: number } {
  return { requestTimeout: requestTimeoutMs, headersTimeout: Math.min(60_000, requestTimeoutMs), connectionsCheckingInterval: Math.max(10, Math.min(30_000, Math.round(requestTimeoutMs / 4))) };
}

/** Memoize an async producer for `ttlMs`; concurrent callers share the pending promise. */
function sharedFor<T>(ttlMs: number, produce: () => Promise<T>): () => Promise<T> {
  let cached: { at: number; value: Promise<T> } | undefined;
  return () => {
    const t = Date.now();
    if (cached && t - cached.at < ttlMs) return cached.value;
    const value = produce();
    cached = { at: t, value };
    value.catch(() => {
      if (cached?.value === value) cached = undefined;
    });
    return value;
  };
}

function isValidRunId(runId: string): boolean {
  try {
    validateRunId(runId);
    return true;
  } catch {
    return false;
  }
}

/** ioredis's failures when the server is down or the connection is lost (not command errors). */
function isRedisUnavailable(err: unknown): boolean {
  const e = err as { name?: string; message?: string; code?: string };
  if (e?.name === 'MaxRetriesPerRequestError') return true;
  if (e?.code === 'ECONNREFUSED' || e?.code === 'ECONNRESET') return true;
  const m = e?.message ?? '';
  return m.includes("Stream isn't writeable") || m.includes('Connection is closed');
}
