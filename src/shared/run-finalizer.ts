/**
 * Run completion: when every image of a run has a result, exactly one process writes
 * `manifest.jsonl` (one line per source image, sorted by key) and `summary.json` to the run's output
 * prefix, then marks the run completed.
 *
 * Exactly one writer: the RunStore finalizer lock (SET NX PX), taken only while the run is complete.
 * The lock is renewed while writing, so a slow upload of a huge manifest does not let a second
 * process start. If the writer dies, its lock expires and `sweepUnfinalized` (run periodically by
 * workers) finishes the job.
 *
 * Results can still change while the lock is held: a retried failure that succeeds, or new images
 * a re-enqueue registers. The first moves the run's generation (RunRecord.generation), the second
 * reopens the run and deletes the lock. A finalizer merges the parts as of one generation and
 * publishes (seals the manifest, marks the run completed) only in a Redis step that checks its lock
 * and that generation; when the generation moved it merges again, so the last manifest written is
 * always one of the current generation.
 *
 * The lines are in the run's part files (shared/queue/result-parts.ts), each sorted by key. The
 * finalizer compacts them to at most `fanIn` parts, k-way merges those into the manifest (one line
 * per key, duplicates from retried batches dropped) through an S3 multipart upload, then deletes
 * the parts. Memory depends on `fanIn`, never on the number of lines.
 *
 * Steps, in the order that keeps every crash recoverable:
 *   1. a reopened run's previous manifest is copied in as the oldest part;
 *   2. parts are compacted and merged into manifest.jsonl; the line count must equal the counters;
 *   3. the manifest is sealed (`manifestWritten`, if lock and generation hold): from now on it is
 *      a source of the run's lines;
 *   4. the parts the merge read (and the part index in Redis) are deleted, never a part stored
 *      after the listing, and summary.json is written;
 *   5. `analyse` runs on the written manifest (audit.json, metrics.parquet, report.html) and its
 *      outcome is added to summary.json; then the run is marked completed (if lock and generation
 *      still hold; else back to step 1).
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { RedisConnection } from './queue/redis.js';
import { ConfigError, describeError, TransientError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { RUN_SUMMARY_SCHEMA, type RunAnalysisRecord, type RunManifestLine, type RunSummary } from './manifest.js';
import { DEFAULT_FAN_IN, MANIFEST_PART, allPartsPrefix, compactParts, deleteObjects, entriesAsBody, listMergedParts, mergeSorted, readPart, type StreamUploader } from './queue/result-parts.js';
import type { FinalizerStep, RunRecord, RunStore } from './queue/run-store.js';
import { runTiming } from './run-stats.js';
import type { ObjectStore } from './storage/object-store.js';
import { joinKey, parseS3Uri } from './storage/uri.js';

export const MANIFEST_FILE = 'manifest.jsonl';
export const SUMMARY_FILE = 'summary.json';

export type { StreamUploader };

/**
 * Analyses a run whose manifest.jsonl is written (audit.json, metrics.parquet, report.html under
 * its output prefix). Never throws: a failure comes back as a record for summary.json.
 */
export type RunAnalyser = (run: { runId: string; output: string }) => Promise<RunAnalysisRecord>;

/**
 * A StreamUploader on @aws-sdk/lib-storage: bodies up to one part go out as a single PUT, longer
 * ones as a multipart upload holding at most `queueSize` parts in memory.
 */
export function s3StreamUploader(client: S3Client, options: { partSize?: number; queueSize?: number } = {}): StreamUploader {
  return async (bucket, key, body, contentType) => {
    const upload = new Upload({
      client,
      params: { Bucket: bucket, Key: key, Body: body, ContentType: contentType },
      // 5 MiB is S3's minimum part size; 2 parts in flight bound memory to ~10 MiB per upload.
      partSize: options.partSize ?? 5 * 1024 * 1024,
      queueSize: options.queueSize ?? 2,
      leavePartsOnError: false,
    });
    await upload.done();
  };
}

