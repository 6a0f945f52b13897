/**
 * Progress numbers of a run, and the one definition of throughput that `status`, the dashboard
 * (runs table, run tiles, chart) and `summary.json` all use. Pure functions of a RunRecord, its
 * throughput buckets and the current time.
 *
 * Throughput = images finished (ok + failed) in a window ÷ the seconds of that window that lie
 * inside the run's processing span. The span runs from `startedAt` (a worker took the run's first
 * image) to `finishedAt` (manifest and summary written), or to now while the run is open. So:
 * - the run's throughput (summary.json, a completed run everywhere) is finished images ÷ the span;
 * - the current throughput (a running run, and its ETA) is the same over the span's last minute;
 * - each bar of the chart is the same over its bin, and the bars of a run average to its throughput
 *   (time-weighted).
 * No window counts time before the first image was taken (waiting for a worker, loading a model)
 * or after the run completed. The wall time from enqueue (`createdAt`) is reported separately.
 */
import { THROUGHPUT_BUCKET_SECONDS, type RunRecord, type RunState } from './queue/run-store.js';

/** Window of the current rate: the last minute, as `status` and the dashboard show. */
export const RATE_WINDOW_SECONDS = 60;

export interface ThroughputBucket {
  /** Bucket start, epoch seconds (a multiple of the bucket width). */
  t: number;
  count: number;
}

/** The run's processing span, epoch milliseconds; null before a worker took its first image. */
export interface ProcessingSpan {
  startMs: number;
  endMs: number;
}

export interface RunStats {
  runId: string;
  state: RunState;
  total: number;
  done: number;
  failed: number;
  /** done + failed. */
  processed: number;
  remaining: number;
  /** processed / total in [0, 1]; 1 for an empty, completed run. */
  fraction: number;
  /**
   * Images per second: over the last minute of the span while the run is open, over the whole span
   * once it is completed (`rateWindow` says which).
   */
  imagesPerSecond: number;
  rateWindow: 'last-minute' | 'run';
  /** Seconds until every known image is processed at the current rate; null when unknown. */
  etaSeconds: number | null;
  /** False while listing continues: `total` (and so the ETA) can still grow. */
  totalFinal: boolean;
  /** Seconds since the run was created (until it finished, for completed runs). */
  elapsedSeconds: number;
}

export function processingSpan(run: Pick<RunRecord, 'state' | 'startedAt' | 'finishedAt'>, nowMs: number): ProcessingSpan | null {
  const startMs = parseTime(run.startedAt);
  if (startMs === undefined) return null;
  const finished = run.state === 'completed' ? parseTime(run.finishedAt) : undefined;
  return { startMs, endMs: Math.max(startMs, finished ?? nowMs) };
}

/**
 * Images over the seconds they took. At least one second: a span of a few milliseconds (a run of
 * one cached image) must not read as thousands of images per second.
 */
export function imagesPerSecondOver(images: number, seconds: number): number {
  return images > 0 ? images / Math.max(1, seconds) : 0;
}

/**
 * The current rate: images of the buckets of the last `windowSeconds` (whole buckets, the current
 * partial one included), over the time from the window's first bucket, or from the span's start
 * when that is later, to now.
 */
export function recentImagesPerSecond(
  buckets: readonly ThroughputBucket[],
  nowMs: number,
  options: { windowSeconds?: number; bucketSeconds?: number; startedAtMs?: number } = {},
): number {
  const width = options.bucketSeconds ?? THROUGHPUT_BUCKET_SECONDS;
  const windowSeconds = options.windowSeconds ?? RATE_WINDOW_SECONDS;
  const nowS = nowMs / 1000;
  const current = Math.floor(nowS / width) * width;
  // Whole buckets only, so a bucket is never half counted; the current one is partial anyway.
  const from = current - (Math.ceil(windowSeconds / width) - 1) * width;
  let count = 0;
  for (const b of buckets) if (b.t >= from && b.t <= current) count += b.count;
  const start = Math.max(from, options.startedAtMs !== undefined ? options.startedAtMs / 1000 : from);
  return imagesPerSecondOver(count, nowS - start);
}

export function computeRunStats(run: RunRecord, buckets: readonly ThroughputBucket[], nowMs: number, windowSeconds = RATE_WINDOW_SECONDS): RunStats {
  const processed = run.done + run.failed;
  const remaining = Math.max(0, run.total - processed);
  const created = parseTime(run.createdAt);
  const span = processingSpan(run, nowMs);
  const completed = run.state === 'completed';
  let imagesPerSecond: number;
  let etaSeconds: number | null;
  if (completed) {
    imagesPerSecond = span ? imagesPerSecondOver(processed, (span.endMs - span.startMs) / 1000) : 0;
    etaSeconds = 0;
  } else {
    imagesPerSecond = recentImagesPerSecond(buckets, nowMs, { windowSeconds, startedAtMs: span?.startMs });
    etaSeconds = remaining === 0 ? (run.enqueueComplete ? 0 : null) : imagesPerSecond > 0 ? remaining / imagesPerSecond : null;
  }
  const finished = parseTime(run.finishedAt);
  const end = completed && finished !== undefined ? finished : nowMs;
  return {
    runId: run.id,
    state: run.state,
    total: run.total,
    done: run.done,
    failed: run.failed,
    processed,
    remaining,
    fraction: run.total > 0 ? Math.min(1, processed / run.total) : completed ? 1 : 0,
    imagesPerSecond: round2(imagesPerSecond),
    rateWindow: completed ? 'run' : 'last-minute',
    etaSeconds: etaSeconds === null ? null : Math.ceil(etaSeconds),
    totalFinal: run.enqueueComplete,
    elapsedSeconds: created !== undefined ? Math.max(0, Math.round((end - created) / 1000)) : 0,
  };
}

