/**
 * One queue job = one source image, through the stages
 *   idempotency check (skipped on a first attempt when the run's output prefix was empty at
 *   enqueue) → download → the image core (decode + preprocess → dynamic batch → engine →
 *   metrics → render) → upload → record result (→ finalize the run when it was the last one).
 *
 * Every job runs this function concurrently with the others the worker holds, so while one batch
 * is in the engine, the next images download and decode and the previous ones render and upload.
 * Each image fails alone: its errors never reach its batch-mates.
 *
 * Failure semantics: a permanent error (bad image, missing object, access denied) is recorded as
 * the image's result and thrown as BullMQ's `UnrecoverableError` (no retries). A transient one (S3
 * 5xx, network, Redis) is thrown as is, so BullMQ retries it with backoff; on the last attempt it
 * is recorded as failed first. Only a job checked against its run (verifyJob) records anything: one
 * that fails before or in its check (a malformed payload, a foreign job) fails unrecorded.
 */
import { performance } from 'node:perf_hooks';
import { UnrecoverableError, type Job } from 'bullmq';
import { AuditError, describeError, ForeignJobError, InvalidInputError, isRetryable, ModelMismatchError, NotPendingJobError, toError } from '../../shared/errors.js';
import { COMPLETION_ARTIFACT, mapArtifactPaths } from '../../shared/artifacts.js';
import type { Logger } from '../../shared/logger.js';
import { failedLineOf, IMAGE_MANIFEST_SCHEMA, manifestLineOf, type ImageManifest, type RunManifestLine } from '../../shared/manifest.js';
import type { AuditJobPayload } from '../../shared/queue/contract.js';
import type { RecordOutcome, RunRecord, RunStore } from '../../shared/queue/run-store.js';
import type { ObjectStore } from '../../shared/storage/object-store.js';
import { outputKeysFor } from '../../shared/storage/output-keys.js';
import { formatS3Uri } from '../../shared/storage/uri.js';
import { PACKAGE_VERSION } from '../../shared/version.js';
import { engineRequestOf, explainImage, writeArtifacts, type EngineRequestOptions, type ImageCoreDeps, type InferOne } from '../core/image-core.js';
import { provenanceOf, roundTimings } from '../core/prediction-document.js';
import type { Engine, EngineImageResult, PreprocessedImage } from '../engine/engine.js';
import type { ClassLabel } from '../model/labels.js';
import type { ServedModel } from '../model/model-card.js';
import { leaveForMatchingWorker } from './model-mismatch.js';
import { assertPayloadVersion, FOREIGN_JOB_MESSAGE, validatePayload } from './verify-job.js';
import type { Arrival, BatchInfo, DynamicBatcher } from './batcher.js';
import { batchKeyFor, outputsHashFor } from './job-keys.js';
import type { WorkerMetrics } from './metrics.js';
import type { Semaphore } from './semaphore.js';

/** User metadata on every output object; S3 returns the keys lowercased without `x-amz-meta-`. */
export const META_SOURCE_ETAG = 'source-etag';
export const META_OPTIONS_HASH = 'options-hash';

/** What one engine call needs per image; requests in a batch share everything but the image. */
export interface BatchItem {
  image: PreprocessedImage;
  request: EngineRequestOptions;
  /** Seeds the image's random faithfulness region (FNV-1a of its key). */
  seed: number;
}

export type ImageBatcher = DynamicBatcher<BatchItem, EngineImageResult>;

export interface ImageJobContext {
  engine: Engine;
  labels: readonly ClassLabel[] | null;
  /** `--weights` as given, for provenance. */
  weightsSource: string;
  /** The model's preprocessing, provenance and identity (model-card.ts). */
  model: ServedModel;
  store: ObjectStore;
  runs: RunStore;
  /** The per-image core's dependencies (engine info, labels, matcher, the batched engine call, decode options). */
  core: ImageCoreDeps;
  uploads: Semaphore;
  metrics: WorkerMetrics;
  logger: Logger;
  workerId: string;
  maxSourceBytes: number;
  /** PipelineOptions.handBackDelayMs. */
  handBackDelayMs: number;
  /** Called when the run has every result; must not throw (the sweeper retries). */
  onRunComplete: (runId: string) => Promise<void>;
  /** Runs whose provenance this process already recorded. */
  provenanceRecorded: Set<string>;
  /**
   * Checks the job against its run record before anything is read; throws ForeignJobError
   * (verify-job.ts). Returns what the stages need of the run record it checked against.
   */
  verifyJob: (payload: AuditJobPayload) => Promise<JobRun>;
}