export interface FinalizerDeps {
  /** The run store; its object store reads and deletes the part files. */
  runs: RunStore;
  /** The connection RunStore uses (lock renewal and release). */
  redis: RedisConnection;
  upload: StreamUploader;
  logger?: Logger;
  now?: () => Date;
  /**
   * Lock owner id of this finalization. Default a fresh `defaultOwner()` per call: an id shared by
   * two finalizations at once (a worker's sweep and a job's) lets each pass the other's lock checks.
   */
  owner?: string;
  /**
   * Finalizer lock lifetime, renewed every third of it while writing: how long a finalizer that
   * died (SIGKILL, OOM) holds the run back before the sweep of another process takes over.
   * Workers pass their job lock duration (the same judgement of how long a live process may go
   * without renewing). Default `DEFAULT_FINALIZER_LOCK_MS`.
   */
  lockTtlMs?: number;
  /** Part files merged at once (streams open together). Default `DEFAULT_FAN_IN`. */
  fanIn?: number;
  /**
   * Merges one finalization makes while results keep changing under it (each change moves the
   * run's generation); then it gives the lock back and leaves the run to the sweep. Default
   * `DEFAULT_FINALIZER_PASSES`.
   */
  maxPasses?: number;
  /**
   * The run's analysis, run after manifest.jsonl (merged, sorted by key) and summary.json are
   * written (workers and enqueue pass `s3RunAnalyser`). Without it a run ends with no audit files.
   */
  analyse?: RunAnalyser;
}

export type FinalizeOutcome =
  | { status: 'written'; summary: RunSummary; manifestKey: string; summaryKey: string }
  /** Another process holds (or held) the lock: it writes the files. */
  | { status: 'claimed-elsewhere' }
  | { status: 'already-completed' }
  /** Results are still missing (or enqueueing continues): nothing to do yet. */
  | { status: 'incomplete'; done: number; failed: number; total: number }
  /**
   * The lock was lost while writing: new images reopened the run (their last result finalizes it
   * again), or another process took over an expired lock. What this call wrote is superseded.
   */
  | { status: 'superseded' }
  /** Results changed during each of `passes` merges: the lock is given back, the sweep retries. */
  | { status: 'unsettled'; passes: number };

// Compare-and-delete / compare-and-extend: only the owner may release or renew its lock.
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const RENEW_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;


/**
 * A result counted during a merge costs one more merge; results changing during three merges in a
 * row mean retries are still streaming in, and the sweep finalizes the run later.
 */
export const DEFAULT_FINALIZER_PASSES = 3;

/**
 * 60 s, the floor of a worker's job lock. It was 10 minutes, which left a run whose finalizer was
 * killed in "finalizing" for 10 minutes (seen in the chaos run).
 */
export const DEFAULT_FINALIZER_LOCK_MS = 60_000;

