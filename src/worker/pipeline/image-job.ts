/**
 * One queue job = one source image, through the stages
 *   idempotency check → download → decode + preprocess → (dynamic batch) engine → render → upload
 *   → record result (→ finalize the run when it was the last one).
 *
 * Every job runs this function concurrently with the others the worker holds, so while one batch
 * is in the engine, the next images download and decode and the previous ones render and upload.
 * Each image fails alone: its errors never reach its batch-mates.
 *
 * Failure semantics: a permanent error (bad image, missing object, access denied, bad payload) is
 * recorded as the image's result and thrown as BullMQ's `UnrecoverableError` (no retries). A
 * transient one (S3 5xx, network, Redis) is thrown as is, so BullMQ retries it with backoff; on the
 * last attempt it is recorded as failed first.
 */
import { performance } from 'node:perf_hooks';
import { UnrecoverableError, type Job } from 'bullmq';
import { AuditError, describeError, ForeignJobError, InvalidInputError, isRetryable, toError } from '../../shared/errors.js';
import type { ExplainOptions } from '../../shared/explain-options.js';
import type { Logger } from '../../shared/logger.js';
import type { ImageManifest, RunManifestLine } from '../../shared/manifest.js';
import type { AuditJobPayload } from '../../shared/queue/contract.js';
import { PAYLOAD_VERSION } from '../../shared/queue/contract.js';
import type { RecordOutcome, RunStore } from '../../shared/queue/run-store.js';
import type { ObjectStore } from '../../shared/storage/object-store.js';
import { outputKeysFor } from '../../shared/storage/output-keys.js';
import { formatS3Uri } from '../../shared/storage/uri.js';
import { PACKAGE_VERSION } from '../../shared/version.js';
import type { Engine, EngineImageResult, EngineRequest, PreprocessedImage } from '../engine/engine.js';
import { assembleManifest, provenanceOf } from '../explain/assemble.js';
import { decodeImage } from '../image/decode.js';
import type { DecodeOptions } from '../image/decode.js';
import { preprocess } from '../image/preprocess.js';
import { renderHeatmap, renderOverlay } from '../image/render.js';
import type { ClassLabel } from '../model/labels.js';
import type { BatchInfo, DynamicBatcher } from './batcher.js';
import { batchKeyFor, optionsHashFor } from './job-keys.js';
import type { WorkerMetrics } from './metrics.js';
import type { Semaphore } from './semaphore.js';

/** User metadata on every output object; S3 returns the keys lowercased without `x-amz-meta-`. */
export const META_SOURCE_ETAG = 'source-etag';
export const META_OPTIONS_HASH = 'options-hash';

/** What one engine call needs per image; requests in a batch share everything but the image. */
export interface BatchItem {
  image: PreprocessedImage;
  request: Omit<EngineRequest, 'images'>;
}

export type ImageBatcher = DynamicBatcher<BatchItem, EngineImageResult>;

export interface ImageJobContext {
  engine: Engine;
  labels: readonly ClassLabel[] | null;
  /** `--weights` as given, for provenance. */
  weightsSource: string;
  store: ObjectStore;
  runs: RunStore;
  batcher: ImageBatcher;
  uploads: Semaphore;
  metrics: WorkerMetrics;
  logger: Logger;
  workerId: string;
  maxSourceBytes: number;
  decodeOptions?: Partial<DecodeOptions>;
  /** Called when the run has every result; must not throw (the sweeper retries). */
  onRunComplete: (runId: string) => Promise<void>;
  /** Runs whose provenance this process already recorded. */
  provenanceRecorded: Set<string>;
  /** Checks the job against its run record before anything is read; throws ForeignJobError (verify-job.ts). */
  verifyJob: (payload: AuditJobPayload) => Promise<unknown>;
}

export interface ImageJobResult {
  status: 'ok' | 'skipped';
  key: string;
  prediction: string;
}

/** Build the engine batch runner: all items of a batch share one request. */
export function engineBatchRunner(engine: Engine): (key: string, items: BatchItem[]) => Promise<EngineImageResult[]> {
  return (_key, items) => engine.explain({ ...items[0].request, images: items.map((i) => i.image) });
}

export async function processImageJob(job: Job<AuditJobPayload>, ctx: ImageJobContext): Promise<ImageJobResult> {
  const payload = job.data;
  const log = ctx.logger.child({ jobId: job.id, runId: payload?.runId, key: payload?.source?.key, attempt: job.attemptsMade + 1 });
  try {
    validatePayload(payload);
    await ctx.verifyJob(payload);
    return await runStages(job, payload, ctx, log);
  } catch (err) {
    const error = toError(err);
    if (error instanceof ForeignJobError) throw rejectForeign(error, ctx, log);
    const attempts = job.opts.attempts ?? 1;
    const lastAttempt = job.attemptsMade + 1 >= attempts;
    const permanent = !isRetryable(error) || error instanceof UnrecoverableError;
    if (permanent || lastAttempt) {
      const reason = describeError(error);
      try {
        await recordFailure(payload, reason, codeOf(error), ctx);
      } catch (recordErr) {
        if (recordErr instanceof ForeignJobError) throw rejectForeign(recordErr, ctx, log);
        throw recordErr;
      }
      log.warn({ err: reason, permanent }, permanent ? 'image failed (not retryable)' : 'image failed after the last attempt');
      if (permanent && !(error instanceof UnrecoverableError)) throw new UnrecoverableError(reason);
      throw error;
    }
    log.info({ err: describeError(error), attempts }, 'transient failure; BullMQ retries with backoff');
    throw error;
  }
}