/** The timing block of summary.json: every duration follows from the timestamps next to it. */
export interface RunTiming {
  createdAt: string;
  startedAt?: string;
  finishedAt: string;
  /** finishedAt − createdAt: what a user waiting for the audit experiences, queueing included. */
  wallTimeSeconds: number;
  /** finishedAt − startedAt: the processing span (0 when no image was ever taken). */
  processingSeconds: number;
  /** Images finished ÷ processingSeconds: the run's throughput. */
  throughputImagesPerSecond: number;
}

export function runTiming(run: Pick<RunRecord, 'createdAt' | 'startedAt'>, processed: number, finishedAt: Date): RunTiming {
  const finishedMs = finishedAt.getTime();
  const created = parseTime(run.createdAt);
  const started = parseTime(run.startedAt);
  const processingSeconds = started !== undefined ? Math.max(0, (finishedMs - started) / 1000) : 0;
  return {
    createdAt: run.createdAt,
    ...(run.startedAt ? { startedAt: run.startedAt } : {}),
    finishedAt: finishedAt.toISOString(),
    wallTimeSeconds: round3(created !== undefined ? Math.max(0, (finishedMs - created) / 1000) : 0),
    processingSeconds: round3(processingSeconds),
    throughputImagesPerSecond: round3(started !== undefined ? imagesPerSecondOver(processed, processingSeconds) : 0),
  };
}

/** One bar of the throughput chart. */
export interface ThroughputBar {
  /** Bin start, epoch seconds. */
  t: number;
  /** Seconds of the bin inside the processing span (less than the bin at the span's ends). */
  seconds: number;
  count: number;
  imagesPerSecond: number;
}

export interface ThroughputChart {
  binSeconds: number;
  /** The processing span the chart covers, epoch seconds; null before the first image. */
  from: number | null;
  to: number | null;
  /** The run's throughput over the span (the bars' time-weighted mean). */
  imagesPerSecond: number;
  bars: ThroughputBar[];
}

/** Bin widths the chart may use: multiples of the 10 s bucket that read well on an axis. */
const CHART_BINS = [10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21_600, 43_200, 86_400];

/**
 * The chart of a run: its whole processing span (not a fixed window), in at most `maxBars` bins of
 * a readable width. A bin's images all finished inside the span, so its count over the part of the
 * bin inside the span is exactly that part's throughput.
 */
export function throughputChart(
  buckets: readonly ThroughputBucket[],
  span: ProcessingSpan | null,
  options: { maxBars?: number; bucketSeconds?: number; processed?: number } = {},
): ThroughputChart {
  const width = options.bucketSeconds ?? THROUGHPUT_BUCKET_SECONDS;
  if (!span) return { binSeconds: width, from: null, to: null, imagesPerSecond: 0, bars: [] };
  const maxBars = options.maxBars ?? 60;
  const from = span.startMs / 1000;
  const to = span.endMs / 1000;
  const bin = CHART_BINS.find((b) => b >= width && b % width === 0 && Math.ceil((to - Math.floor(from / b) * b) / b) <= maxBars) ?? CHART_BINS.at(-1) ?? width;
  const counts = new Map<number, number>();
  for (const b of buckets) {
    const key = Math.floor(b.t / bin) * bin;
    counts.set(key, (counts.get(key) ?? 0) + b.count);
  }
  const bars: ThroughputBar[] = [];
  let total = 0;
  const first = Math.floor(from / bin) * bin;
  for (let t = first; t === first || t < to; t += bin) {
    const seconds = Math.min(t + bin, to) - Math.max(t, from);
    const count = counts.get(t) ?? 0;
    total += count;
    bars.push({ t, seconds: round3(seconds), count, imagesPerSecond: round2(seconds > 0 ? count / seconds : 0) });
  }
  // The run's counters are exact (a retried failure counts once there, twice in the buckets).
  return { binSeconds: bin, from, to, imagesPerSecond: round2(imagesPerSecondOver(options.processed ?? total, to - from)), bars };
}

/** `1h02m`, `3m05s`, `42s`; `-` when unknown. */
export function formatDuration(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor((s % 86400) / 3600)).padStart(2, '0')}h`;
}

function parseTime(iso: string | undefined): number | undefined {
  if (!iso) return undefined;
  const t = Date.parse(iso);
  return Number.isFinite(t) ? t : undefined;
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
