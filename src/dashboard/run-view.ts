/**
 * What the pages show about a run: its record plus img/s, ETA and progress, computed on read from
 * the run's throughput buckets with the same math as `gradcam-audit status` (shared/run-stats), so
 * the CLI and every dashboard replica show the same numbers.
 */
import type { RunRecord, RunStore } from '../shared/queue/run-store.js';
import { computeRunStats } from '../shared/run-stats.js';

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
  imagesPerSecond: number;
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
