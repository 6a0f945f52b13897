/**
 * The JSON API behind the pages (documented in README.md, "Dashboard API"). Handlers only parse
 * and validate the request, call the query modules and shape the answer; errors are named errors
 * mapped to HTTP statuses by the server's error handler.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Readable } from 'node:stream';
import { AUDIT_FILE, METRICS_PARQUET_FILE, REPORT_FILE } from '../shared/audit/files.js';
import { METRIC_COLUMNS } from '../shared/audit/metric-table.js';
import { FLAG_KINDS } from '../shared/audit/types.js';
import { COLORMAP_TABLES } from '../shared/colormaps.js';
import { InvalidInputError, NotFoundError } from '../shared/errors.js';
import { COLORMAPS, type Colormap } from '../shared/explain-options.js';
import type { ImageManifest } from '../shared/manifest.js';
import { validateRunId } from '../shared/queue/contract.js';
import { listWorkers } from '../shared/queue/heartbeat.js';
import type { RunRecord } from '../shared/queue/run-store.js';
import { asFolderPrefix, joinKey, parseS3Uri } from '../shared/storage/uri.js';
import type { DashboardDeps } from './deps.js';
import type { RunComparisons } from './comparisons.js';
import { DEFAULT_SORT, SORT_KEYS, type AnalyticsCache, type ImageFilter, type ImageQueryCache, type ImageSort, type SortOrder, type StatusFilter } from './gallery.js';
import { listFailures, retryFailures } from './failures.js';
import { OBJECT_ROLES, resolveRunObject, safeContentType, type ObjectRole } from './object-proxy.js';
import type { DashboardOptions } from './options.js';
import { listRunViews, runDetail } from './run-view.js';
import { int, NO_QUERY, object, oneOf, probability, RUN_ID, RUN_PARAMS, SOURCE_KEY, str } from './schemas.js';
import { OBJECT_CSP } from './security-headers.js';
import type { Thumbnailer } from './thumbnails.js';

/** The gallery's query after schema validation (types coerced, ranges checked). */
export interface ImageQuery {
  sort?: string;
  order?: SortOrder;
  status?: StatusFilter;
  class?: number;
  minProb?: number;
  maxProb?: number;
  degenerate?: boolean;
  q?: string;
  offset?: number;
  limit?: number;
}

const STATUS_FILTERS: readonly StatusFilter[] = ['all', 'ok', 'failed'];

/** Run-level files served as they are stored under the run's output prefix. */
const RUN_FILES = ['manifest.jsonl', 'summary.json', AUDIT_FILE, REPORT_FILE, METRICS_PARQUET_FILE] as const;
const AUDIT_FILES = new Set<string>([AUDIT_FILE, REPORT_FILE, METRICS_PARQUET_FILE]);
const RUN_FILE_TYPES: Record<(typeof RUN_FILES)[number], string> = {
  'manifest.jsonl': 'application/x-ndjson; charset=utf-8',
  'summary.json': 'application/json; charset=utf-8',
  [AUDIT_FILE]: 'application/json; charset=utf-8',
  [REPORT_FILE]: 'text/html; charset=utf-8',
  [METRICS_PARQUET_FILE]: 'application/vnd.apache.parquet',
};
const REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox allow-popups";

export interface ApiContext {
  deps: DashboardDeps;
  options: DashboardOptions;
  analytics: AnalyticsCache;
  images: ImageQueryCache;
  thumbnails: Thumbnailer;
  comparisons: RunComparisons;
}

