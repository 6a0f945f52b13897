/**
 * The dashboard HTTP server: Fastify with, in order, the access gate, security headers, the JSON
 * API, the live event stream, bull-board under /queues and the static front end. `createDashboard`
 * builds it without listening, so tests use the same instance the CLI serves.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { AuditError } from '../shared/errors.js';
import { validateRunId } from '../shared/queue/contract.js';
import { installApi } from './api.js';
import { createAuthGate, FailureLimiter, installAuth, SESSION_COOKIE } from './auth.js';
import { BULL_BOARD_BASE, mountBullBoard } from './bull-board.js';
import type { DashboardDeps } from './deps.js';
import { AnalyticsCache, ImageQueryCache } from './gallery.js';
import { installLiveStream } from './live.js';
import type { DashboardOptions } from './options.js';
import { listRunViews, toRunView } from './run-view.js';
import { installSecurityHeaders } from './security-headers.js';
import { installStaticFiles, loadStaticFiles } from './static-files.js';
import { Thumbnailer } from './thumbnails.js';

const STATUS_BY_CODE: Record<string, number> = { CONFIG: 400, NOT_FOUND: 404, ACCESS_DENIED: 403, TRANSIENT: 503 };

export async function createDashboard(deps: DashboardDeps, options: DashboardOptions): Promise<FastifyInstance> {
  // Fastify's own request logging would print URLs with image keys on every thumbnail; the
  // dashboard logs what matters (start, retries, errors) through the injected logger instead.
  const app = Fastify({ logger: false, trustProxy: false, bodyLimit: 256 * 1024 });
  const gate = createAuthGate(options.auth, options.sessionTtlSeconds);
  const analytics = new AnalyticsCache();
  const thumbnails = new Thumbnailer(deps.store, {
    size: options.thumbnailSize,
    cacheEntries: options.thumbnailCacheEntries,
    cacheBytes: options.thumbnailCacheBytes,
    maxSourceBytes: options.maxThumbnailSourceBytes,
  });
  const now = deps.now ?? Date.now;

  app.setErrorHandler((err, request, reply) => {
    if (err instanceof AuditError) {
      const status = STATUS_BY_CODE[err.code] ?? 400;
      return reply.code(status).send({ error: err.code, message: err.message });
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

  // The login form posts urlencoded fields; parse them without another dependency.
  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(String(body))));
  });

  const limiter = new FailureLimiter();
  installAuth(app, gate, limiter);
  installSecurityHeaders(app, BULL_BOARD_BASE);

  app.post<{ Body: Record<string, string> | undefined; Querystring: { next?: string } }>('/login', async (req, reply) => {
    const cookie = gate.login(req.body ?? {});
    if (!cookie) {
      limiter.fail(req.ip);
      return reply.redirect('/login?failed=1', 303);
    }
    const secure = req.protocol === 'https' ? '; Secure' : '';
    void reply.header('Set-Cookie', `${SESSION_COOKIE}=${cookie}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${gate.sessionTtlSeconds}${secure}`);
    // Only same-site relative targets: an open redirect would make the login form a phishing aid.
    const next = typeof req.body?.next === 'string' && /^\/(?!\/)[^\\]*$/.test(req.body.next) ? req.body.next : '/';
    return reply.redirect(next, 303);
  });
  app.post('/logout', async (_req, reply) => {
    void reply.header('Set-Cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return reply.redirect('/login', 303);
  });

  installApi(app, { deps, options, analytics, images: new ImageQueryCache(), thumbnails });
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
          if (run) {
            const throughput = await deps.runs.throughput(run.id);
            events.push({ event: 'run', data: { run: toRunView(run, throughput, t), throughput, analytics: await analytics.get(deps.runs, run) } });
          }
        }
        return events;
      },
    },
    options.liveIntervalMs,
  );
  await mountBullBoard(app, [deps.queue]);
  installStaticFiles(app, loadStaticFiles());
  return app;
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