async function runStages(job: Job<AuditJobPayload>, payload: AuditJobPayload, ctx: ImageJobContext, log: Logger): Promise<ImageJobResult> {
  const { engine, store, metrics } = ctx;
  const options = payload.options;
  if (options.layer !== undefined && options.layer !== engine.info.layer) {
    throw new InvalidInputError(
      'LAYER_MISMATCH',
      `the run asks for target layer "${options.layer}" but this worker serves "${engine.info.layer}"; start workers with --layer ${options.layer}`,
    );
  }
  const keys = outputKeysFor(payload.output.prefix, payload.source.key, options.overlayFormat);
  const out = payload.output.bucket;
  const uris = { overlay: formatS3Uri({ bucket: out, key: keys.overlay }), heatmap: formatS3Uri({ bucket: out, key: keys.heatmap }), prediction: formatS3Uri({ bucket: out, key: keys.prediction }) };
  const optionsHash = optionsHashFor(options, { modelName: engine.info.modelName, weightsHash: engine.info.weightsHash, layer: engine.info.layer });

  // Idempotency: outputs made from the same source version and options are reused as they are.
  const existing = await store.head(out, keys.prediction);
  if (existing && existing.metadata[META_SOURCE_ETAG] === payload.source.etag && existing.metadata[META_OPTIONS_HASH] === optionsHash) {
    const previous = JSON.parse((await store.get(out, keys.prediction)).body.toString('utf8')) as ImageManifest;
    await recordSuccess(payload, okLine(payload.source.key, previous, uris), ctx);
    metrics.processed.inc({ outcome: 'skipped' });
    log.debug('outputs exist for this source ETag and options; nothing to do');
    return { status: 'skipped', key: payload.source.key, prediction: uris.prediction };
  }

  const timings: Record<string, number> = {};
  let t = performance.now();
  const source = await store.get(payload.source.bucket, payload.source.key, { maxBytes: ctx.maxSourceBytes });
  timings.download = lap();
  metrics.observeStage('download', timings.download);

  const where = formatS3Uri({ bucket: payload.source.bucket, key: payload.source.key });
  const decoded = await decodeImage(source.body, ctx.decodeOptions ?? {}, where);
  const input = preprocess(decoded, { width: engine.info.inputWidth, height: engine.info.inputHeight, resize: options.resize });
  timings.decode = lap();
  metrics.observeStage('decode', timings.decode);

  const request = engineRequestOf(options);
  const { result, batch } = await ctx.batcher.submit(batchKeyFor(options, engine.info.layer), { image: input, request });
  recordBatchTimings(timings, batch, metrics);
  t = performance.now();

  const cam = result.cams[0];
  if (!cam) throw new RangeError(`engine returned no CAM for ${where}`);
  const [overlay, heatmap] = await Promise.all([
    renderOverlay(decoded, cam, { colormap: options.colormap, alpha: options.alpha, format: options.overlayFormat, maxSide: options.maxSide }),
    renderHeatmap(cam),
  ]);
  timings.render = lap();
  metrics.observeStage('render', timings.render);

  const metadata = { [META_SOURCE_ETAG]: source.etag, [META_OPTIONS_HASH]: optionsHash };
  // The ETag of what was actually decoded wins over the listing's: if the object changed since
  // enqueue, the outputs describe the new version and say so.
  const manifestBase = {
    source: { uri: where, bucket: payload.source.bucket, key: payload.source.key, etag: source.etag, size: source.size, format: decoded.format, width: decoded.width, height: decoded.height },
    result,
    engine: engine.info,
    options,
    labels: ctx.labels,
    weightsSource: ctx.weightsSource,
    packageVersion: PACKAGE_VERSION,
    outputs: { overlay: uris.overlay, heatmap: uris.heatmap, manifest: uris.prediction },
    run: { runId: payload.runId, workerId: ctx.workerId, jobId: String(job.id) },
  };
  const manifest = await ctx.uploads.run(async () => {
    // Write order matters: the prediction JSON goes last, so its presence means "complete".
    await store.put(out, keys.overlay, overlay.data, { contentType: overlay.mimeType, metadata });
    await store.put(out, keys.heatmap, heatmap.data, { contentType: heatmap.mimeType, metadata });
    timings.upload = performance.now() - t; // the JSON's own upload cannot be in the JSON
    const m = assembleManifest({ ...manifestBase, timings });
    await store.put(out, keys.prediction, JSON.stringify(m, null, 1), { contentType: 'application/json', metadata });
    return m;
  });
  metrics.observeStage('upload', performance.now() - t);

  if (!ctx.provenanceRecorded.has(payload.runId)) {
    await ctx.runs.setProvenanceOnce(payload.runId, provenanceOf(engine.info, options, ctx.weightsSource, PACKAGE_VERSION));
    ctx.provenanceRecorded.add(payload.runId);
  }
  await recordSuccess(payload, okLine(payload.source.key, manifest, uris), ctx);
  metrics.processed.inc({ outcome: 'ok' });
  log.debug({ timings }, 'image done');
  return { status: 'ok', key: payload.source.key, prediction: uris.prediction };

  function lap(): number {
    const now = performance.now();
    const ms = now - t;
    t = now;
    return ms;
  }
}

