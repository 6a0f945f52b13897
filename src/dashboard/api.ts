/**
 * The JSON API behind the pages (documented in README.md, "Dashboard API"). Handlers only parse
 * and validate the request, call the query modules and shape the answer; errors are named errors
 * mapped to HTTP statuses by the server's error handler.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Readable } from 'node:stream';
import { InvalidInputError, NotFoundError } from '../shared/errors.js';
import type { ImageManifest } from '../shared/manifest.js';
import { validateRunId } from '../shared/queue/contract.js';
import { listWorkers } from '../shared/queue/heartbeat.js';
import type { RunRecord } from '../shared/queue/run-store.js';
import { asFolderPrefix, joinKey, parseS3Uri } from '../shared/storage/uri.js';
import type { DashboardDeps } from './deps.js';
import type { AnalyticsCache, ImageFilter, ImageQueryCache, StatusFilter } from './gallery.js';
import { listFailures, retryFailures } from './failures.js';
import { OBJECT_ROLES, resolveRunObject, safeContentType, type ObjectRole } from './object-proxy.js';
import type { DashboardOptions } from './options.js';
import { listRunViews, toRunView } from './run-view.js';
import { OBJECT_CSP } from './security-headers.js';
import type { Thumbnailer } from './thumbnails.js';

type Query = Record<string, string | undefined>;

export interface ApiContext {
  deps: DashboardDeps;
  options: DashboardOptions;
  analytics: AnalyticsCache;
  images: ImageQueryCache;
  thumbnails: Thumbnailer;
}

export function installApi(app: FastifyInstance, ctx: ApiContext): void {
  const { deps, options } = ctx;
  const now = deps.now ?? Date.now;

  const requireRun = async (id: string): Promise<RunRecord> => deps.runs.requireRun(validateRunId(id, 'run id'));

  /** The per-image endpoints only serve keys that are images of this run. */
  const requireImageKey = async (run: RunRecord, query: Query) => {
    const key = query.key;
    if (key === undefined || key === '') throw new InvalidInputError('BAD_QUERY', 'query parameter "key" (the source key) is required');
    const line = await deps.runs.getResult(run.id, key);
    if (!line) throw new NotFoundError(`run ${run.id} has no result for key "${key}"`);
    return { key, line };
  };

  app.get('/healthz', async () => ({ ok: true }));

  // Queue depth for autoscalers (KEDA metrics-api): BullMQ keeps prioritized jobs in a sorted set
  // outside the wait list, so a list-length trigger alone under-counts the backlog.
  app.get('/api/queue', async () => {
    const counts = await deps.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed');
    const n = (k: string): number => counts[k] ?? 0;
    return { name: deps.queue.name, backlog: n('waiting') + n('prioritized'), counts };
  });

  app.get<{ Querystring: Query }>('/api/runs', async (req) => {
    const limit = intParam(req.query, 'limit', 1, 1000) ?? 100;
    return { runs: await listRunViews(deps.runs, limit, now()) };
  });

  app.get<{ Params: { id: string } }>('/api/runs/:id', async (req) => {
    const run = await requireRun(req.params.id);
    const throughput = await deps.runs.throughput(run.id);
    const analytics = await ctx.analytics.get(deps.runs, run);
    return {
      run: toRunView(run, throughput, now()),
      throughput,
      analytics,
      links: { manifest: `/api/runs/${run.id}/manifest.jsonl`, summary: `/api/runs/${run.id}/summary.json` },
    };
  });

  app.get<{ Params: { id: string }; Querystring: Query }>('/api/runs/:id/images', async (req) => {
    const run = await requireRun(req.params.id);
    const filter = parseImageFilter(req.query);
    const limit = intParam(req.query, 'limit', 1, options.maxPageSize) ?? 48;
    const offset = intParam(req.query, 'offset', 0, Number.MAX_SAFE_INTEGER) ?? 0;
    const page = await ctx.images.query(deps.runs, run, filter, { offset, limit });
    return { ...page, items: page.items.map((line) => ({ ...line, urls: imageUrls(run.id, line.key, line.status === 'ok') })) };
  });

  app.get<{ Params: { id: string }; Querystring: Query }>('/api/runs/:id/image', async (req) => {
    const run = await requireRun(req.params.id);
    const { key, line } = await requireImageKey(run, req.query);
    let prediction: ImageManifest | null = null;
    if (line.status === 'ok') {
      const loc = resolveRunObject(run, 'prediction', key);
      try {
        prediction = JSON.parse((await deps.store.get(loc.bucket, loc.key, { maxBytes: 4 * 1024 * 1024 })).body.toString('utf8')) as ImageManifest;
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
    }
    return { line, prediction, urls: imageUrls(run.id, key, line.status === 'ok') };
  });

  app.get<{ Params: { id: string; role: string }; Querystring: Query }>('/api/runs/:id/objects/:role', async (req, reply) => {
    const role = req.params.role as ObjectRole;
    if (!(OBJECT_ROLES as readonly string[]).includes(role)) {
      throw new InvalidInputError('BAD_QUERY', `unknown object "${req.params.role}"; expected one of ${OBJECT_ROLES.join(', ')}`);
    }
    const run = await requireRun(req.params.id);
    const { key } = await requireImageKey(run, req.query);
    const loc = resolveRunObject(run, role, key);
    const object = await deps.store.getStream(loc.bucket, loc.key);
    return sendObject(reply, loc.key, object);
  });

  app.get<{ Params: { id: string }; Querystring: Query }>('/api/runs/:id/thumbnail', async (req, reply) => {
    const run = await requireRun(req.params.id);
    const { key } = await requireImageKey(run, req.query);
    const of = req.query.of ?? 'overlay';
    if (of !== 'overlay' && of !== 'original') throw new InvalidInputError('BAD_QUERY', `"of" must be overlay or original, got "${of}"`);
    const body = await ctx.thumbnails.thumbnail(resolveRunObject(run, of, key));
    return reply.type('image/webp').header('Cache-Control', 'private, max-age=300').header('Content-Security-Policy', OBJECT_CSP).send(body);
  });

  app.get<{ Params: { id: string }; Querystring: Query }>('/api/runs/:id/failures', async (req) => {
    const run = await requireRun(req.params.id);
    const limit = intParam(req.query, 'limit', 1, options.maxPageSize) ?? 100;
    const offset = intParam(req.query, 'offset', 0, Number.MAX_SAFE_INTEGER) ?? 0;
    return { offset, limit, ...(await listFailures(deps.runs, deps.queue, run.id, offset, limit)) };
  });

  app.post<{ Params: { id: string }; Body: unknown }>('/api/runs/:id/retry', async (req, reply) => {
    // Requiring JSON makes a cross-site form post impossible without a CORS preflight.
    if (!(req.headers['content-type'] ?? '').startsWith('application/json')) {
      return reply.code(415).send({ error: 'UNSUPPORTED_MEDIA_TYPE', message: 'send a JSON body: {"keys": ["..."]} or {"all": true}' });
    }
    const run = await requireRun(req.params.id);
    const body = (req.body ?? {}) as { keys?: unknown; all?: unknown };
    let keys: string[] | undefined;
    if (body.all === true) keys = undefined;
    else if (Array.isArray(body.keys) && body.keys.length > 0 && body.keys.length <= 1000 && body.keys.every((k) => typeof k === 'string')) keys = body.keys as string[];
    else throw new InvalidInputError('BAD_BODY', 'expected {"keys": [source keys, 1 to 1000]} or {"all": true}');
    const outcome = await retryFailures(deps.runs, deps.queue, run.id, keys);
    deps.logger.info({ runId: run.id, retried: outcome.retried.length, skipped: outcome.skipped.length }, 'retry requested from the dashboard');
    return outcome;
  });

  app.get('/api/workers', async () => {
    const t = now();
    const workers = await listWorkers(deps.redis, deps.keySpace, undefined, t);
    workers.sort((a, b) => a.workerId.localeCompare(b.workerId));
    return { workers: workers.map((w) => ({ ...w, lastSeenSecondsAgo: Math.max(0, (t - Date.parse(w.lastSeen)) / 1000) })) };
  });

  for (const file of ['manifest.jsonl', 'summary.json'] as const) {
    app.get<{ Params: { id: string } }>(`/api/runs/:id/${file}`, async (req, reply) => {
      const run = await requireRun(req.params.id);
      const out = parseS3Uri(run.output, `run ${run.id} output`);
      const key = joinKey(asFolderPrefix(out.key), file);
      let object: Awaited<ReturnType<typeof deps.store.getStream>>;
      try {
        object = await deps.store.getStream(out.bucket, key);
      } catch (err) {
        if (err instanceof NotFoundError) throw new NotFoundError(`${file} of run ${run.id} is not written yet (state ${run.state}); it appears when every image has a result`);
        throw err;
      }
      const type = file.endsWith('.jsonl') ? 'application/x-ndjson; charset=utf-8' : 'application/json; charset=utf-8';
      void reply.header('Content-Disposition', `inline; filename="${run.id}-${file}"`);
      return sendObject(reply, key, object, type);
    });
  }
}

