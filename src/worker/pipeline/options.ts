/**
 * The pipeline worker's options: one typed object, defaults in one place, validated once at
 * start-up with messages that name the flag at fault.
 *
 * The worker's defaults that follow the machine's core count, with their reasons:
 * - libuv's threadpool (sharp's decodes, resizes and encodes): one thread per core, set by
 *   `bin/threadpool.js` before anything starts the pool (it cannot be set from here: by the time
 *   this module loads, the pool may already run);
 * - the engine's ONNX Runtime intra-op threads (`--onnx-threads`): every core but one
 *   (`workerEngineThreads`);
 * - S3 sockets (`s3SocketsFor`) and jobs held (`prefetch`): from the batch size, which is what they
 *   must cover, not from the cores.
 */
import { hostname } from 'node:os';
import { DEFAULTS } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';
import { MAX_SOURCE_BYTES } from '../../shared/image-types.js';

export interface PipelineOptions {
  /** Worker id in heartbeats, logs and manifests. Default `<host>-<pid>`. */
  workerId: string;
  /** Largest batch handed to the engine (`--batch-size`). Default 16. */
  batchSize: number;
  /** Longest wait of the oldest queued image for batch-mates (`--max-batch-delay-ms`). Default 50. */
  maxBatchDelayMs: number;
  /**
   * Jobs held beyond the batch in the engine (`--prefetch`). Default `PREFETCH_BATCHES` x
   * `batchSize`: one batch downloading and decoding (then waiting, ready, for the engine) and one
   * rendering and uploading while a third computes. With one batch's worth (the old default) the
   * jobs still uploading the previous batch held half the slots, and the next batch started half
   * full (docs/benchmarks.md).
   */
  prefetch: number;
  /** Concurrent S3 uploads (`--concurrency-upload`). Default 8. */
  uploadConcurrency: number;
  /**
   * Grace period after SIGTERM/SIGINT to finish in-flight batches (`--drain-timeout-ms`). Default
   * 25,000: under Kubernetes' default `terminationGracePeriodSeconds` of 30 s, leaving time to exit.
   */
  drainTimeoutMs: number;
  /**
   * BullMQ lock duration; undefined computes it from a measured warm-up batch as
   * max(`minLockDurationMs`, 10 x batch time) (`--lock-duration-ms`).
   */
  lockDurationMs?: number;
  /** Floor of the computed lock duration. Default 60,000. */
  minLockDurationMs: number;
  /** How often BullMQ looks for jobs whose worker died (`--stalled-interval-ms`). Default 30,000. */
  stalledIntervalMs: number;
  /** Times a job may be recovered from a dead worker before it fails (`--max-stalled-count`). Default 2. */
  maxStalledCount: number;
  /** Heartbeat period. Default 5,000. */
  heartbeatIntervalMs: number;
  /** Period of the sweep for runs whose finalizer died, at most the lock duration. Default 30,000. */
  sweepIntervalMs: number;
  /**
   * How long a job whose run needs another model stays out of the queue before any worker may take
   * it again (plus up to 50% jitter; model-mismatch.ts). Default 15,000.
   */
  handBackDelayMs: number;
  /** Largest source object downloaded, in bytes. Default `MAX_SOURCE_BYTES` (100 MiB), shared with the dashboard's thumbnails. */
  maxSourceBytes: number;
  /** Decoded pixels all in-flight images may hold together (config `GRADCAM_AUDIT_PIXEL_BUDGET_MP`). Default 256 MP. */
  pixelBudget: number;
}

export const PIPELINE_DEFAULTS = Object.freeze({
  batchSize: 16,
  maxBatchDelayMs: 50,
  uploadConcurrency: 8,
  drainTimeoutMs: 25_000,
  minLockDurationMs: 60_000,
  stalledIntervalMs: 30_000,
  maxStalledCount: 2,
  heartbeatIntervalMs: 5_000,
  sweepIntervalMs: 30_000,
  handBackDelayMs: 15_000,
  maxSourceBytes: MAX_SOURCE_BYTES,
  pixelBudget: DEFAULTS.pixelBudgetMegapixels * 1_000_000,
});

/**
 * Pipeline stages besides the engine that each hold a batch's worth of jobs in steady state: the
 * one before it (download, decode, preprocess, waiting for the engine) and the one after it
 * (render, encode, upload, record). The default prefetch is this many batches.
 */
