/**
 * Run completion: when every image of a run has a result, exactly one process writes
 * `manifest.jsonl` (one line per source image) and `summary.json` to the run's output prefix, then
 * the run's analysis (audit.json, metrics.parquet, report.html; its outcome is added to
 * summary.json), then marks the run completed.
 *
 * Exactly one writer: the RunStore finalizer lock (SET NX PX). The lock is renewed while writing, so
 * a slow upload of a huge manifest does not let a second process start. If the writer dies, its lock
 * expires and `sweepUnfinalized` (run periodically by workers) finishes the job; both would write
 * the same complete content, so even a late takeover never produces a wrong manifest.
 *
 * Constant memory: results are streamed from Redis (HSCAN pages) straight into an S3 multipart
 * upload. HSCAN may return an element more than once when the hash is resized between calls, so
 * lines are deduplicated against a temporary Redis set rather than in process memory.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Readable } from 'node:stream';
import type { S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import type { Redis } from 'ioredis';
import { describeError, TransientError } from './errors.js';
import { silentLogger, type Logger } from './logger.js';
import { RUN_SUMMARY_SCHEMA, type RunAnalysisRecord, type RunManifestLine, type RunSummary } from './manifest.js';
import type { RunRecord, RunStore } from './queue/run-store.js';
import { runTiming } from './run-stats.js';
import { joinKey, parseS3Uri } from './storage/uri.js';

export const MANIFEST_FILE = 'manifest.jsonl';
export const SUMMARY_FILE = 'summary.json';

/**
 * Analyses a run whose manifest.jsonl is written (audit.json, metrics.parquet, report.html under
 * its output prefix). Never throws: a failure comes back as a record for summary.json.
 */
export type RunAnalyser = (run: { runId: string; output: string }) => Promise<RunAnalysisRecord>;

/** Writes one object from a stream of unknown length. */
export type StreamUploader = (bucket: string, key: string, body: Readable, contentType: string) => Promise<void>;

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
  runs: RunStore;
  /** The connection RunStore uses (lock renewal/release and the dedupe set). */
  redis: Redis;
  upload: StreamUploader;
  logger?: Logger;
  now?: () => Date;
  /** Lock owner id. Default `<host>:<pid>:<random>`. */
  owner?: string;
  /** Finalizer lock lifetime; renewed every third of it while writing. Default 10 minutes. */
  lockTtlMs?: number;
  /** Results per HSCAN page. Default 1000. */
  scanCount?: number;
  /**
   * The run's analysis, run after manifest.jsonl and summary.json are written (workers and enqueue
   * pass `s3RunAnalyser`). Without it a run ends with no audit files.
   */
  analyse?: RunAnalyser;
}

export type FinalizeOutcome =
  | { status: 'written'; summary: RunSummary; manifestKey: string; summaryKey: string }
  /** Another process holds (or held) the lock: it writes the files. */
  | { status: 'claimed-elsewhere' }
  | { status: 'already-completed' }
  /** Results are still missing (or enqueueing continues): nothing to do yet. */
  | { status: 'incomplete'; done: number; failed: number; total: number };

// Compare-and-delete / compare-and-extend: only the owner may release or renew its lock.
const RELEASE_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end`;
const RENEW_LOCK = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end`;
// KEYS: seen set. ARGV: ttl ms, then members. Returns the 0-based indices of members not seen
// before. The TTL bounds how long a finalizer that died mid-write leaves its set behind.
const MARK_SEEN = `
local fresh = {}
for i = 2, #ARGV do
  if redis.call('SADD', KEYS[1], ARGV[i]) == 1 then fresh[#fresh + 1] = i - 2 end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return fresh
`;