export function defaultOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`;
}

export function isRunComplete(run: RunRecord): boolean {
  return run.enqueueComplete && run.done + run.failed >= run.total;
}

/** Write the run's manifest and summary if it is complete and no other process does. */
export async function finalizeRun(runId: string, deps: FinalizerDeps): Promise<FinalizeOutcome> {
  const log = deps.logger ?? silentLogger();
  const owner = deps.owner ?? defaultOwner();
  const ttl = deps.lockTtlMs ?? DEFAULT_FINALIZER_LOCK_MS;
  const maxPasses = deps.maxPasses ?? DEFAULT_FINALIZER_PASSES;
  const lockKey = deps.runs.keys(runId).finalizer;
  if (!deps.runs.objectStore) throw new ConfigError('finalizer', 'the RunStore needs an object store to read the part files');

  const before = await deps.runs.requireRun(runId);
  if (before.state === 'completed') return { status: 'already-completed' };
  if (!isRunComplete(before)) return incomplete(before);
  const claim = await deps.runs.claimFinalizer(runId, owner, ttl);
  if (claim === 'completed') return { status: 'already-completed' };
  if (claim === 'held') return { status: 'claimed-elsewhere' };
  if (claim !== 'claimed') return incomplete(await deps.runs.requireRun(runId));

  const renew = setInterval(() => {
    deps.redis.eval(RENEW_LOCK, 1, lockKey, owner, String(ttl)).catch((err: unknown) => log.warn({ runId, err: describeError(err) }, 'finalizer lock renewal failed'));
  }, Math.max(1000, Math.floor(ttl / 3)));
  renew.unref();
  const release = () => deps.redis.eval(RELEASE_LOCK, 1, lockKey, owner).catch(() => undefined);
  try {
    for (let pass = 1; pass <= maxPasses; pass++) {
      // Re-read after claiming: the counters and the generation this pass merges, from one read.
      const run = await deps.runs.requireRun(runId);
      if (!isRunComplete(run)) {
        // New images since the claim (their registration reopened the run and took the lock).
        await release();
        return incomplete(run);
      }
      const outcome = await writePass(deps, run, owner);
      if (outcome !== 'lock-lost' && outcome !== 'generation-moved') return outcome;
      if (outcome === 'lock-lost') {
        log.info({ runId }, 'finalizer lock lost while writing (the run was reopened or taken over); this manifest is superseded');
        return { status: 'superseded' };
      }
      log.info({ runId, pass, generation: run.generation }, 'results changed while finalizing; merging again');
    }
    log.warn({ runId, passes: maxPasses }, 'results kept changing while finalizing; lock given back, the sweep finalizes the run later');
    await release();
    return { status: 'unsettled', passes: maxPasses };
  } catch (err) {
    // Give the lock back at once so the sweeper can retry without waiting for the TTL.
    await release();
    throw err;
  } finally {
    clearInterval(renew);
  }
}

function incomplete(run: RunRecord): FinalizeOutcome {
  return { status: 'incomplete', done: run.done, failed: run.failed, total: run.total };
}

/** Steps 1-5 for the run's generation as of `run`; a step that finds lock or generation gone says so. */
async function writePass(deps: FinalizerDeps, run: RunRecord, owner: string): Promise<FinalizeOutcome | Exclude<FinalizerStep, 'done'>> {
  const log = deps.logger ?? silentLogger();
  const now = deps.now ?? (() => new Date());
  const store = deps.runs.objectStore as ObjectStore;
  const runId = run.id;
  const src = deps.runs.resultSources(run);
  const out = parseS3Uri(run.output, `output of run ${runId}`);
  const summaryKey = joinKey(out.key, SUMMARY_FILE);
  const started = Date.now();

  const { tally, read } = await mergeManifest(store, deps, run, src);
  if (tally.lines !== run.done + run.failed) {
    // A result counted during the merge may add a line; otherwise counters move only after a
    // batch's part file is stored, so this means data was deleted under us: refuse to publish a
    // summary that contradicts the manifest.
    if ((await deps.runs.requireRun(runId)).generation !== run.generation) return 'generation-moved';
    throw new TransientError(`run ${runId}: manifest has ${tally.lines} lines but the run counted ${run.done + run.failed} results`);
  }
  // Only the lock holder of the current generation deletes: a finalizer whose lock expired
  // mid-write leaves the parts to its successor, which may still be reading them, and a part
  // counted after this pass's listing holds a line this manifest lacks.
  const sealed = await deps.runs.sealManifest(runId, owner, run.generation);
  if (sealed !== 'done') return sealed;
  const merged = await listMergedParts(store, src.bucket, allPartsPrefix(out.key), src.partsPrefix, read);
  const left = await deleteObjects(store, src.bucket, merged);
  // The index named the parts just deleted; readers list afresh (the manifest holds their lines).
  await deps.runs.dropPartIndex(runId);
  if (left.length > 0) log.warn({ runId, left: left.length, first: left[0] }, 'some part files could not be deleted; they are harmless and go with the next finalization');

  const finishedAt = now();
  let summary = buildSummary(run, tally, finishedAt);
  const writeSummary = () => deps.upload(out.bucket, summaryKey, Readable.from([Buffer.from(`${JSON.stringify(summary, null, 2)}\n`)]), 'application/json');
  await writeSummary();
  const analysis = await analyseRun(deps, run);
  if (analysis !== undefined) {
    summary = { ...summary, analysis };
    await writeSummary();
  }
  const completed = await deps.runs.markCompleted(runId, owner, run.generation, finishedAt);
  if (completed !== 'done') return completed;
  log.info({ runId, lines: tally.lines, ms: Date.now() - started, manifest: `s3://${src.bucket}/${src.manifestKey}` }, 'run finalized');
  return { status: 'written', summary, manifestKey: src.manifestKey, summaryKey };
}

/**
 * The run's analysis, once its manifest and summary stand. Its outcome is recorded in summary.json;
 * a failure is logged by the analyser and never undoes or delays the manifest.
 */
async function analyseRun(deps: FinalizerDeps, run: RunRecord): Promise<RunAnalysisRecord | undefined> {
  if (deps.analyse === undefined) return undefined;
  const started = performance.now();
  try {
    return await deps.analyse({ runId: run.id, output: run.output });
  } catch (err) {
    // Analysers report their own failures; this only guards the manifest against one that throws.
    const redo = `gradcam-audit report ${run.id}`;
    (deps.logger ?? silentLogger()).warn({ runId: run.id, err: describeError(err), redo }, 'run analysis failed');
    return { status: 'failed', error: describeError(err), seconds: Math.round(performance.now() - started) / 1000, redo };
  }
}