function engineRequestOf(options: ExplainOptions): Omit<EngineRequest, 'images'> {
  return { targets: options.targets, topK: options.topK, method: options.method, score: options.score };
}

function recordBatchTimings(timings: Record<string, number>, batch: BatchInfo, metrics: WorkerMetrics): void {
  timings.queueWait = batch.waitedMs;
  timings.infer = batch.runMs / batch.size;
  timings.inferBatchMs = batch.runMs;
  timings.inferBatchSize = batch.size;
  metrics.observeStage('queue_wait', batch.waitedMs);
  metrics.observeStage('infer', timings.infer);
}

function okLine(key: string, manifest: ImageManifest, uris: { overlay: string; heatmap: string; prediction: string }): RunManifestLine {
  const top = manifest.predictions[0];
  const line: RunManifestLine = {
    key,
    status: 'ok',
    outputs: uris,
    degenerate: manifest.targets.some((t) => t.degenerate !== null),
  };
  if (top) line.top1 = { index: top.index, probability: top.probability, ...(top.label !== undefined ? { label: top.label } : {}) };
  return line;
}

async function recordSuccess(payload: AuditJobPayload, line: RunManifestLine, ctx: ImageJobContext): Promise<void> {
  const outcome = await ctx.runs.recordResult(payload.runId, line);
  assertRecorded(outcome, payload);
  if (outcome.complete && outcome.counted) await ctx.onRunComplete(payload.runId);
}

async function recordFailure(payload: AuditJobPayload | undefined, reason: string, code: string, ctx: ImageJobContext): Promise<void> {
  if (!payload?.runId || typeof payload.source?.key !== 'string') {
    ctx.metrics.failed.inc({ reason: code });
    return; // nothing to attribute it to
  }
  const outcome = await ctx.runs.recordResult(payload.runId, { key: payload.source.key, status: 'failed', error: reason });
  assertRecorded(outcome, payload);
  ctx.metrics.failed.inc({ reason: code });
  if (outcome.complete && outcome.counted) await ctx.onRunComplete(payload.runId);
}

/** The run vanished (Redis data loss) or never had this image: the job is not the run's after all. */
function assertRecorded(outcome: RecordOutcome, payload: AuditJobPayload): void {
  if (outcome.rejected === 'unknown-run') throw new ForeignJobError('UNKNOWN_RUN', `run "${payload.runId}" no longer exists (lost with Redis data?); its result was not recorded`);
  if (outcome.rejected === 'not-in-run') throw new ForeignJobError('NOT_IN_RUN', `${payload.source.key} was never enqueued into run ${payload.runId}`);
}

/** A job that is not its run's: never retried, never recorded; BullMQ keeps it as failed with the reason. */
function rejectForeign(error: ForeignJobError, ctx: ImageJobContext, log: Logger): UnrecoverableError {
  ctx.metrics.rejected.inc({ reason: error.code });
  const reason = describeError(error);
  log.warn({ err: reason }, 'job rejected: it does not belong to the run it names');
  return new UnrecoverableError(reason);
}

function codeOf(err: Error): string {
  if (err instanceof AuditError) return err.code;
  return err.name || 'Error';
}

/** A malformed payload never heals: fail it with a message that names the field. */
function validatePayload(p: AuditJobPayload | undefined): asserts p is AuditJobPayload {
  const bad = (what: string): never => {
    throw new InvalidInputError('BAD_PAYLOAD', `job payload ${what}; was it enqueued by a different gradcam-audit version?`);
  };
  if (!p || typeof p !== 'object') bad('is not an object');
  else {
    if (p.v !== PAYLOAD_VERSION) bad(`has version ${String(p.v)}, this worker reads version ${PAYLOAD_VERSION}`);
    if (typeof p.runId !== 'string' || p.runId === '') bad('has no runId');
    if (!p.source || typeof p.source.bucket !== 'string' || typeof p.source.key !== 'string') bad('has no source bucket/key');
    if (!p.output || typeof p.output.bucket !== 'string' || typeof p.output.prefix !== 'string') bad('has no output bucket/prefix');
    if (!p.options || typeof p.options !== 'object') bad('has no options');
  }
}