export function defaultOwner(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

export function isRunComplete(run: RunRecord): boolean {
  return run.enqueueComplete && run.done + run.failed >= run.total;
}

/** Write the run's manifest and summary if it is complete and no other process does. */
export async function finalizeRun(runId: string, deps: FinalizerDeps): Promise<FinalizeOutcome> {
  const log = deps.logger ?? silentLogger();
  const now = deps.now ?? (() => new Date());
  const owner = deps.owner ?? defaultOwner();
  const ttl = deps.lockTtlMs ?? 10 * 60_000;
  const lockKey = deps.runs.keys(runId).finalizer;

  const before = await deps.runs.requireRun(runId);
  if (before.state === 'completed') return { status: 'already-completed' };
  if (!isRunComplete(before)) return { status: 'incomplete', done: before.done, failed: before.failed, total: before.total };
  if (!(await deps.runs.claimFinalizer(runId, owner, ttl))) return { status: 'claimed-elsewhere' };

  const renew = setInterval(() => {
    deps.redis.eval(RENEW_LOCK, 1, lockKey, owner, String(ttl)).catch((err: unknown) => log.warn({ runId, err: describeError(err) }, 'finalizer lock renewal failed'));
  }, Math.max(1000, Math.floor(ttl / 3)));
  renew.unref();
  let seenKey: string | undefined;
  try {
    // Re-read after claiming: counters are final now, and the summary must match the manifest.
    const run = await deps.runs.requireRun(runId);
    const out = parseS3Uri(run.output, `output of run ${runId}`);
    const manifestKey = joinKey(out.key, MANIFEST_FILE);
    const summaryKey = joinKey(out.key, SUMMARY_FILE);
    const tally = new Tally();
    // One set per attempt: a finalizer that lost its lock while still writing must not share the
    // set with its successor, or each would drop the lines the other had seen.
    seenKey = `${lockKey}:seen:${randomBytes(6).toString('hex')}`;

    const lines = manifestLines(deps, runId, seenKey, ttl, tally);
    // highWaterMark 1: Readable.from would otherwise read 16 pages ahead of the upload.
    await deps.upload(out.bucket, manifestKey, Readable.from(lines, { highWaterMark: 1 }), 'application/x-ndjson');
    await deps.redis.del(seenKey);

    if (tally.lines !== run.done + run.failed) {
      // Counters and results move together in one Lua script, so this means data was deleted
      // under us; refuse to publish a summary that contradicts the manifest.
      throw new TransientError(`run ${runId}: manifest has ${tally.lines} lines but the run counted ${run.done + run.failed} results`);
    }
    const finishedAt = now();
    let summary = buildSummary(run, tally, finishedAt);
    const writeSummary = () => deps.upload(out.bucket, summaryKey, Readable.from([Buffer.from(`${JSON.stringify(summary, null, 2)}\n`)]), 'application/json');
    await writeSummary();
    const analysis = await analyseRun(deps, run);
    if (analysis !== undefined) {
      summary = { ...summary, analysis };
      await writeSummary();
    }
    await deps.runs.markCompleted(runId, owner, finishedAt);
    log.info({ runId, lines: tally.lines, manifest: `s3://${out.bucket}/${manifestKey}` }, 'run finalized');
    return { status: 'written', summary, manifestKey, summaryKey };
  } catch (err) {
    // Give the lock back at once so the sweeper can retry without waiting for the TTL.
    await deps.redis.eval(RELEASE_LOCK, 1, lockKey, owner).catch(() => undefined);
    if (seenKey) await deps.redis.del(seenKey).catch(() => undefined);
    throw err;
  } finally {
    clearInterval(renew);
  }
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

/** Manifest lines, one Buffer per HSCAN page; duplicates from HSCAN are dropped. */
async function* manifestLines(deps: FinalizerDeps, runId: string, seenKey: string, ttlMs: number, tally: Tally): AsyncGenerator<Buffer> {
  for await (const page of deps.runs.scanResults(runId, deps.scanCount ?? 1000)) {
    const fresh = (await deps.redis.eval(MARK_SEEN, 1, seenKey, String(ttlMs), ...page.map((l) => l.key))) as number[];
    let chunk = '';
    for (const i of fresh) {
      const line = page[i] as RunManifestLine;
      tally.add(line);
      chunk += `${JSON.stringify(line)}\n`;
    }
    if (chunk !== '') yield Buffer.from(chunk, 'utf8');
  }
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
