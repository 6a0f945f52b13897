/**
 * List an S3 prefix and enqueue one BullMQ job per image, streaming: each listing page is
 * filtered, registered with the run (RunStore.addJobs adds only keys new to the run) and handed to
 * `queue.addBulk` while the next page is being listed. At most two pages are alive at once, so
 * memory does not grow with the number of keys.
 *
 * Idempotence has two layers. The run's key registry makes a re-enqueue count nothing twice, and
 * deterministic job ids make BullMQ itself ignore a job it already holds. Keys that are registered
 * but have no result yet are offered to BullMQ again: if a previous enqueue died between
 * registering a page and adding its jobs, those images would otherwise never run.
 */
import type { JobsOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { ConfigError, NotFoundError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { JOB_NAME, PAYLOAD_VERSION, jobIdFor, jobOptionsFor, type AuditJobPayload } from '../shared/queue/contract.js';
import type { RunRecord, RunStore } from '../shared/queue/run-store.js';
import type { FinalizeOutcome } from '../shared/run-finalizer.js';
import type { ObjectStore, ObjectSummary } from '../shared/storage/object-store.js';
import { ARTIFACT_FOLDERS } from '../shared/artifacts.js';
import { formatS3Uri, parseS3Prefix } from '../shared/storage/uri.js';
import { ENQUEUE_DEFAULTS, type EnqueueRequest } from './enqueue-options.js';
import { createKeyFilter, type KeyFilter, type KeyVerdict } from './key-filter.js';
import { loadTruth } from './truth/load-truth.js';
import type { TruthLookup } from './truth/truth-index.js';

/** Folders a run writes under its output prefix (the artifact table). */
const OUTPUT_FOLDERS = ARTIFACT_FOLDERS;

/** The part of a BullMQ `Queue<AuditJobPayload>` enqueue uses. */
export interface JobSink {
  addBulk(jobs: Array<{ name: string; data: AuditJobPayload; opts?: JobsOptions }>): Promise<unknown>;
}

export interface EnqueueCounts {
  /** Objects listed under the prefix. */
  listed: number;
  /** Images that passed the filters. */
  matched: number;
  /** Images new to the run: jobs added. */
  added: number;
  /** Images the run already had (a re-enqueue); counted and queued before. */
  known: number;
  /** Listed objects skipped, by reason. */
  skipped: Record<Exclude<KeyVerdict, 'image'>, number>;
  /** With ground truth: queued images that have it and that lack it, and truth entries no image used. */
  truth?: { matched: number; missing: number; unused: number | null };
}

export interface EnqueueProgress extends EnqueueCounts {
  pages: number;
  elapsedMs: number;
}

export interface EnqueueResult {
  runId: string;
  source: string;
  output: string;
  dryRun: boolean;
  counts: EnqueueCounts;
  /** The first few matched keys (dry runs show them). */
  examples: string[];
  elapsedMs: number;
  keysPerSecond: number;
  /** The run after enqueueing (null for a dry run, which creates nothing). */
  run: RunRecord | null;
  /** Whether this enqueue created the run (false: it extended or re-checked an existing one). */
  created: boolean;
  /** What finalization did when the run was already complete (zero images, fast workers). */
  finalized?: FinalizeOutcome['status'];
}

export interface ListingDeps {
  store: ObjectStore;
  logger?: Logger;
  now?: () => Date;
  onProgress?: (progress: EnqueueProgress) => void;
  /** Keys per listing page. Default `ENQUEUE_DEFAULTS.pageSize`. */
  pageSize?: number;
  /** Chunks being written to Redis/BullMQ at once. Default `ENQUEUE_DEFAULTS.chunksInFlight`. */
  chunksInFlight?: number;
}

export interface EnqueueDeps extends ListingDeps {
  queue: JobSink;
  runs: RunStore;
  /** RunStore's connection; reads results of already-known keys and reopens completed runs. */
  redis: Redis;
  /** Writes manifest + summary when the run is complete right after enqueueing. */
  finalize: (runId: string) => Promise<FinalizeOutcome>;
}

/** Enqueue (or, with `request.dryRun`, only count) the images under the request's source prefix. */
export async function enqueueRun(request: EnqueueRequest, deps: EnqueueDeps | ListingDeps): Promise<EnqueueResult> {
  if (request.dryRun) return listOnly(request, deps);
  if (!('runs' in deps)) throw new TypeError('enqueueRun needs queue, runs, redis and finalize unless dryRun is set');
  return enqueue(request, deps);
}

async function listOnly(request: EnqueueRequest, deps: ListingDeps): Promise<EnqueueResult> {
  const scan = new Scan(request, deps);
  await scan.requireBucket();
  // A dry run validates the truth too, and says how many images it covers.
  const truth = request.truth ? await loadTruth(request.truth, deps.store) : undefined;
  const counts = { matched: 0, missing: 0 };
  for await (const images of scan.pages()) {
    if (truth) for (const o of images) counts[truth.lookup(o.key) ? 'matched' : 'missing']++;
    scan.progress();
  }
  if (truth) scan.counts.truth = { ...counts, unused: truth.unused() };
  return scan.result(null, false);
}

async function enqueue(request: EnqueueRequest, deps: EnqueueDeps): Promise<EnqueueResult> {
  const log = deps.logger ?? silentLogger();
  const scan = new Scan(request, deps);
  await scan.requireBucket();
  // The whole truth source is read and validated first: a bad row stops here, before any job.
  const truth: TruthLookup | undefined = request.truth ? await loadTruth(request.truth, deps.store) : undefined;
  const truthCounts = { matched: 0, missing: 0 };
  const runId = request.runId;
  // Check before createRun, which reopens listing on an existing run: a refused request must leave
  // that run exactly as it was.
  const existing = await deps.runs.getRun(runId);
  if (existing) assertSameRun(existing, request);
  const { record, created } = await deps.runs.createRun(
    { id: runId, source: formatS3Uri(request.source), output: formatS3Uri(request.output), options: request.options, model: request.model },
    scan.now(),
  );
  const keys = deps.runs.keys(runId);
  const output = { bucket: request.output.bucket, prefix: request.output.key };
  let reopened = record.state !== 'completed';

  const processChunk = async (images: ObjectSummary[]): Promise<void> => {
    const fresh = await deps.runs.addJobs(runId, images.map((o) => ({ key: o.key, jobId: jobIdFor(runId, o.key) })));
    const freshSet = new Set(fresh);
    const known = images.filter((_, i) => !freshSet.has(i));
    let retry: ObjectSummary[] = [];
    if (known.length > 0) {
      const results = await deps.redis.hmget(keys.results, ...known.map((o) => o.key));
      retry = known.filter((_, i) => results[i] === null);
    }
    if (fresh.length > 0 && !reopened) {
      // New images in a completed run: its manifest is stale. Reopen it so the last new result
      // triggers a fresh finalization (the permanent lock of the old one would block it).
      await deps.redis.multi().del(keys.finalizer).hdel(keys.record, 'finishedAt').exec();
      await deps.runs.updateRun(runId, { state: 'enqueuing' });
      reopened = true;
      log.info({ runId, added: fresh.length }, 'completed run reopened for new images');
    }
    const jobs = [...fresh.map((i) => images[i] as ObjectSummary), ...retry].map((o) => {
      // Each job carries its own truth: Redis holds truth only for queued jobs, never per run.
      const t = truth?.lookup(o.key);
      if (truth) truthCounts[t ? 'matched' : 'missing']++;
      return {
        name: JOB_NAME,
        data: {
          v: PAYLOAD_VERSION,
          runId,
          source: { bucket: request.source.bucket, key: o.key, etag: o.etag, size: o.size },
          output,
          options: request.options,
          ...(t ? { truth: t } : {}),
        } satisfies AuditJobPayload,
        opts: jobOptionsFor(runId, o.key),
      };
    });
    if (jobs.length > 0) await deps.queue.addBulk(jobs);
    scan.counts.added += fresh.length;
    scan.counts.known += known.length;
  };

  // Up to `chunksInFlight` chunks in Redis while the next page is listed: listing and queueing
  // overlap, and memory stays bounded to chunksInFlight + 1 pages.
  const maxInFlight = deps.chunksInFlight ?? ENQUEUE_DEFAULTS.chunksInFlight;
  const inFlight: Array<Promise<void>> = [];
  try {
    for await (const images of scan.pages()) {
      while (inFlight.length >= maxInFlight) await inFlight.shift();
      scan.progress();
      if (images.length === 0) continue;
      const chunk = processChunk(images);
      // Observed now, awaited later: a chunk failing while the next page lists must not count as
      // an unhandled rejection; awaiting it below still throws.
      chunk.catch(() => undefined);
      inFlight.push(chunk);
    }
    for (const chunk of inFlight.splice(0)) await chunk;
  } catch (err) {
    await Promise.allSettled(inFlight);
    throw err;
  }
  scan.progress();
  if (truth) scan.counts.truth = { ...truthCounts, unused: truth.unused() };

  const finished = await deps.runs.finishEnqueue(runId, scan.now());
  let finalized: FinalizeOutcome['status'] | undefined;
  if (finished.enqueueComplete && finished.done + finished.failed >= finished.total && finished.state !== 'completed') {
    // Zero images, or workers that finished everything while we were still listing: nobody else
    // will see the last result arrive, so finalize here.
    finalized = (await deps.finalize(runId)).status;
  }
  if (scan.counts.matched === 0) log.warn({ runId, source: formatS3Uri(request.source), listed: scan.counts.listed }, 'no images matched: the run completes empty');
  return scan.result(await deps.runs.requireRun(runId), created, finalized);
}

function assertSameRun(record: RunRecord, request: EnqueueRequest): void {
  const mismatch: string[] = [];
  if (record.source !== formatS3Uri(request.source)) mismatch.push(`source ${record.source}`);
  if (record.output !== formatS3Uri(request.output)) mismatch.push(`output ${record.output}`);
  if (JSON.stringify(sortKeys(record.options)) !== JSON.stringify(sortKeys(request.options))) mismatch.push('different explain options');
  if (mismatch.length > 0) {
    throw new ConfigError('--run-id', `run "${record.id}" already exists with ${mismatch.join(', ')}; re-enqueue it with the same arguments or choose another --run-id`);
  }
}

function sortKeys(o: object): Array<[string, unknown]> {
  return Object.entries(o)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Listing + filtering + counters + progress, shared by the dry run and the real enqueue. */
class Scan {
  readonly counts: EnqueueCounts = {
    listed: 0,
    matched: 0,
    added: 0,
    known: 0,
    skipped: { 'folder-marker': 0, output: 0, 'not-image': 0, excluded: 0 },
  };
  readonly examples: string[] = [];
  private readonly filter: KeyFilter;
  private readonly started: number;
  private pageCount = 0;

  constructor(
    private readonly request: EnqueueRequest,
    private readonly deps: ListingDeps,
  ) {
    const out = request.output;
    // The prefix comparisons below are plain string comparisons, sound only without dot segments.
    // parseEnqueueRequest refuses them; a request built in code must not slip past.
    parseS3Prefix(formatS3Uri(request.source), 'SOURCE');
    parseS3Prefix(formatS3Uri(out), '--output');
    // Outputs land in the artifact folders under the output prefix; when that lies
    // inside the source (even `--output` = source), a re-enqueue would audit last run's heatmaps.
    // With default outputs, every run's output root is skipped. A source pointed inside one of these
    // folders on purpose is respected.
    const skip: string[] = [];
    if (out.bucket === request.source.bucket) {
      const root = ENQUEUE_DEFAULTS.outputRoot;
      const candidates = out.key === `${root}${request.runId}/` ? [root] : OUTPUT_FOLDERS.map((f) => `${out.key}${f}/`);
      for (const c of candidates) if (!request.source.key.startsWith(c)) skip.push(c);
    }
    this.filter = createKeyFilter({ prefix: request.source.key, include: request.include, exclude: request.exclude, skipPrefixes: skip });
    this.started = this.now().getTime();
  }

  now(): Date {
    return this.deps.now?.() ?? new Date();
  }

  async requireBucket(): Promise<void> {
    if (!(await this.deps.store.bucketExists(this.request.source.bucket))) {
      throw new NotFoundError(`bucket "${this.request.source.bucket}" does not exist (source ${formatS3Uri(this.request.source)}); check the name, AWS_ENDPOINT_URL_S3 and AWS_REGION`);
    }
  }

  /** Filtered pages of images; an empty array for a page with no image keeps progress ticking. */
  async *pages(): AsyncGenerator<ObjectSummary[]> {
    const pageSize = this.deps.pageSize ?? ENQUEUE_DEFAULTS.pageSize;
    for await (const page of this.deps.store.listPages(this.request.source.bucket, this.request.source.key, { pageSize })) {
      this.pageCount++;
      this.counts.listed += page.length;
      const images: ObjectSummary[] = [];
      for (const o of page) {
        const verdict = this.filter(o.key);
        if (verdict !== 'image') {
          this.counts.skipped[verdict]++;
          continue;
        }
        images.push(o);
        if (this.examples.length < ENQUEUE_DEFAULTS.examples) this.examples.push(o.key);
      }
      this.counts.matched += images.length;
      yield images;
    }
  }

  progress(): void {
    this.deps.onProgress?.({ ...this.counts, skipped: { ...this.counts.skipped }, pages: this.pageCount, elapsedMs: this.now().getTime() - this.started });
  }

  result(run: RunRecord | null, created: boolean, finalized?: FinalizeOutcome['status']): EnqueueResult {
    const elapsedMs = Math.max(1, this.now().getTime() - this.started);
    return {
      runId: this.request.runId,
      source: formatS3Uri(this.request.source),
      output: formatS3Uri(this.request.output),
      dryRun: this.request.dryRun,
      counts: { ...this.counts, skipped: { ...this.counts.skipped }, ...(this.counts.truth ? { truth: { ...this.counts.truth } } : {}) },
      examples: [...this.examples],
      elapsedMs,
      keysPerSecond: Math.round((this.counts.matched / elapsedMs) * 1000),
      run,
      created,
      ...(finalized ? { finalized } : {}),
    };
  }
}
