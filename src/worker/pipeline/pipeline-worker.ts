/**
 * The pipeline worker process: one engine (model loaded once) serving jobs of every run, BullMQ
 * for delivery, the dynamic batcher in between, heartbeats, metrics and a bounded drain.
 *
 * How jobs reach the batcher. Open-source BullMQ has no batches, so there are two options: fetch
 * jobs by hand with `worker.getNextJob(token)`, or let a `Worker` with `concurrency = batch size +
 * prefetch` call a processor per job and gather those jobs in an in-process batcher. We use the
 * second: BullMQ then keeps doing what it does well and what a manual loop would have to
 * re-implement (and get wrong under faults): moving jobs to completed/failed with the right token,
 * retries with backoff, `UnrecoverableError`, reconnects, and, above all, lock renewal. Its lock
 * manager extends the lock of every in-flight job on a timer (`lockRenewTime`, a quarter of the
 * lock duration here), which is exactly the explicit `extendLock` loop a manual fetcher would need.
 * That timer only fires between engine calls, so each engine call is bounded (one batch) and the
 * batcher yields a macrotask between batches; the lock duration itself is computed from a
 * measured warm-up batch (10x, at least 60 s).
 */
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { DelayedError, Worker, type Job } from 'bullmq';
import type { RedisConnection } from '../../shared/queue/redis.js';
import { describeError, ForeignJobError } from '../../shared/errors.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../shared/explain-options.js';
import type { Logger } from '../../shared/logger.js';
import type { AuditJobPayload } from '../../shared/queue/contract.js';
import { bullPrefix } from '../../shared/queue/contract.js';
import type { WorkerHeartbeat } from '../../shared/queue/heartbeat.js';
import { removeHeartbeat, writeHeartbeat } from '../../shared/queue/heartbeat.js';
import type { KeySpace } from '../../shared/queue/keys.js';
import type { RunStore } from '../../shared/queue/run-store.js';
import { QueueShards } from '../../shared/queue/shards.js';
import type { ObjectStore } from '../../shared/storage/object-store.js';
import { raceTimeout } from '../../shared/timeout.js';
import { PACKAGE_VERSION } from '../../shared/version.js';
import type { Engine, EngineImageResult, PreprocessedImage } from '../engine/engine.js';
import { LabelMatcher } from '../../shared/audit/label-matcher.js';
import { InputBufferPool } from '../core/input-pool.js';
import { PixelBudget } from '../core/pixel-budget.js';
import type { ClassLabel } from '../model/labels.js';
import { DEFAULT_SERVED_MODEL, type ServedModel } from '../model/model-card.js';
import { DynamicBatcher, type Arrival } from './batcher.js';
import type { BatchItem, ImageJobContext, ImageJobResult } from './image-job.js';
import { batchedInfer, engineBatchRunner, processImageJob } from './image-job.js';
import { WorkerMetrics } from './metrics.js';
import type { PipelineOptions } from './options.js';
import { lockDurationFor, resolvePipelineOptions } from './options.js';
import { Semaphore } from './semaphore.js';
import { payloadProblem, RunRecordCache, verifyJob } from './verify-job.js';

export interface PipelineWorkerDeps {
  engine: Engine;
  labels: readonly ClassLabel[] | null;
  weightsSource: string;
  /** The model's preprocessing, provenance and identity. Default: caffe, no identity (serves only runs that name no model). */
  model?: ServedModel;
  store: ObjectStore;
  runs: RunStore;
  /** Plain commands: heartbeats, run records. */
  redis: RedisConnection;
  /** BullMQ's connection (must have `maxRetriesPerRequest: null`); the Worker duplicates it for blocking reads. */
  bullConnection: RedisConnection;
  keySpace: KeySpace;
  queueName: string;
  logger: Logger;
  /**
   * Write the run's manifest and summary (exactly one process wins); errors are logged, the
   * sweeper retries. `lockTtlMs` is the worker's job lock duration.
   */
  finalizeRun: (runId: string, lockTtlMs: number) => Promise<unknown>;
  /** Finalize runs whose finalizer died, with the same lock lifetime. */
  sweepUnfinalized: (lockTtlMs: number) => Promise<unknown>;
  metrics?: WorkerMetrics;
}