/** What a job's stages read from its run's record: whether to look for stored outputs (`looksForStoredOutputs`). */
export type JobRun = Pick<RunRecord, 'outputsAtEnqueue'>;

/**
 * Whether a job looks for stored outputs (one HEAD of its prediction document) before making them.
 * It does unless its run's output prefix held no object when the run was enqueued (every enqueue of
 * the run found it empty) and this is the job's first attempt: then the look could only find outputs
 * this same run wrote, and would miss on every image of a first audit.
 *
 * Skipping it is never wrong, only at worst work done twice. Outputs found while the prefix was
 * 'empty' at enqueue can only come from this run's own deliveries (a stalled job that BullMQ
 * offers again, with attemptsMade unchanged; a job re-offered by a re-enqueue, against a run record
 * up to RunRecordCache's TTL old) or from another run writing into the same prefix at the same
 * time. Making such an image again overwrites its outputs whole, and the run store counts each image
 * once however many deliveries record it (RunStore.recordResult), so the manifest holds one line
 * per image either way. A retried job (attemptsMade > 0) looks: its earlier attempt may have written
 * outputs. So does any doubt: a run record without the answer (a run created by an older version).
 */
export function looksForStoredOutputs(run: JobRun, attemptsMade: number): boolean {
  return run.outputsAtEnqueue !== 'empty' || attemptsMade > 0;
}

export interface ImageJobResult {
  status: 'ok' | 'skipped';
  key: string;
  prediction: string;
}

/**
 * Build the engine batch runner: all items of a batch share one request. `batchSize` also bounds the
 * rows of any extra forward runs (Score-CAM's masked copies), so they fit where a full batch fits.
 */
export function engineBatchRunner(engine: Engine, batchSize: number): (key: string, items: BatchItem[]) => Promise<EngineImageResult[]> {
  return (_key, items) => engine.explain({ ...items[0].request, images: items.map((i) => i.image), forwardRows: batchSize, imageSeeds: items.map((i) => i.seed) });
}