export function installApi(app: FastifyInstance, ctx: ApiContext): void {
  const { deps, options } = ctx;
  const now = deps.now ?? Date.now;

  const requireRun = async (id: string): Promise<RunRecord> => deps.runs.requireRun(validateRunId(id, 'run id'));

  /** The per-image endpoints only serve keys that are images of this run. */
  const requireImageKey = async (run: RunRecord, key: string) => {
    const line = await deps.runs.getResult(run.id, key);
    if (!line) throw new NotFoundError(`run ${run.id} has no result for key "${key}"`);
    return { key, line };
  };

  const page = (maxLimit: number) => ({ offset: int(0, Number.MAX_SAFE_INTEGER), limit: int(1, maxLimit) });
  const KEY_QUERY = object({ key: SOURCE_KEY }, ['key']);

  app.get('/healthz', { schema: { querystring: NO_QUERY } }, async () => ({ ok: true }));

  // Queue depth for autoscalers (KEDA metrics-api): BullMQ keeps prioritized jobs in a sorted set
  // outside the wait list, so a list-length trigger alone under-counts the backlog. `demand` is what
  // the workers must stay up for: the backlog, retries waiting out their backoff (delayed), and
  // active jobs. An active job holds a worker, and a run's last job holds it for the whole
  // finalization (minutes to hours at 10M+ images): scaled to zero on the backlog alone, the
  // worker would be stopped mid-finalization.
  app.get('/api/queue', { schema: { querystring: NO_QUERY } }, async () => {
    const counts = await deps.queue.getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'failed', 'completed');
    const n = (k: string): number => counts[k] ?? 0;
    const backlog = n('waiting') + n('prioritized');
    return { name: deps.queue.name, backlog, demand: backlog + n('delayed') + n('active'), counts };
  });

  app.get<{ Querystring: { limit?: number } }>('/api/runs', { schema: { querystring: object({ limit: int(1, 1000) }) } }, async (req) => {
    return { runs: await listRunViews(deps.runs, req.query.limit ?? 100, now()) };
  });

  app.get<{ Params: { id: string } }>('/api/runs/:id', { schema: { params: RUN_PARAMS, querystring: NO_QUERY } }, async (req) => {
    const run = await requireRun(req.params.id);
    return runDetail(run, await deps.runs.throughput(run.id), await ctx.analytics.get(deps.runs, run), now());
  });

  // The gallery's filters and sort; the detail view's previous/next take the same parameters.
  const listing = {
    status: oneOf(STATUS_FILTERS),
    class: int(0, 1_000_000),
    minProb: probability,
    maxProb: probability,
    degenerate: { type: 'boolean' },
    q: str(1024),
    sort: oneOf(SORT_KEYS),
    order: oneOf(['asc', 'desc']),
  };
  const imageQuery = object({ ...listing, ...page(options.maxPageSize) });
  app.get<{ Params: { id: string }; Querystring: ImageQuery }>('/api/runs/:id/images', { schema: { params: RUN_PARAMS, querystring: imageQuery } }, async (req) => {
    const run = await requireRun(req.params.id);
    const filter = parseImageFilter(req.query);
    const result = await ctx.images.query(deps.runs, run, filter, { offset: req.query.offset ?? 0, limit: req.query.limit ?? 48 }, parseImageSort(req.query));
    return { ...result, sort: parseImageSort(req.query), items: result.items.map((line) => ({ ...line, urls: imageUrls(run.id, line.key, line.status === 'ok') })) };
  });

  app.get<{ Params: { id: string }; Querystring: ImageQuery & { key: string } }>(
    '/api/runs/:id/images/position',
    { schema: { params: RUN_PARAMS, querystring: object({ ...listing, key: SOURCE_KEY }, ['key']) } },
    async (req) => {
      const run = await requireRun(req.params.id);
      return ctx.images.position(deps.runs, run, parseImageFilter(req.query), parseImageSort(req.query), req.query.key);
    },
  );

  // The per-image metrics (names, labels, ranges) and flag kinds, for the pages' sort menus,
  // histogram titles and flag filters: the one table, not a copy in the front end.
  app.get('/api/audit/vocabulary', { schema: { querystring: NO_QUERY } }, async (_req, reply) => {
    void reply.header('Cache-Control', 'public, max-age=3600');
    return { metrics: METRIC_COLUMNS, flagKinds: FLAG_KINDS };
  });

  // The overlay colormaps as CSS colours, for the detail view's legend and CAM grid.
  app.get<{ Params: { name: Colormap } }>('/api/colormaps/:name', { schema: { params: object({ name: oneOf(COLORMAPS) }, ['name']), querystring: NO_QUERY } }, async (req, reply) => {
    const table = COLORMAP_TABLES[req.params.name];
    const colors = Array.from({ length: table.length / 3 }, (_, i) => `#${Buffer.from(table.subarray(3 * i, 3 * i + 3)).toString('hex')}`);
    void reply.header('Cache-Control', 'public, max-age=86400');
    return { name: req.params.name, colors };
  });

  app.get<{ Params: { id: string }; Querystring: { key: string } }>('/api/runs/:id/image', { schema: { params: RUN_PARAMS, querystring: KEY_QUERY } }, async (req) => {
    const run = await requireRun(req.params.id);
    const { key, line } = await requireImageKey(run, req.query.key);
    let prediction: ImageManifest | null = null;
    if (line.status === 'ok') {
      const loc = resolveRunObject(run, 'prediction', key);
      try {
        prediction = JSON.parse((await deps.store.get(loc.bucket, loc.key, { maxBytes: 4 * 1024 * 1024 })).body.toString('utf8')) as ImageManifest;
      } catch (err) {
        if (!(err instanceof NotFoundError)) throw err;
      }
    }
    return { line, prediction, colormap: run.options.colormap, urls: imageUrls(run.id, key, line.status === 'ok') };
  });

  const objectParams = object({ id: RUN_ID, role: oneOf(OBJECT_ROLES) }, ['id', 'role']);
  app.get<{ Params: { id: string; role: ObjectRole }; Querystring: { key: string } }>('/api/runs/:id/objects/:role', { schema: { params: objectParams, querystring: KEY_QUERY } }, async (req, reply) => {
    const run = await requireRun(req.params.id);
    const { key } = await requireImageKey(run, req.query.key);
    const loc = resolveRunObject(run, req.params.role, key);
    const object = await deps.store.getStream(loc.bucket, loc.key);
    return sendObject(reply, loc.key, object);
  });

  const thumbnailQuery = object({ key: SOURCE_KEY, of: oneOf(['overlay', 'original']) }, ['key']);
  app.get<{ Params: { id: string }; Querystring: { key: string; of?: 'overlay' | 'original' } }>('/api/runs/:id/thumbnail', { schema: { params: RUN_PARAMS, querystring: thumbnailQuery } }, async (req, reply) => {
    const run = await requireRun(req.params.id);
    const { key } = await requireImageKey(run, req.query.key);
    const of = req.query.of ?? 'overlay';
    const body = await ctx.thumbnails.thumbnail(resolveRunObject(run, of, key));
    return reply.type('image/webp').header('Cache-Control', 'private, max-age=300').header('Content-Security-Policy', OBJECT_CSP).send(body);
  });

  app.get<{ Params: { id: string }; Querystring: { offset?: number; limit?: number } }>('/api/runs/:id/failures', { schema: { params: RUN_PARAMS, querystring: object(page(options.maxPageSize)) } }, async (req) => {
    const run = await requireRun(req.params.id);
    const { offset = 0, limit = 100 } = req.query;
    return { offset, limit, ...(await listFailures(deps.runs, deps.queue, run.id, offset, limit)) };
  });

  // JSON only (the request guard refuses other bodies), so a cross-site form cannot post here.
  const retryBody = {
    type: 'object',
    properties: { keys: { type: 'array', items: SOURCE_KEY, minItems: 1, maxItems: 1000 }, all: { type: 'boolean', const: true } },
    additionalProperties: false,
    oneOf: [{ required: ['keys'] }, { required: ['all'] }],
  };
  const retryHint = 'expected {"keys": [source keys, 1 to 1000]} or {"all": true}';
  app.post<{ Params: { id: string }; Body: { keys?: string[]; all?: true } }>('/api/runs/:id/retry', { schema: { params: RUN_PARAMS, querystring: NO_QUERY, body: retryBody }, config: { bodyHint: retryHint } }, async (req) => {
    const run = await requireRun(req.params.id);
    if (req.body === undefined || req.body === null) throw new InvalidInputError('BAD_BODY', retryHint);
    const keys = req.body.all === true ? undefined : req.body.keys;
    const outcome = await retryFailures(deps.runs, deps.queue, run.id, keys);
    deps.logger.info({ runId: run.id, retried: outcome.retried.length, skipped: outcome.skipped.length }, 'retry requested from the dashboard');
    return outcome;
  });

  app.get('/api/workers', { schema: { querystring: NO_QUERY } }, async () => {
    const t = now();
    const workers = await listWorkers(deps.redis, deps.keySpace, undefined, t);
    workers.sort((a, b) => a.workerId.localeCompare(b.workerId));
    return { workers: workers.map((w) => ({ ...w, lastSeenSecondsAgo: Math.max(0, (t - Date.parse(w.lastSeen)) / 1000) })) };
  });

  // Two runs compared: the stored comparison (GET), or a new one computed and stored (POST).
  const pair = object({ a: RUN_ID, b: RUN_ID }, ['a', 'b']);
  const pairRuns = async (q: { a: string; b: string }) => {
    if (q.a === q.b) throw new InvalidInputError('BAD_QUERY', 'compare needs two different runs');
    return Promise.all([requireRun(q.a), requireRun(q.b)]);
  };
  app.get<{ Querystring: { a: string; b: string } }>('/api/compare', { schema: { querystring: pair } }, async (req) => {
    const [a, b] = await pairRuns(req.query);
    const report = await ctx.comparisons.stored(a, b);
    if (report === null) throw new NotFoundError(`runs ${a.id} and ${b.id} are not compared yet; compare them here or with: gradcam-audit compare ${a.id} ${b.id}`);
    return report;
  });
  app.post<{ Body: { a: string; b: string } }>('/api/compare', { schema: { querystring: NO_QUERY, body: pair }, config: { bodyHint: 'expected {"a": run id, "b": run id}' } }, async (req) => {
    const [a, b] = await pairRuns(req.body);
    const report = await ctx.comparisons.compute(a, b);
    deps.logger.info({ a: a.id, b: b.id, images: report.counts.both }, 'runs compared from the dashboard');
    return report;
  });

  for (const file of RUN_FILES) {
    app.get<{ Params: { id: string } }>(`/api/runs/:id/${file}`, { schema: { params: RUN_PARAMS, querystring: NO_QUERY } }, async (req, reply) => {
      const run = await requireRun(req.params.id);
      const out = parseS3Uri(run.output, `run ${run.id} output`);
      const key = joinKey(asFolderPrefix(out.key), file);
      let object: Awaited<ReturnType<typeof deps.store.getStream>>;
      try {
        object = await deps.store.getStream(out.bucket, key);
      } catch (err) {
        if (err instanceof NotFoundError) {
          const hint = AUDIT_FILES.has(file) ? `; write it with: gradcam-audit report ${run.id}` : '; it appears when every image has a result';
          throw new NotFoundError(`${file} of run ${run.id} is not written yet (state ${run.state})${hint}`);
        }
        throw err;
      }
      void reply.header('Content-Disposition', `${file.endsWith('.parquet') ? 'attachment' : 'inline'}; filename="${run.id}-${file}"`);
      // The report is a self-contained page: inline styles and data: thumbnails, no script.
      return sendObject(reply, key, object, RUN_FILE_TYPES[file], file === REPORT_FILE ? REPORT_CSP : OBJECT_CSP);
    });
  }
}