export type WorkerStatus = WorkerHeartbeat['status'] | 'stopped';

export interface DrainOutcome {
  /** True when every in-flight job finished within the grace period. */
  clean: boolean;
  /** Jobs abandoned to the stalled checker (another worker takes them over after the lock expires). */
  abandoned: number;
  ms: number;
}

export class PipelineWorker {
  readonly options: PipelineOptions;
  readonly metrics: WorkerMetrics;
  readonly batcher: DynamicBatcher<BatchItem, EngineImageResult>;
  /** Decoded pixels shared by the images this worker holds (`pixelBudget`). */
  readonly pixelBudget: PixelBudget;
  lockDurationMs = 0;
  status: WorkerStatus = 'starting';
  /** One per queue shard. */
  private workers: Array<Worker<AuditJobPayload, ImageJobResult>> = [];
  private readonly queue: QueueShards<AuditJobPayload>;
  private readonly ctx: ImageJobContext;
  private readonly startedAt = new Date();
  private processed = 0;
  private failed = 0;
  private inFlight = 0;
  private lastBeat = { at: performance.now(), processed: 0 };
  private timers: NodeJS.Timeout[] = [];
  /** Runs whose start this process already recorded (throughput is measured from it). */
  private readonly runsStarted = new Set<string>();
  private stopping: Promise<DrainOutcome> | null = null;
  private readonly runCache: RunRecordCache;

  constructor(
    private readonly deps: PipelineWorkerDeps,
    options: Partial<PipelineOptions> = {},
  ) {
    this.options = resolvePipelineOptions(options);
    this.runCache = new RunRecordCache(deps.runs);
    this.queue = new QueueShards<AuditJobPayload>(deps.queueName, deps.keySpace, deps.bullConnection);
    this.metrics =
      deps.metrics ??
      new WorkerMetrics({
        queueDepth: async () => {
          const c = await this.queue.getJobCounts('waiting', 'prioritized', 'delayed');
          return (c.waiting ?? 0) + (c.prioritized ?? 0) + (c.delayed ?? 0);
        },
      });
    this.pixelBudget = new PixelBudget(this.options.pixelBudget);
    this.batcher = new DynamicBatcher(engineBatchRunner(deps.engine, this.options.batchSize), { maxBatchSize: this.options.batchSize, maxDelayMs: this.options.maxBatchDelayMs });
    const log = deps.logger;
    this.batcher.on('batch', (e) => {
      this.metrics.batchSize.observe(e.size);
      // Fault tests wait for this line before killing a worker mid-batch.
      log.info({ size: e.size, reason: e.reason, oldestWaitedMs: Math.round(e.oldestWaitedMs) }, 'batch started');
    });
    this.batcher.on('batchDone', (e) => {
      this.metrics.engineBusySeconds.inc(e.runMs / 1000);
      if (!e.ok) log.warn({ size: e.size }, 'batch failed; its images were retried one by one');
      else if (e.runMs * 10 > this.lockDurationMs && this.lockDurationMs > 0) {
        log.warn({ runMs: Math.round(e.runMs), lockDurationMs: this.lockDurationMs }, 'a batch took over a tenth of the lock duration; lower --batch-size or raise --lock-duration-ms');
      } else log.debug({ size: e.size, runMs: Math.round(e.runMs) }, 'batch done');
    });
    this.ctx = {
      engine: deps.engine,
      labels: deps.labels,
      weightsSource: deps.weightsSource,
      model: deps.model ?? DEFAULT_SERVED_MODEL,
      store: deps.store,
      runs: deps.runs,
      core: {
        engine: deps.engine.info,
        labels: deps.labels,
        matcher: new LabelMatcher(deps.labels, deps.engine.info.numClasses),
        weightsSource: deps.weightsSource,
        model: deps.model ?? DEFAULT_SERVED_MODEL,
        infer: batchedInfer(this.batcher, this.metrics, deps.engine.info.layer),
        budget: this.pixelBudget,
        // One model input per image the worker holds (batch + prefetch), reused from job to job.
        inputs: new InputBufferPool(this.options.batchSize + this.options.prefetch),
      },
      uploads: new Semaphore(this.options.uploadConcurrency),
      metrics: this.metrics,
      logger: log,
      workerId: this.options.workerId,
      maxSourceBytes: this.options.maxSourceBytes,
      handBackDelayMs: this.options.handBackDelayMs,
      provenanceRecorded: new Set(),
      // A run is marked started by its first job that passed the check, never on a job's word.
      verifyJob: async (payload) => {
        const run = await verifyJob(payload, { cache: this.runCache, runs: deps.runs, served: deps.model?.identity });
        await this.markStarted(payload.runId);
        return run;
      },
      onRunComplete: async (runId) => {
        try {
          const outcome = await deps.finalizeRun(runId, this.lockDurationMs);
          log.info({ runId, outcome: (outcome as { status?: string } | undefined)?.status }, 'run complete; finalizer called');
        } catch (err) {
          log.warn({ runId, err: describeError(err) }, 'finalizing the run failed; the sweeper will retry');
        }
      },
    };
  }

