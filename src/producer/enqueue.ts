/**
 * List an S3 prefix and enqueue one BullMQ job per image, streaming: each listing page is
 * filtered, registered with the run (RunStore.registerPage adds only keys new to the run) and handed to
 * `queue.addBulk` while the next page is being listed and registered. A few pages are alive at once
 * (the one listed, the one whose jobs are being built, the chunks in flight), so memory does not
 * grow with the number of keys.
 *
 * Idempotence has two layers. The run's key registry makes a re-enqueue count nothing twice, and
 * deterministic job ids (per run epoch, contract.ts) make BullMQ itself ignore a job it already
 * holds. Keys that are registered but have no result yet are offered to BullMQ again: if a previous
 * enqueue died between registering a page and adding its jobs, or their jobs finished without a
 * result, those images would otherwise never run.
 */
import type { JobsOptions, Queue } from 'bullmq';
import type { RedisConnection } from '../shared/queue/redis.js';
import { ConfigError, describeError, NotFoundError, RescanLeaseExpiredError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/logger.js';
import { JOB_NAME, PAYLOAD_VERSION, jobOptionsFor, type AuditJobPayload } from '../shared/queue/contract.js';
import { compareKeys, type MergeSpill, type PartEntry } from '../shared/queue/result-parts.js';
import { finishedJobIds, type QueueShards } from '../shared/queue/shards.js';
import type { OutputsAtEnqueue, PendingImage, RegisterMode, RunRecord, RunStore } from '../shared/queue/run-store.js';
import type { FinalizeOutcome } from '../shared/run-finalizer.js';
import type { ObjectStore, ObjectSummary } from '../shared/storage/object-store.js';
import { ARTIFACT_FOLDERS } from '../shared/artifacts.js';
import { modelMismatch } from '../shared/model-setup.js';
import { formatS3Uri, parseS3Prefix, type S3Location } from '../shared/storage/uri.js';
import { ENQUEUE_DEFAULTS, type EnqueueRequest } from './enqueue-options.js';
import { fanOutListing } from './fan-out-listing.js';
import { createKeyFilter, type KeyFilter, type KeyVerdict } from './key-filter.js';
import { loadTruth } from './truth/load-truth.js';
import type { TruthLookup } from './truth/truth-index.js';

/** Folders a run writes under its output prefix (the artifact table). */
const OUTPUT_FOLDERS = ARTIFACT_FOLDERS;

/** Where enqueue adds jobs: the audit queue, or its shards. */
export type JobSink = Queue<AuditJobPayload> | QueueShards<AuditJobPayload>;

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
  /** `--detach` stopped the listing at `--max-backlog`: the run is still listing. */
  paused?: boolean;
}

export interface ListingDeps {
  store: ObjectStore;
  logger?: Logger;
  now?: () => Date;
  onProgress?: (progress: EnqueueProgress) => void;
  /** Keys per listing page; overrides the request's `--page-size`. */
  pageSize?: number;
  /** Chunks being written to Redis/BullMQ at once. Default `ENQUEUE_DEFAULTS.chunksInFlight`. */
  chunksInFlight?: number;
}