/**
 * Steps 1-2: the run's parts (and previous manifest) merged into manifest.jsonl, tallied on the
 * way; `read` names the input parts merged.
 */
async function mergeManifest(
  store: ObjectStore,
  deps: FinalizerDeps,
  run: RunRecord,
  src: { bucket: string; partsPrefix: string; manifestKey: string },
): Promise<{ tally: Tally; read: Set<string> }> {
  if (run.manifestWritten) {
    // The manifest is about to be overwritten: read it as a part, never while it is being written.
    await deps.upload(src.bucket, `${src.partsPrefix}${MANIFEST_PART}`, (await store.getStream(src.bucket, src.manifestKey)).stream, 'application/x-ndjson');
  }
  // Where a key has an ok and a failed line, the manifest keeps the one that was counted, so
  // summary.json and the run record agree. A result counted during the merge moves the
  // generation, and this manifest is then never sealed.
  const choose = deps.runs.lineChooser(run.id);
  const { inputs, parts } = await compactParts(store, deps.upload, src.bucket, src.partsPrefix, deps.fanIn ?? DEFAULT_FAN_IN, choose);
  const tally = new Tally();
  const merged = mergeSorted(
    parts.map((p) => readPart(store, src.bucket, p)),
    choose,
  );
  await deps.upload(src.bucket, src.manifestKey, entriesAsBody(merged, (e) => tally.add(e.line)), 'application/x-ndjson');
  return { tally, read: new Set(inputs) };
}

/** What summary.json needs, accumulated while streaming: bounded by the number of classes. */
class Tally {
  lines = 0;
  ok = 0;
  failed = 0;
  degenerate = 0;
  private readonly classes = new Map<number, { label?: string; count: number }>();

  add(line: RunManifestLine): void {
    this.lines++;
    if (line.status === 'ok') this.ok++;
    else this.failed++;
    if (line.degenerate) this.degenerate++;
    if (line.status === 'ok' && line.top1) {
      const entry = this.classes.get(line.top1.index) ?? { label: line.top1.label, count: 0 };
      entry.count++;
      this.classes.set(line.top1.index, entry);
    }
  }

  histogram(): RunSummary['classHistogram'] {
    return [...this.classes.entries()]
      .map(([index, e]) => ({ index, ...(e.label !== undefined ? { label: e.label } : {}), count: e.count }))
      .sort((a, b) => b.count - a.count || a.index - b.index);
  }
}

/** Counts and timing; the timing (wall time, processing span, throughput) is defined in run-stats.ts. */
function buildSummary(run: RunRecord, tally: Tally, finishedAt: Date): RunSummary {
  const timing = runTiming(run, tally.lines, finishedAt);
  return {
    schema: RUN_SUMMARY_SCHEMA,
    runId: run.id,
    source: run.source,
    output: run.output,
    counts: { total: tally.lines, ok: tally.ok, failed: tally.failed },
    classHistogram: tally.histogram(),
    degenerateMaps: tally.degenerate,
    throughputImagesPerSecond: timing.throughputImagesPerSecond,
    wallTimeSeconds: timing.wallTimeSeconds,
    processingSeconds: timing.processingSeconds,
    provenance: run.provenance ?? {},
    createdAt: timing.createdAt,
    ...(timing.startedAt ? { startedAt: timing.startedAt } : {}),
    finishedAt: timing.finishedAt,
  };
}

export interface SweepOutcome {
  runId: string;
  outcome: FinalizeOutcome['status'] | 'error';
  error?: string;
}

/**
 * Finalize runs that have every result but no manifest (their finalizer died, or nobody triggered
 * it). Safe to call from every worker on a timer: the lock lets only one of them write each run.
 */
export async function sweepUnfinalized(deps: FinalizerDeps, limit = 100): Promise<SweepOutcome[]> {
  const log = deps.logger ?? silentLogger();
  const out: SweepOutcome[] = [];
  for (const run of await deps.runs.findUnfinalized(limit)) {
    try {
      const r = await finalizeRun(run.id, deps);
      out.push({ runId: run.id, outcome: r.status });
    } catch (err) {
      log.warn({ runId: run.id, err: describeError(err) }, 'sweeper could not finalize run; will retry');
      out.push({ runId: run.id, outcome: 'error', error: describeError(err) });
    }
  }
  return out;
}