  /** Warm the engine, size the lock from a measured batch, and start taking jobs. */
  async start(): Promise<void> {
    const log = this.deps.logger;
    const measured = await this.measureBatch();
    this.lockDurationMs = lockDurationFor(measured.estimatedFullBatchMs, this.options);
    log.info(
      { warmupBatch: measured.size, warmupMs: Math.round(measured.ms), estimatedBatchMs: Math.round(measured.estimatedFullBatchMs), lockDurationMs: this.lockDurationMs },
      'engine warm; lock duration sized from the measured batch',
    );
    const concurrency = this.options.batchSize + this.options.prefetch;
    // One BullMQ Worker per queue shard (shared/queue/shards.ts), all feeding the one batcher. A
    // job's shard is a hash of its id, so every run's backlog is spread evenly and each shard's
    // Worker gets an even part of the jobs this process may hold.
    const shards = this.queue.queues.length;
    const perShard = Math.ceil(concurrency / shards);
    this.workers = this.queue.queues.map(
      (_, shard) =>
        new Worker<AuditJobPayload, ImageJobResult>(this.deps.queueName, (job, token) => this.process(job, token), {
          connection: this.deps.bullConnection,
          prefix: bullPrefix(this.deps.keySpace, shard),
          name: this.options.workerId,
          concurrency: perShard,
          lockDuration: this.lockDurationMs,
          // Renew at a quarter (BullMQ's default is half): a late timer still leaves margin.
          lockRenewTime: Math.floor(this.lockDurationMs / 4),
          stalledInterval: this.options.stalledIntervalMs,
          maxStalledCount: this.options.maxStalledCount,
          autorun: false,
        }),
    );
    for (const worker of this.workers) {
      worker.on('error', (err) => log.error({ err: describeError(err) }, 'BullMQ worker error (it reconnects by itself)'));
      worker.on('failed', (job, err) => void this.onFailed(job, err));
      worker.on('stalled', (jobId) => log.warn({ jobId }, 'job stalled (its worker stopped renewing the lock); it goes back to the queue'));
    }
    this.status = 'running';
    for (const worker of this.workers) worker.run().catch((err: unknown) => log.error({ err: describeError(err) }, 'BullMQ worker loop ended with an error'));
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));

    this.timers.push(setInterval(() => void this.beat(), this.options.heartbeatIntervalMs));
    // A finalizer that died holds its run back for one lock duration; sweeping at least that often
    // finishes the run within about two.
    this.timers.push(
      setInterval(
        () => {
          this.deps.sweepUnfinalized(this.lockDurationMs).catch((err: unknown) => log.warn({ err: describeError(err) }, 'sweep for unfinalized runs failed'));
        },
        Math.min(this.options.sweepIntervalMs, this.lockDurationMs),
      ),
    );
    for (const t of this.timers) t.unref();
    await this.beat();
    const { engine, backend, device, modelName, layer } = this.deps.engine.info;
    log.info({ workerId: this.options.workerId, queue: this.deps.queueName, shards, concurrency, batchSize: this.options.batchSize, engine, backend, device, modelName, layer }, 'worker ready');
  }

  /**
   * Stop fetching, finish what is in flight within `drainTimeoutMs`, then release everything.
   * `worker.close()` alone waits for active jobs forever, so it is raced against the grace period;
   * jobs still running then are abandoned to the stalled checker of the other workers.
   */
  stop(drainTimeoutMs = this.options.drainTimeoutMs): Promise<DrainOutcome> {
    this.stopping ??= this.doStop(drainTimeoutMs);
    return this.stopping;
  }

  get stats(): { processed: number; failed: number; inFlight: number } {
    return { processed: this.processed, failed: this.failed, inFlight: this.inFlight };
  }

  private async doStop(drainTimeoutMs: number): Promise<DrainOutcome> {
    const log = this.deps.logger;
    const t0 = performance.now();
    this.status = 'draining';
    log.info({ inFlight: this.inFlight, drainTimeoutMs }, 'draining: no new jobs; finishing in-flight batches');
    // Every step that talks to Redis is bounded: with Redis unreachable, ioredis queues commands
    // until it reconnects, which may be never, and a worker asked to stop must stop anyway.
    await raceTimeout(this.beat(), CLEANUP_STEP_MS);
    // No new images will arrive: flush partial batches now rather than after the batching delay.
    this.batcher.drain();
    let clean = true;
    let abandoned = 0;
    if (this.workers.length > 0) {
      const closing = Promise.all(this.workers.map((w) => w.close()));
      const timedOut = await raceTimeout(closing, drainTimeoutMs);
      if (timedOut) {
        clean = false;
        abandoned = this.inFlight;
        log.warn({ abandoned, drainTimeoutMs }, 'grace period over; abandoning in-flight jobs to the stalled checker');
        // A forced close can itself wait on the abandoned processors; the process exits next anyway.
        await raceTimeout(Promise.all(this.workers.map((w) => w.close(true))), CLEANUP_STEP_MS);
      }
    }
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    this.status = 'stopped';
    const removed = removeHeartbeat(this.deps.redis, this.deps.keySpace, this.options.workerId).catch((err: unknown) =>
      log.warn({ err: describeError(err) }, 'could not remove the heartbeat; it expires by itself'),
    );
    if (await raceTimeout(removed, CLEANUP_STEP_MS)) log.warn('Redis did not answer; the heartbeat expires by itself');
    await raceTimeout(this.queue.close(), CLEANUP_STEP_MS);
    const ms = performance.now() - t0;
    log.info({ clean, abandoned, ms: Math.round(ms), processed: this.processed, failed: this.failed }, 'worker stopped');
    return { clean, abandoned, ms };
  }

  private async markStarted(runId: string): Promise<void> {
    if (this.runsStarted.has(runId)) return;
    this.runsStarted.add(runId);
    await this.deps.runs.markStarted(runId).catch((err: unknown) => this.deps.logger.warn({ runId, err: describeError(err) }, 'could not record the run start'));
  }

  private async process(job: Job<AuditJobPayload>, token?: string): Promise<ImageJobResult> {
    this.inFlight++;
    this.metrics.inFlight.set(this.inFlight);
    let arrival: Arrival | undefined;
    try {
      // Announce the image to the batcher, so a batch waits for it rather than starting half
      // full (batcher.ts); settled by its submit, or below if it never reaches the engine.
      arrival = this.batcher.expect();
      const ctx = { ...this.ctx, core: { ...this.ctx.core, infer: batchedInfer(this.batcher, this.metrics, this.deps.engine.info.layer, arrival) } };
      const result = await processImageJob(job, ctx, token);
      this.processed++;
      return result;
    } catch (err) {
      // A job handed back to the queue (model mismatch) has not failed.
      if (err instanceof DelayedError) throw err;
      // Only final failures count; a retry will be counted when it ends.
      if (job.attemptsMade + 1 >= (job.opts.attempts ?? 1) || (err as Error).name === 'UnrecoverableError') this.failed++;
      throw err;
    } finally {
      arrival?.settle();
      this.inFlight--;
      this.metrics.inFlight.set(this.inFlight);
    }
  }

  /**
   * Backstop for failures the processor never saw: a job that stalled more often than
   * `maxStalledCount` is failed by BullMQ itself. Recording is exactly-once, so a second record of
   * a failure the processor already recorded changes nothing.
   */
  private async onFailed(job: Job<AuditJobPayload> | undefined, err: Error): Promise<void> {
    // A payload the worker cannot read is no evidence about the run it names: nothing to record.
    if (!job || payloadProblem(job.data) !== null) return;
    try {
      if (!(await job.isFailed())) return; // it will be retried
      // A job that is not its run's (or was rejected as such) never reaches the run's books.
      await verifyJob(job.data, { cache: this.runCache, runs: this.deps.runs });
      const outcome = await this.deps.runs.recordResult(job.data.runId, { key: job.data.source.key, status: 'failed', error: describeError(err) });
      if (outcome.counted) {
        this.metrics.failed.inc({ reason: 'STALLED' });
        if (outcome.complete) await this.ctx.onRunComplete(job.data.runId);
      }
    } catch (e) {
      if (e instanceof ForeignJobError) return;
      this.deps.logger.warn({ jobId: job.id, err: describeError(e) }, 'could not record a failed job');
    }
  }

  private async beat(): Promise<void> {
    const now = performance.now();
    const dt = (now - this.lastBeat.at) / 1000;
    const rate = dt > 0 ? (this.processed - this.lastBeat.processed) / dt : 0;
    this.lastBeat = { at: now, processed: this.processed };
    const info = this.deps.engine.info;
    const hb: WorkerHeartbeat = {
      workerId: this.options.workerId,
      host: hostname(),
      pid: process.pid,
      engine: info.engine,
      backend: info.backend,
      device: info.device,
      batchSize: this.options.batchSize,
      imagesPerSecond: Math.round(rate * 100) / 100,
      processed: this.processed,
      failed: this.failed,
      inFlight: this.inFlight,
      startedAt: this.startedAt.toISOString(),
      lastSeen: new Date().toISOString(),
      version: PACKAGE_VERSION,
      status: this.status === 'stopped' ? 'draining' : this.status,
    };
    try {
      await writeHeartbeat(this.deps.redis, this.deps.keySpace, hb);
    } catch (err) {
      this.deps.logger.warn({ err: describeError(err) }, 'heartbeat write failed (Redis unavailable?)');
    }
  }

  /**
   * Run a batch of blank images through the engine: it compiles kernels (the first call is the
   * slowest) and tells how long a batch takes here, which sizes the lock. A few images are enough
   * (cost is linear in the batch); the full-batch time is extrapolated.
   */
  private async measureBatch(): Promise<{ size: number; ms: number; estimatedFullBatchMs: number }> {
    const { engine } = this.deps;
    const size = Math.min(this.options.batchSize, 4);
    const { inputHeight: h, inputWidth: w } = engine.info;
    const images: PreprocessedImage[] = Array.from({ length: size }, () => ({ data: new Float32Array(h * w * 3), height: h, width: w }));
    const request = { targets: DEFAULT_EXPLAIN_OPTIONS.targets, topK: Math.min(DEFAULT_EXPLAIN_OPTIONS.topK, engine.info.numClasses), method: DEFAULT_EXPLAIN_OPTIONS.method, score: DEFAULT_EXPLAIN_OPTIONS.score };
    await engine.explain({ ...request, images }); // first call: compilation and allocation
    const t0 = performance.now();
    await engine.explain({ ...request, images });
    const ms = performance.now() - t0;
    return { size, ms, estimatedFullBatchMs: (ms / size) * this.options.batchSize };
  }
}

/**
 * Cap on each clean-up step after the grace period, so the whole shutdown stays within
 * `drainTimeoutMs` plus a couple of seconds (25 s + ~2 s fits Kubernetes' default 30 s).
 */
const CLEANUP_STEP_MS = 1_000;