function sendObject(
  reply: FastifyReply,
  key: string,
  object: { stream: Readable; etag: string; size: number },
  forcedType?: string,
) {
  const { type, inline } = forcedType ? { type: forcedType, inline: true } : safeContentType(key);
  void reply
    .type(type)
    .header('Content-Length', String(object.size))
    .header('Cache-Control', 'private, max-age=60')
    .header('Content-Security-Policy', OBJECT_CSP);
  if (object.etag) void reply.header('ETag', `"${object.etag}"`);
  if (!inline) void reply.header('Content-Disposition', 'attachment');
  return reply.send(object.stream);
}

function imageUrls(runId: string, key: string, ok: boolean) {
  const q = `key=${encodeURIComponent(key)}`;
  const base = `/api/runs/${runId}`;
  return {
    detail: `${base}/image?${q}`,
    original: `${base}/objects/original?${q}`,
    thumbnail: ok ? `${base}/thumbnail?${q}` : null,
    overlay: ok ? `${base}/objects/overlay?${q}` : null,
    heatmap: ok ? `${base}/objects/heatmap?${q}` : null,
    prediction: ok ? `${base}/objects/prediction?${q}` : null,
  };
}

export function parseImageFilter(q: Query): ImageFilter {
  const status = (q.status ?? 'all') as StatusFilter;
  if (!['all', 'ok', 'failed'].includes(status)) throw new InvalidInputError('BAD_QUERY', `"status" must be all, ok or failed, got "${q.status}"`);
  const filter: ImageFilter = { status };
  const cls = intParam(q, 'class', 0, 1_000_000);
  if (cls !== undefined) filter.classIndex = cls;
  const min = numParam(q, 'minProb');
  const max = numParam(q, 'maxProb');
  if (min !== undefined) filter.minProbability = min;
  if (max !== undefined) filter.maxProbability = max;
  if (min !== undefined && max !== undefined && min > max) throw new InvalidInputError('BAD_QUERY', `"minProb" (${min}) is above "maxProb" (${max})`);
  if (q.degenerate === 'true' || q.degenerate === 'false') filter.degenerate = q.degenerate === 'true';
  else if (q.degenerate !== undefined && q.degenerate !== '') throw new InvalidInputError('BAD_QUERY', `"degenerate" must be true or false, got "${q.degenerate}"`);
  if (q.q) filter.keyContains = q.q.slice(0, 256);
  return filter;
}

function intParam(q: Query, name: string, min: number, max: number): number | undefined {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new InvalidInputError('BAD_QUERY', `"${name}" must be an integer from ${min} to ${max}, got "${v}"`);
  return Number(v);
}

function numParam(q: Query, name: string): number | undefined {
  const v = q[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new InvalidInputError('BAD_QUERY', `"${name}" must be a probability from 0 to 1, got "${v}"`);
  return n;
}
