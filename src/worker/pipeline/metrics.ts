/**
 * Prometheus metrics of one worker process, on its own registry (so tests and embedding
 * applications never collide on prom-client's global one), served over plain node:http.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AggregatorRegistry, Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValue } from 'prom-client';

export const STAGES = ['download', 'decode', 'queue_wait', 'infer', 'render', 'upload'] as const;
export type Stage = (typeof STAGES)[number];

export interface WorkerMetricsOptions {
  /** Queue depth (waiting + prioritized + delayed); called at scrape time, cached. */
  queueDepth?: () => Promise<number>;
  /** How long a queue-depth reading is reused, ms. Default 2,000. */
  queueDepthCacheMs?: number;
  /** Histogram buckets for batch sizes. Default powers of two up to 256. */
  batchSizeBuckets?: number[];
  /** Also export process metrics (CPU, memory, event-loop lag). Default true. */
  processMetrics?: boolean;
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly processed: Counter<'outcome'>;
  readonly failed: Counter<'reason'>;
  readonly rejected: Counter<'reason'>;
  readonly handedBack: Counter<'reason'>;
  readonly batchSize: Histogram;
  readonly stageSeconds: Histogram<'stage'>;
  readonly engineBusySeconds: Counter;
  readonly inFlight: Gauge;
  readonly queueDepth: Gauge;
  private depthCache: { at: number; value: number } | null = null;

  constructor(options: WorkerMetricsOptions = {}) {
    const cacheMs = options.queueDepthCacheMs ?? 2_000;
    const registers = [this.registry];
    this.processed = new Counter({
      name: 'gradcam_audit_images_processed_total',
      help: 'Images finished successfully (outcome="skipped": outputs already existed, nothing recomputed)',
      labelNames: ['outcome'],
      registers,
    });
    this.failed = new Counter({
      name: 'gradcam_audit_images_failed_total',
      help: 'Images failed for good (no retry left), by reason code',
      labelNames: ['reason'],
      registers,
    });
    this.rejected = new Counter({
      name: 'gradcam_audit_jobs_rejected_total',
      help: 'Jobs failed without processing because they do not belong to the run they name (UNKNOWN_RUN, NOT_IN_RUN); never counted in any run',
      labelNames: ['reason'],
      registers,
    });
    this.handedBack = new Counter({
      name: 'gradcam_audit_jobs_handed_back_total',
      help: 'Jobs put back in the queue untouched for another worker (MODEL_MISMATCH: their run needs another model than this worker serves)',
      labelNames: ['reason'],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'gradcam_audit_batch_size',
      help: 'Images per engine call',
      buckets: options.batchSizeBuckets ?? [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.stageSeconds = new Histogram({
      name: 'gradcam_audit_stage_seconds',
      help: 'Per-image latency of each pipeline stage (infer: batch time divided by batch size)',
      labelNames: ['stage'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.engineBusySeconds = new Counter({
      name: 'gradcam_audit_engine_busy_seconds_total',
      help: 'Time the engine spent computing batches; its rate is the engine utilisation (1 = I/O fully hidden)',
      registers,
    });
    this.inFlight = new Gauge({ name: 'gradcam_audit_jobs_in_flight', help: 'Jobs this worker holds', registers });
    const depth = options.queueDepth;
    const readDepth = async (): Promise<number | null> => {
      if (!depth) return null;
      const now = Date.now();
      // Every scraper (Prometheus, KEDA, the dashboard) would otherwise hit Redis on each scrape.
      if (!this.depthCache || now - this.depthCache.at > cacheMs) {
        try {
          this.depthCache = { at: now, value: await depth() };
        } catch {
          // Redis down: keep the last value rather than fail the whole scrape
        }
      }
      return this.depthCache?.value ?? null;
    };
    this.queueDepth = new Gauge({
      name: 'gradcam_audit_queue_depth',
      help: 'Jobs waiting in the queue (waiting + prioritized + delayed), cached for a couple of seconds',
      registers,
      // Every process of a `--processes` group reads the same queue: its total is one reading.
      aggregator: 'max',
      async collect() {
        const value = await readDepth();
        if (value !== null) this.set(value);
      },
    });
    if (options.processMetrics ?? true) collectDefaultMetrics({ register: this.registry, prefix: 'gradcam_audit_worker_' });
  }

  observeStage(stage: Stage, ms: number): void {
    this.stageSeconds.observe({ stage }, ms / 1000);
  }
}

export interface MetricsServer {
  /** Bound port (useful with port 0). */
  port: number;
  host: string;
  close(): Promise<void>;
}

/** What the metrics server serves: a registry, or anything that renders like one. */
export interface MetricsSource {
  contentType: string;
  metrics(): Promise<string>;
}

/** Serve `GET /metrics` (Prometheus text) and `GET /healthz`. */
export async function startMetricsServer(registry: MetricsSource, host: string, port: number): Promise<MetricsServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      registry
        .metrics()
        .then((text) => {
          res.writeHead(200, { 'content-type': registry.contentType });
          res.end(text);
        })
        .catch((err: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(`metrics collection failed: ${err instanceof Error ? err.message : String(err)}\n`);
        });
      return;
    }
    if (req.method === 'GET' && path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found: try /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  return {
    port: address.port,
    host,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/**
 * The metrics of a `--processes` group, served by its supervisor on the one metrics port: each
 * child answers a request over its IPC channel with its registry as JSON, and the supervisor
 * aggregates them as prom-client does for the cluster module (counters and histograms summed,
 * the queue depth its maximum). A child that does not answer in time (starting, restarting) is
 * left out of that scrape.
 */
export const METRICS_MESSAGE = Object.freeze({ request: 'gradcam-audit:metrics?', reply: 'gradcam-audit:metrics' });

type MetricsJson = Array<MetricObjectWithValues<MetricValue<string>>>;

interface MetricsRequest {
  type: typeof METRICS_MESSAGE.request;
  id: number;
}
interface MetricsReply {
  type: typeof METRICS_MESSAGE.reply;
  id: number;
  metrics: MetricsJson;
}

/** In a child: answer the supervisor's metrics requests. Returns the function that stops answering. */
export function answerMetricsRequests(registry: Registry, channel: Pick<NodeJS.Process, 'on' | 'off' | 'send'> = process): () => void {
  const onMessage = (message: unknown): void => {
    const m = message as Partial<MetricsRequest> | null;
    if (m?.type !== METRICS_MESSAGE.request || typeof m.id !== 'number') return;
    const id = m.id;
    void registry.getMetricsAsJSON().then(
      (metrics) => channel.send?.({ type: METRICS_MESSAGE.reply, id, metrics } satisfies MetricsReply),
      () => undefined, // a failed collection leaves this process out of the scrape
    );
  };
  channel.on('message', onMessage);
  return () => channel.off('message', onMessage);
}

/** A child as the supervisor sees it for metrics. */
export interface MetricsChild {
  send(message: MetricsRequest): boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
}

/** In the supervisor: the group's metrics, gathered from `children()` at each scrape. */
export function groupMetrics(children: () => MetricsChild[], timeoutMs = 2_000): MetricsSource {
  let next = 0;
  const ask = (child: MetricsChild): Promise<MetricsJson | null> =>
    new Promise((resolve) => {
      const id = ++next;
      const onMessage = (message: unknown): void => {
        const m = message as Partial<MetricsReply> | null;
        if (m?.type !== METRICS_MESSAGE.reply || m.id !== id || !Array.isArray(m.metrics)) return;
        finish(m.metrics);
      };
      const timer = setTimeout(() => finish(null), timeoutMs);
      const finish = (value: MetricsJson | null): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        resolve(value);
      };
      child.on('message', onMessage);
      try {
        if (!child.send({ type: METRICS_MESSAGE.request, id })) finish(null);
      } catch {
        finish(null); // the channel closed: the child is exiting
      }
    });
  return {
    contentType: Registry.PROMETHEUS_CONTENT_TYPE,
    async metrics() {
      const answers = (await Promise.all(children().map(ask))).filter((m): m is MetricsJson => m !== null);
      return AggregatorRegistry.aggregate(answers).metrics();
    },
  };
}
