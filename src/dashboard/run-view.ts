/**
 * What the pages show about a run: its record plus img/s, ETA and progress, computed on read from
 * the run's throughput buckets with the same math as `gradcam-audit status` and summary.json
 * (shared/run-stats), so the CLI, the summary and every dashboard replica show the same numbers.
 */
import type { RunRecord, RunStore } from '../shared/queue/run-store.js';
import { computeRunStats, processingSpan, throughputChart, type ThroughputBucket, type ThroughputChart } from '../shared/run-stats.js';
import type { RunAnalytics } from './gallery.js';

export interface RunView {
  id: string;
  source: string;
  output: string;
  state: RunRecord['state'];
  model: string;
  total: number;
  done: number;
  failed: number;
  degenerate: number;
  /** Finished images (ok + failed) over the total, 0..1; 0 while nothing is enqueued. */
  progress: number;
  enqueueComplete: boolean;
  /** The current rate (last minute) while the run is open, its throughput once completed. */
  imagesPerSecond: number;
  rateWindow: 'last-minute' | 'run';
  etaSeconds: number | null;
  /** False while listing continues: the total (and so the ETA) can still grow. */
  totalFinal: boolean;
  elapsedSeconds: number;
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  options: RunRecord['options'];
  provenance?: RunRecord['provenance'];
}

export function toRunView(run: RunRecord, buckets: ReadonlyArray<{ t: number; count: number }>, nowMs: number): RunView {
  const stats = computeRunStats(run, buckets, nowMs);
  return {
    id: run.id,
    source: run.source,
    output: run.output,
    state: run.state,
    model: run.model,
    total: run.total,
    done: run.done,
    failed: run.failed,
    degenerate: run.degenerate,
    progress: stats.fraction,
    enqueueComplete: run.enqueueComplete,
    imagesPerSecond: stats.imagesPerSecond,
    rateWindow: stats.rateWindow,
    etaSeconds: stats.etaSeconds,
    totalFinal: stats.totalFinal,
    elapsedSeconds: stats.elapsedSeconds,
    createdAt: run.createdAt,
    startedAt: run.startedAt,
    finishedAt: run.finishedAt,
    options: run.options,
    provenance: run.provenance,
  };
}

export async function listRunViews(runs: RunStore, limit: number, nowMs: number): Promise<RunView[]> {
  const records = await runs.listRuns(limit);
  return Promise.all(records.map(async (r) => toRunView(r, await runs.throughput(r.id), nowMs)));
}

/** The run page's body (`GET /api/runs/:id` and the live `run` event): one shape, one builder. */
export interface RunDetail {
  run: RunView;
  throughput: ThroughputChart;
  analytics: RunAnalytics;
  links: { manifest: string; summary: string };
}

export function runDetail(run: RunRecord, buckets: readonly ThroughputBucket[], analytics: RunAnalytics, nowMs: number): RunDetail {
  return {
    run: toRunView(run, buckets, nowMs),
    throughput: throughputChart(buckets, processingSpan(run, nowMs), { processed: run.done + run.failed }),
    analytics,
    links: { manifest: `/api/runs/${run.id}/manifest.jsonl`, summary: `/api/runs/${run.id}/summary.json` },
  };
}