function sendObject(
  reply: FastifyReply,
  key: string,
  object: { stream: Readable; etag: string; size: number },
  forcedType?: string,
  csp: string = OBJECT_CSP,
) {
  const { type, inline } = forcedType ? { type: forcedType, inline: true } : safeContentType(key);
  void reply
    .type(type)
    .header('Content-Length', String(object.size))
    .header('Cache-Control', 'private, max-age=60')
    .header('Content-Security-Policy', csp);
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

/** The gallery's sort of a validated query (by key, ascending, unless asked). */
export function parseImageSort(q: ImageQuery): ImageSort {
  return { by: q.sort ?? DEFAULT_SORT.by, order: q.order ?? DEFAULT_SORT.order };
}

/** The gallery filter of a validated query; only the cross-field rule is left to check here. */
export function parseImageFilter(q: ImageQuery): ImageFilter {
  const filter: ImageFilter = { status: q.status ?? 'all' };
  if (q.class !== undefined) filter.classIndex = q.class;
  if (q.minProb !== undefined) filter.minProbability = q.minProb;
  if (q.maxProb !== undefined) filter.maxProbability = q.maxProb;
  if (q.minProb !== undefined && q.maxProb !== undefined && q.minProb > q.maxProb) {
    throw new InvalidInputError('BAD_QUERY', `"minProb" (${q.minProb}) is above "maxProb" (${q.maxProb})`);
  }
  if (q.degenerate !== undefined) filter.degenerate = q.degenerate;
  if (q.q) filter.keyContains = q.q.slice(0, 256);
  return filter;
}
