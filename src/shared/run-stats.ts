/**
 * Progress numbers of a run, shared by `status` and the dashboard so both show the same img/s and
 * ETA. Pure functions of a RunRecord, its throughput buckets and the current time.
 */
import { THROUGHPUT_BUCKET_SECONDS, type RunRecord, type RunState } from './queue/run-store.js';

/** Rate window: the last minute, as `status` and the dashboard show. */
export const RATE_WINDOW_SECONDS = 60;

export interface ThroughputBucket {
  /** Bucket start, epoch seconds (a multiple of the bucket width). */
  t: number;
  count: number;
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
   * Images per second: over the last minute while the run is active; over the whole run
   * (first result → finish) once it is completed.
   */
  imagesPerSecond: number;
  /** Seconds until every known image is processed at the current rate; null when unknown. */
  etaSeconds: number | null;
  /** False while listing continues: `total` (and so the ETA) can still grow. */
  totalFinal: boolean;
  /** Seconds since the run was created (until it finished, for completed runs). */
  elapsedSeconds: number;
}

/**
 * Recent images per second. The window covers whole buckets (the current, partial one included)
 * from `windowSeconds` back, divided by the time they actually span: from the window start, or
 * from the run's first result when that is later, to now.
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
  if (count === 0) return 0;
  const start = Math.max(from, options.startedAtMs !== undefined ? options.startedAtMs / 1000 : from);
  // At least one second: a burst right after the first result should not read as thousands/s.
  const span = Math.max(1, nowS - start);
  return count / span;
}

export function computeRunStats(run: RunRecord, buckets: readonly ThroughputBucket[], nowMs: number, windowSeconds = RATE_WINDOW_SECONDS): RunStats {
  const processed = run.done + run.failed;
  const remaining = Math.max(0, run.total - processed);
  const created = parseTime(run.createdAt);
  const started = parseTime(run.startedAt);
  const finished = parseTime(run.finishedAt);
  let imagesPerSecond: number;
  let etaSeconds: number | null;
  if (run.state === 'completed') {
    const from = started ?? created;
    const span = from !== undefined && finished !== undefined ? (finished - from) / 1000 : 0;
    imagesPerSecond = span > 0 ? processed / Math.max(1, span) : 0;
    etaSeconds = 0;
  } else {
    imagesPerSecond = recentImagesPerSecond(buckets, nowMs, { windowSeconds, startedAtMs: started });
    etaSeconds = remaining === 0 ? (run.enqueueComplete ? 0 : null) : imagesPerSecond > 0 ? remaining / imagesPerSecond : null;
  }
  const end = run.state === 'completed' && finished !== undefined ? finished : nowMs;
  return {
    runId: run.id,
    state: run.state,
    total: run.total,
    done: run.done,
    failed: run.failed,
    processed,
    remaining,
    fraction: run.total > 0 ? Math.min(1, processed / run.total) : run.state === 'completed' ? 1 : 0,
    imagesPerSecond: Math.round(imagesPerSecond * 100) / 100,
    etaSeconds: etaSeconds === null ? null : Math.ceil(etaSeconds),
    totalFinal: run.enqueueComplete,
    elapsedSeconds: created !== undefined ? Math.max(0, Math.round((end - created) / 1000)) : 0,
  };
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
