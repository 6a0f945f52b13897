/**
 * What the pages show about a run: its record plus img/s, ETA and progress, computed on read from
 * the run's throughput buckets so that every dashboard replica shows the same numbers.
 */
import type { RunRecord, RunStore } from '../shared/queue/run-store.js';
import { runRates } from './rates.js';

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
  createdAt: string;
  startedAt?: string;
  finishedAt?: string;
  options: RunRecord['options'];
  provenance?: RunRecord['provenance'];
}

export function toRunView(run: RunRecord, buckets: ReadonlyArray<{ t: number; count: number }>, nowMs: number): RunView {
  const rates = runRates(run, buckets, nowMs);
  const finished = run.done + run.failed;
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
    progress: run.total > 0 ? Math.min(1, finished / run.total) : 0,
    enqueueComplete: run.enqueueComplete,
    imagesPerSecond: rates.imagesPerSecond,
    etaSeconds: rates.etaSeconds,
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
