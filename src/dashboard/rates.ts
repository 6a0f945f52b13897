/**
 * Images per second and ETA of a run, from the run's 10-second throughput buckets. A sliding window
 * (default 60 s) follows the current speed; a finished run reports its overall average instead,
 * because its recent window is empty by definition.
 */
import type { RunRecord } from '../shared/queue/run-store.js';
import { THROUGHPUT_BUCKET_SECONDS } from '../shared/queue/run-store.js';

export interface RunRates {
  /** Recent images per second (or the run's average once it has finished). */
  imagesPerSecond: number;
  /** Seconds until every enqueued image has a result at the current rate; null when unknown. */
  etaSeconds: number | null;
}

export const DEFAULT_RATE_WINDOW_SECONDS = 60;

export function runRates(
  run: Pick<RunRecord, 'total' | 'done' | 'failed' | 'state' | 'startedAt' | 'finishedAt'>,
  buckets: ReadonlyArray<{ t: number; count: number }>,
  nowMs: number,
  windowSeconds = DEFAULT_RATE_WINDOW_SECONDS,
): RunRates {
  const finishedCount = run.done + run.failed;
  const startedMs = run.startedAt ? Date.parse(run.startedAt) : NaN;
  if (run.state === 'completed' || run.state === 'finalizing') {
    const endMs = run.finishedAt ? Date.parse(run.finishedAt) : nowMs;
    const seconds = Number.isFinite(startedMs) ? Math.max(1, (endMs - startedMs) / 1000) : 0;
    return { imagesPerSecond: seconds > 0 ? finishedCount / seconds : 0, etaSeconds: 0 };
  }
  const nowS = nowMs / 1000;
  // Align the window to bucket starts so a partially filled current bucket is divided by the time
  // it has actually covered, and never count time before the run started.
  let windowStart = Math.floor((nowS - windowSeconds) / THROUGHPUT_BUCKET_SECONDS) * THROUGHPUT_BUCKET_SECONDS;
  if (Number.isFinite(startedMs)) windowStart = Math.max(windowStart, startedMs / 1000);
  let count = 0;
  for (const b of buckets) {
    if (b.t + THROUGHPUT_BUCKET_SECONDS > windowStart && b.t <= nowS) count += b.count;
  }
  const elapsed = nowS - windowStart;
  const imagesPerSecond = elapsed > 0 && count > 0 ? count / Math.max(elapsed, 1) : 0;
  const remaining = Math.max(0, run.total - finishedCount);
  const etaSeconds = remaining === 0 ? 0 : imagesPerSecond > 0 ? remaining / imagesPerSecond : null;
  return { imagesPerSecond, etaSeconds };
}