export interface EnqueueDeps extends ListingDeps {
  queue: JobSink;
  runs: RunStore;
  /** RunStore's connection. */
  redis: RedisConnection;
  /** Writes manifest + summary when the run is complete right after enqueueing. */
  finalize: (runId: string) => Promise<FinalizeOutcome>;
  /** How often a full backlog is checked again. Default `ENQUEUE_DEFAULTS.backlogPollMs`. */
  backlogPollMs?: number;
  /**
   * Stops the enqueue between pages (the CLI's SIGINT/SIGTERM): it rejects with the signal's reason
   * after ending its re-listing lease and waiting for the chunks in flight, so running it again
   * resumes cleanly.
   */
  signal?: AbortSignal;
  /**
   * Where a re-listing's check of done keys writes its intermediate merges, so it holds at most
   * `spill.fanIn` of the run's parts open (`mergeBounded`). Without it every part is open at once:
   * fine for a few parts (tests, the demo), gigabytes for a run of millions of images. The CLI
   * always passes one.
   */
  spill?: MergeSpill;
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
  for await (const { images } of scan.pages()) {
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
  // Listed before the record is written, so before this enqueue adds or re-offers any job: what the
  // prefix held until then is in the answer. What appears after it is written by this run's own
  // jobs (or a concurrent run's into the same prefix), which skipping the look only makes again
  // (image-job.ts, `looksForStoredOutputs`).
  const outputsAtEnqueue = await listOutputPrefix(deps.store, request.output, runId, log, deps.signal);
  const { record, created } = await deps.runs.createRun(
    {
      id: runId,
      source: formatS3Uri(request.source),
      output: formatS3Uri(request.output),
      options: request.options,
      model: request.model,
      ...(request.modelIdentity ? { modelIdentity: request.modelIdentity } : {}),
      outputsAtEnqueue,
    },
    scan.now(),
  );
  const output = { bucket: request.output.bucket, prefix: request.output.key };
  const maxBacklog = request.maxBacklog;
  const pollMs = deps.backlogPollMs ?? ENQUEUE_DEFAULTS.backlogPollMs;

  const jobsOf = (images: readonly PendingImage[]) =>
    images.map((o) => {
      // Each job carries its own truth: Redis holds truth only for queued jobs, never per run.
      const t = truth?.lookup(o.key);
      return {
        name: JOB_NAME,
        data: {
          v: PAYLOAD_VERSION,
          runId,
          source: { bucket: request.source.bucket, key: o.key, etag: o.etag, size: o.size },
          output,
          options: request.options,
          ...(request.modelIdentity ? { model: request.modelIdentity } : {}),
          ...(t ? { truth: t } : {}),
        } satisfies AuditJobPayload,
        opts: jobOptionsFor(runId, record.epoch, o.key),
      };
    });

  // Images registered by an earlier enqueue that died before its addBulk (or whose jobs were lost)
  // are offered again; deterministic job ids make that a no-op for live jobs. Bounded by the backlog.
  if (!created) for await (const page of deps.runs.scanPending(runId)) await reoffer(deps.queue, jobsOf(page));

  // A run whose forward listing reached the end once is re-listed whole (new images may sort
  // anywhere); otherwise the listing continues after the run's cursor.
  const rescan = record.listed;
  let cursor = record.cursor;
  const done = rescan ? await openDoneKeys(deps.runs, runId, log, deps.spill) : undefined;
  const maxInFlight = deps.chunksInFlight ?? ENQUEUE_DEFAULTS.chunksInFlight;
  const inFlight: Array<Promise<unknown>> = [];
  // The last registered page's new images, whose jobs are not built yet: building a page's jobs
  // (payloads, ids, BullMQ's serialisation) is most of the producer's CPU per key, so it is done
  // while the next page's registration is on its way to Redis instead of before it is sent. The
  // images are registered already; a crash before their jobs are added is what the re-offer of
  // pending images above repairs, as for a chunk that was in flight.
  let deferred: PendingImage[] = [];
  const addDeferred = (): void => {
    if (deferred.length === 0) return;
    const chunk = deps.queue.addBulk(jobsOf(deferred));
    deferred = [];
    // Observed now, awaited later: a chunk failing while the next page lists must not count
    // as an unhandled rejection; awaiting it below still throws.
    chunk.catch(() => undefined);
    inFlight.push(chunk);
  };
  /** Wait until `n` more images fit under --max-backlog; false when detached (stop listing here). */
  const roomFor = async (n: number): Promise<boolean> => {
    for (;;) {
      deps.signal?.throwIfAborted();
      const backlog = await deps.runs.backlog(runId);
      if (backlog === 0 || backlog + n <= maxBacklog) return true;
      if (request.detach) return false;
      // The last page's images count in the backlog, but their jobs wait for the next page's
      // registration: add them before waiting, or under a backlog of less than two pages nothing
      // would be left for the workers to drain and the wait would never end.
      addDeferred();
      await new Promise((r) => setTimeout(r, pollMs));
    }
  };
  let stopped = false;
  try {
    // Another enqueue of the same run moving the cursor first means it listed those pages: follow
    // it from its cursor instead of listing them again.
    for (let follow = true; follow && !stopped; ) {
      follow = false;
      for await (const { images, last } of scan.pages(rescan ? undefined : cursor || undefined)) {
        deps.signal?.throwIfAborted();
        while (inFlight.length >= maxInFlight) await inFlight.shift();
        scan.progress();
        let candidates: PendingImage[] = images;
        if (done) {
          candidates = [];
          for (const o of images) if (!(await done.has(o.key))) candidates.push(o);
        }
        if (!(await roomFor(candidates.length))) {
          stopped = true;
          break;
        }
        const mode: RegisterMode = done ? { kind: 'rescan', lease: done.lease } : { kind: 'forward', after: cursor, last };
        const registering = deps.runs.registerPage(runId, candidates, mode);
        addDeferred();
        const reg = await registering;
        if (reg.status === 'unknown-run') throw new NotFoundError(`run ${runId} vanished from Redis while enqueueing; run the same enqueue again`);
        if (reg.status === 'lease-expired') {
          throw new RescanLeaseExpiredError(`the re-listing of run ${runId} lost its lease (no renewal reached Redis within ${deps.runs.rescanLeaseMs} ms); nothing was counted twice; run the same enqueue again`);
        }
        if (reg.status === 'cursor-moved') {
          cursor = (await deps.runs.requireRun(runId)).cursor;
          follow = true;
          break;
        }
        cursor = last;
        const fresh = candidates.filter((_, i) => reg.states[i] === 'new');
        // New images in a finalizing or completed run reopen it in the same step that registers
        // them (RunStore.registerPage), so the last new result triggers a fresh finalization.
        if (reg.reopened) log.info({ runId, added: fresh.length }, 'finalizing or completed run reopened for new images');
        if (truth) for (const o of fresh) truthCounts[truth.lookup(o.key) ? 'matched' : 'missing']++;
        scan.counts.added += fresh.length;
        scan.counts.known += images.length - fresh.length;
        deferred = fresh;
      }
    }
    addDeferred();
    for (const chunk of inFlight.splice(0)) await chunk;
  } catch (err) {
    await Promise.allSettled(inFlight);
    throw err;
  } finally {
    await done?.close();
  }
  scan.progress();
  if (truth) scan.counts.truth = { ...truthCounts, unused: stopped ? null : truth.unused() };

  if (stopped) {
    log.info({ runId, cursor, maxBacklog }, 'backlog full: listing stops here (--detach); the same enqueue run again continues from the cursor');
    return { ...scan.result(await deps.runs.requireRun(runId), created), paused: true };
  }
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

/**
 * Whether the run's output prefix may hold outputs already (RunRecord `outputsAtEnqueue`): one
 * listing of at most one key. On 'empty' the run's workers skip each image's look for stored
 * outputs (a HEAD) on its first attempt, which on a first audit would always miss. A listing that
 * fails (a policy that allows PUT but not LIST, a missing bucket, S3 down after the SDK's retries)
 * does not stop the enqueue: the answer is then 'may-exist', and workers look as they always did.
 */
async function listOutputPrefix(store: ObjectStore, output: S3Location, runId: string, log: Logger, signal?: AbortSignal): Promise<OutputsAtEnqueue> {
  try {
    return (await store.hasObjects(output.bucket, output.key, signal ? { signal } : {})) ? 'may-exist' : 'empty';
  } catch (err) {
    signal?.throwIfAborted();
    log.warn({ runId, output: formatS3Uri(output), err: describeError(err) }, 'could not list the output prefix; workers will look for stored outputs of every image (one HEAD each)');
    return 'may-exist';
  }
}

/**
 * Add jobs of images still pending. A job of the same id that completed or failed without its
 * image taking a result (a worker that died between its job's end and the count, a job rejected
 * while the run record was missing) would make BullMQ ignore the add, and the run would wait
 * forever: its record is removed first. A job that is waiting, delayed or active is left alone.
 */
async function reoffer(queue: JobSink, jobs: Array<{ name: string; data: AuditJobPayload; opts: JobsOptions }>): Promise<void> {
  const finished = await finishedJobIds(queue, jobs.map((j) => String(j.opts.jobId)));
  await Promise.all([...finished].map((id) => queue.remove(id)));
  await queue.addBulk(jobs);
}

/**
 * Keys the run already has a line for, asked in listing order: a merge-join against the run's
 * parts and manifest (sorted by key), so a re-listing needs no per-key state. Taken after
 * `beginRescan`, so anything counted later is in the run's `recent` set instead, for as long as
 * the lease is renewed: a timer renews it three times per lease period, and `close` ends it. A
 * lease that lapses anyway (the process stalled, Redis unreachable) makes the next registration
 * fail rather than trust a `recent` set with holes. A key asked out of order (a listing not in S3's
 * order) restarts the merge: slower, never wrong.
 */
async function openDoneKeys(runs: RunStore, runId: string, log: Logger, spill?: MergeSpill): Promise<{ lease: string; has(key: string): Promise<boolean>; close(): Promise<void> }> {
  const lease = (await runs.beginRescan(runId)) ?? '';
  // Renewals run on their own clock, not per page: one page may wait on S3 or --max-backlog for
  // longer than a lease. unref: a producer that fails elsewhere still exits; its lease then expires.
  const renewal = setInterval(() => {
    runs.renewRescan(runId, lease).then(
      (live) => {
        if (!live) log.warn({ runId }, 're-listing lease expired; the next page registration stops this enqueue');
      },
      (err: unknown) => log.warn({ runId, err }, 're-listing lease not renewed; retried at the next tick'),
    );
  }, Math.floor(runs.rescanLeaseMs / 3));
  renewal.unref();
  let run: RunRecord;
  try {
    run = await runs.requireRun(runId);
  } catch (err) {
    clearInterval(renewal);
    await runs.endRescan(runId, lease);
    throw err;
  }
  let it: AsyncIterator<PartEntry> | undefined;
  let current: PartEntry | undefined;
  let last: string | undefined;
  return {
    async has(key) {
      if (!it || (last !== undefined && compareKeys(key, last) < 0)) {
        await it?.return?.();
        it = runs.resultLines(run, spill)[Symbol.asyncIterator]();
        current = (await it.next()).value as PartEntry | undefined;
      }
      last = key;
      while (current && compareKeys(current.key, key) < 0) current = (await it.next()).value as PartEntry | undefined;
      return current?.key === key;
    },
    lease,
    async close() {
      clearInterval(renewal);
      try {
        await it?.return?.();
      } finally {
        await runs.endRescan(runId, lease);
      }
    },
  };
}

function assertSameRun(record: RunRecord, request: EnqueueRequest): void {
  const mismatch: string[] = [];
  if (record.source !== formatS3Uri(request.source)) mismatch.push(`source ${record.source}`);
  if (record.output !== formatS3Uri(request.output)) mismatch.push(`output ${record.output}`);
  if (JSON.stringify(sortKeys(record.options)) !== JSON.stringify(sortKeys(request.options))) mismatch.push('different explain options');
  const modelDiff = record.modelIdentity && request.modelIdentity ? modelMismatch(record.modelIdentity, request.modelIdentity) : null;
  if (modelDiff !== null || !record.modelIdentity !== !request.modelIdentity) {
    mismatch.push(record.modelIdentity ? `model ${record.modelIdentity.weights} (${record.modelIdentity.fingerprint}, ${record.modelIdentity.preprocess})` : 'no model named');
  }
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

  /**
   * Filtered pages of images with the page's last listed key (the cursor to resume after); a page
   * with no image still comes through, so progress and the cursor keep moving.
   */
  async *pages(startAfter?: string): AsyncGenerator<{ images: ObjectSummary[]; last: string }> {
    const pageSize = this.deps.pageSize ?? this.request.pageSize;
    const { bucket, key: prefix } = this.request.source;
    const concurrency = this.request.listConcurrency;
    // Folders in parallel when the store can list them; the pages come in key order either way.
    const listing =
      concurrency > 1 && this.deps.store.listFolders
        ? fanOutListing(this.deps.store, bucket, prefix, { pageSize, concurrency, startAfter })
        : this.deps.store.listPages(bucket, prefix, { pageSize, startAfter });
    for await (const page of listing) {
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
      yield { images, last: (page[page.length - 1] as ObjectSummary).key };
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