export const PREFETCH_BATCHES = 2;

/**
 * ONNX Runtime intra-op threads for the worker's engine when `--onnx-threads` is not given: every
 * core but one, which is left to the event loop. The event loop is one thread and everything
 * outside the engine starts there (S3 requests, BullMQ, the overlay pass, sharp's job starts), while
 * ONNX Runtime's intra-op threads spin-wait between operators: with every core they compete with it
 * for the whole batch. On a GPU the engine's threads only run the few CPU-placed nodes. `explain`
 * keeps ONNX Runtime's every-core default: it does one thing at a time.
 */
export function workerEngineThreads(cores: number): number {
  return Math.max(1, Math.floor(cores) - 1);
}

/**
 * S3 sockets a worker keeps: one per job it may download at once (batch + prefetch), one per
 * concurrent upload, and a few for the finalizer and sweeps. The SDK's default of 50 would queue
 * requests inside the SDK from `--batch-size 32` on.
 */
export function s3SocketsFor(options: Pick<PipelineOptions, 'batchSize' | 'prefetch' | 'uploadConcurrency'>): number {
  return options.batchSize + options.prefetch + options.uploadConcurrency + 4;
}

/** How many times the measured batch time the lock must last. */
export const LOCK_SAFETY_FACTOR = 10;

export function defaultWorkerId(): string {
  return `${hostname()}-${process.pid}`.replace(/[^A-Za-z0-9_.-]/g, '_');
}

export function resolvePipelineOptions(partial: Partial<PipelineOptions> = {}): PipelineOptions {
  const given = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) as Partial<PipelineOptions>;
  const batchSize = given.batchSize ?? PIPELINE_DEFAULTS.batchSize;
  const o: PipelineOptions = {
    workerId: defaultWorkerId(),
    ...PIPELINE_DEFAULTS,
    prefetch: PREFETCH_BATCHES * batchSize,
    ...given,
  };
  intIn('--batch-size', o.batchSize, 1, 1024);
  intIn('--max-batch-delay-ms', o.maxBatchDelayMs, 0, 60_000);
  intIn('--prefetch', o.prefetch, 0, 4096);
  intIn('--concurrency-upload', o.uploadConcurrency, 1, 256);
  intIn('--drain-timeout-ms', o.drainTimeoutMs, 0, 3_600_000);
  if (o.lockDurationMs !== undefined) intIn('--lock-duration-ms', o.lockDurationMs, 1_000, 3_600_000);
  intIn('minLockDurationMs', o.minLockDurationMs, 1_000, 3_600_000);
  intIn('--stalled-interval-ms', o.stalledIntervalMs, 500, 3_600_000);
  intIn('--max-stalled-count', o.maxStalledCount, 0, 100);
  intIn('heartbeatIntervalMs', o.heartbeatIntervalMs, 100, 600_000);
  intIn('sweepIntervalMs', o.sweepIntervalMs, 100, 3_600_000);
  intIn('handBackDelayMs', o.handBackDelayMs, 0, 3_600_000);
  intIn('maxSourceBytes', o.maxSourceBytes, 1, 2 ** 40);
  intIn('GRADCAM_AUDIT_PIXEL_BUDGET_MP', o.pixelBudget, 1, 2 ** 50);
  if (!/^[A-Za-z0-9_.-]{1,128}$/.test(o.workerId)) {
    throw new ConfigError('--worker-id', `expected 1-128 characters from [A-Za-z0-9_.-], got "${o.workerId}"`);
  }
  return o;
}

/**
 * The lock must outlive the worst batch by a wide margin: TF.js on CPU runs a batch on the main
 * thread, and while it runs no lock renewal can be sent. Ten times a measured batch, never less
 * than the floor.
 */
export function lockDurationFor(measuredBatchMs: number, options: Pick<PipelineOptions, 'lockDurationMs' | 'minLockDurationMs'>): number {
  if (options.lockDurationMs !== undefined) return options.lockDurationMs;
  return Math.max(options.minLockDurationMs, Math.ceil(LOCK_SAFETY_FACTOR * measuredBatchMs));
}

function intIn(flag: string, value: number, min: number, max: number): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(flag, `expected an integer from ${min} to ${max}, got ${String(value)}`);
  }
}