/** @param token the job's lock token from BullMQ's processor, needed to hand a job back (model mismatch) */
export async function processImageJob(job: Job<AuditJobPayload>, ctx: ImageJobContext, token?: string): Promise<ImageJobResult> {
  const payload = job.data;
  const log = ctx.logger.child({ jobId: job.id, runId: payload?.runId, key: payload?.source?.key, attempt: job.attemptsMade + 1 });
  // Whatever a job says is only believed once verifyJob has checked it against its run: until then
  // it may be anyone's (a malformed or forged payload, or one whose check could not run), and a
  // failure recorded on its word would land in a run it does not belong to.
  let verified = false;
  try {
    validatePayload(payload);
    const run = await ctx.verifyJob(payload);
    verified = true;
    assertPayloadVersion(payload);
    return await runStages(job, payload, run, ctx, log);
  } catch (err) {
    const error = toError(err);
    if (error instanceof NotPendingJobError) {
      // A second delivery of a job whose result is already counted: its outputs say so. Nothing to
      // record (the count is done); the job completes instead of failing as a stranger's.
      // A failed look leaves the job to the error it had.
      const stored = await storedOutputs(payload, ctx).catch(() => null);
      if (stored) {
        ctx.metrics.processed.inc({ outcome: 'skipped' });
        log.info('the image already has its result in the run (a job delivered again); nothing to do');
        return { status: 'skipped', key: payload.source.key, prediction: stored.prediction };
      }
    }
    if (error instanceof ForeignJobError) throw rejectForeign(error, ctx, log);
    if (error instanceof ModelMismatchError) throw await leaveForMatchingWorker(job, token, error, ctx, log);
    const attempts = job.opts.attempts ?? 1;
    const lastAttempt = job.attemptsMade + 1 >= attempts;
    const permanent = !isRetryable(error) || error instanceof UnrecoverableError;
    if ((permanent || lastAttempt) && !verified) {
      // Never checked: it ends here, recorded nowhere. If it was the run's after all (its check
      // failed for a transient reason on the last attempt), the worker's failed-job backstop
      // checks it again and records the failure then.
      throw rejectForeign(new ForeignJobError('UNVERIFIED', `job was not checked against its run: ${describeError(error)}`, { cause: error }), ctx, log);
    }
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

/** Where a job's outputs go, and the hash of what they are made from (source version aside). */
function outputsOf(payload: AuditJobPayload, ctx: ImageJobContext) {
  const { engine } = ctx;
  const keys = outputKeysFor(payload.output.prefix, payload.source.key, payload.options.overlayFormat);
  const out = payload.output.bucket;
  const uris = mapArtifactPaths(keys, (key) => formatS3Uri({ bucket: out, key }));
  const outputsHash = outputsHashFor(payload.options, { modelName: engine.info.modelName, weightsHash: engine.info.weightsHash, layer: engine.info.layer }, payload.truth);
  return { keys, out, uris, outputsHash, prediction: uris.prediction };
}

/**
 * The job's outputs as stored, when they were made from this source version (ETag), options and
 * truth with today's document schema; null otherwise (outputs of an older schema are made again,
 * so every line carries today's fields).
 */
async function storedOutputs(payload: AuditJobPayload, ctx: ImageJobContext): Promise<(ReturnType<typeof outputsOf> & { previous: ImageManifest }) | null> {
  const o = outputsOf(payload, ctx);
  const existing = await ctx.store.head(o.out, o.keys[COMPLETION_ARTIFACT]);
  if (!existing || existing.metadata[META_SOURCE_ETAG] !== payload.source.etag || existing.metadata[META_OPTIONS_HASH] !== o.outputsHash) return null;
  const previous = JSON.parse((await ctx.store.get(o.out, o.keys[COMPLETION_ARTIFACT])).body.toString('utf8')) as ImageManifest;
  return previous.schema === IMAGE_MANIFEST_SCHEMA ? { ...o, previous } : null;
}

async function runStages(job: Job<AuditJobPayload>, payload: AuditJobPayload, run: JobRun, ctx: ImageJobContext, log: Logger): Promise<ImageJobResult> {
  const { engine, store, metrics } = ctx;
  const options = payload.options;
  if (options.layer !== undefined && options.layer !== engine.info.layer) {
    throw new InvalidInputError(
      'LAYER_MISMATCH',
      `the run asks for target layer "${options.layer}" but this worker serves "${engine.info.layer}"; start workers with --layer ${options.layer}`,
    );
  }
  // Idempotency: outputs made from the same source version, options and truth are reused as they
  // are, unless none can be there but this run's own (`looksForStoredOutputs`).
  const stored = looksForStoredOutputs(run, job.attemptsMade) ? await storedOutputs(payload, ctx) : null;
  if (stored) {
    await recordSuccess(payload, manifestLineOf(payload.source.key, stored.previous, stored.uris), ctx);
    metrics.processed.inc({ outcome: 'skipped' });
    log.debug('outputs exist for this source ETag, options and truth; nothing to do');
    return { status: 'skipped', key: payload.source.key, prediction: stored.prediction };
  }
  const { keys, out, uris, outputsHash } = outputsOf(payload, ctx);

  let t = performance.now();
  const source = await store.get(payload.source.bucket, payload.source.key, { maxBytes: ctx.maxSourceBytes });
  const download = performance.now() - t;
  metrics.observeStage('download', download);

  const where = formatS3Uri({ bucket: payload.source.bucket, key: payload.source.key });
  // The ETag of what was actually decoded wins over the listing's: if the object changed since
  // enqueue, the outputs describe the new version and say so.
  const core = await explainImage(
    {
      bytes: source.body,
      source: { uri: where, bucket: payload.source.bucket, key: payload.source.key, etag: source.etag },
      options,
      ...(payload.truth ? { truth: payload.truth } : {}),
      outputs: uris,
      run: { runId: payload.runId, workerId: ctx.workerId, jobId: String(job.id) },
      timings: { download },
    },
    ctx.core,
  );
  const tm = core.document.timings;
  metrics.observeStage('decode', (tm.decode ?? 0) + (tm.preprocess ?? 0));
  metrics.observeStage('render', tm.render ?? 0);

  const metadata = { [META_SOURCE_ETAG]: source.etag, [META_OPTIONS_HASH]: outputsHash };
  t = performance.now();
  await ctx.uploads.run(() =>
    writeArtifacts(
      core,
      async (spec, data, contentType) => {
        await store.put(out, keys[spec.name], data, { contentType, metadata });
      },
      (doc) => {
        doc.timings.upload = roundTimings({ upload: performance.now() - t }).upload; // the document's own upload cannot be in it
      },
    ),
  );
  metrics.observeStage('upload', performance.now() - t);

  if (!ctx.provenanceRecorded.has(payload.runId)) {
    await ctx.runs.setProvenanceOnce(payload.runId, provenanceOf(engine.info, options, ctx.weightsSource, PACKAGE_VERSION, ctx.model.provenance));
    ctx.provenanceRecorded.add(payload.runId);
  }
  await recordSuccess(payload, manifestLineOf(payload.source.key, core.document, uris), ctx);
  metrics.processed.inc({ outcome: 'ok' });
  log.debug({ timings: core.document.timings }, 'image done');
  return { status: 'ok', key: payload.source.key, prediction: uris.prediction };
}

/**
 * The worker's engine call for one image: through the dynamic batcher, with the batch's timings.
 * `arrival` is the image's announcement to the batcher (`batcher.expect()` when its job started),
 * settled by the submit.
 */
export function batchedInfer(batcher: ImageBatcher, metrics: WorkerMetrics, defaultLayer: string, arrival?: Arrival): InferOne {
  return async (image, options, seed) => {
    const { result, batch } = await batcher.submit(batchKeyFor(options, defaultLayer), { image, request: engineRequestOf(options), seed }, arrival);
    metrics.observeStage('queue_wait', batch.waitedMs);
    metrics.observeStage('infer', batch.runMs / batch.size);
    return { result, timings: batchTimingsOf(batch) };
  };
}

/** How a batch served an image, as the prediction document records it (ms; the engine's share is the batch time ÷ its size). */
export function batchTimingsOf(batch: BatchInfo): Record<string, number> {
  return { queueWait: batch.waitedMs, infer: batch.runMs / batch.size, inferBatchMs: batch.runMs, inferBatchSize: batch.size };
}

async function recordSuccess(payload: AuditJobPayload, line: RunManifestLine, ctx: ImageJobContext): Promise<void> {
  const outcome = await ctx.runs.recordResult(payload.runId, line);
  assertRecorded(outcome, payload);
  if (outcome.complete && outcome.counted) await ctx.onRunComplete(payload.runId);
}

async function recordFailure(payload: AuditJobPayload, reason: string, code: string, ctx: ImageJobContext): Promise<void> {
  const outcome = await ctx.runs.recordResult(payload.runId, failedLineOf(payload.source.key, reason));
  assertRecorded(outcome, payload);
  ctx.metrics.failed.inc({ reason: code });
  if (outcome.complete && outcome.counted) await ctx.onRunComplete(payload.runId);
}

/**
 * The run vanished (Redis data loss): the job is not the run's after all. An image the run never
 * had is refused before any work (`verifyJob`: NotPendingJobError); were one to reach recording, it
 * would not be counted, like a duplicate delivery.
 */
function assertRecorded(outcome: RecordOutcome, payload: AuditJobPayload): void {
  if (outcome.rejected === 'unknown-run') throw new ForeignJobError('UNKNOWN_RUN', `run "${payload.runId}" no longer exists (lost with Redis data?); its result was not recorded`);
}

/** A job that is not its run's: never retried, never recorded; BullMQ keeps it as failed with the reason. */
function rejectForeign(error: ForeignJobError, ctx: ImageJobContext, log: Logger): UnrecoverableError {
  ctx.metrics.rejected.inc({ reason: error.code });
  const reason = describeError(error);
  log.warn({ err: reason }, FOREIGN_JOB_MESSAGE);
  return new UnrecoverableError(reason);
}

function codeOf(err: Error): string {
  if (err instanceof AuditError) return err.code;
  return err.name || 'Error';
}
