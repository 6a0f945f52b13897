/**
 * `status`: runs with total, done, failed, img/s and ETA, read from the run records in Redis. The
 * numbers come from shared/run-stats so the dashboard shows the same ones.
 */
import type { RunRecord, RunStore } from '../shared/queue/run-store.js';
import { computeRunStats, formatDuration, type RunStats } from '../shared/run-stats.js';

export interface RunStatus {
  run: RunRecord;
  stats: RunStats;
}

export interface StatusDeps {
  runs: RunStore;
  /** Epoch ms. */
  now?: () => number;
}

export const STATUS_DEFAULTS = Object.freeze({
  /** Runs listed without a RUN_ID, newest first. */
  limit: 20,
  /** `--watch` refresh period. */
  intervalMs: 2000,
});

/** One run (throws NotFoundError naming the id when unknown), or the newest `limit` runs. */
export async function readStatus(deps: StatusDeps, runId?: string, limit: number = STATUS_DEFAULTS.limit): Promise<RunStatus[]> {
  const now = deps.now?.() ?? Date.now();
  const runs = runId !== undefined ? [await deps.runs.requireRun(runId)] : await deps.runs.listRuns(limit);
  return Promise.all(runs.map(async (run) => ({ run, stats: computeRunStats(run, await deps.runs.throughput(run.id), now) })));
}

const COLUMNS = ['RUN', 'STATE', 'TOTAL', 'DONE', 'FAILED', 'PROGRESS', 'IMG/S', 'ETA', 'ELAPSED'] as const;

/** A fixed-width table, one row per run. */
export function renderStatusTable(statuses: readonly RunStatus[]): string {
  if (statuses.length === 0) return 'no runs yet (start one with `gradcam-audit enqueue s3://BUCKET/PREFIX`)\n';
  const rows = statuses.map(({ stats: s }) => [
    s.runId,
    s.state,
    `${s.total}${s.totalFinal ? '' : '+'}`,
    String(s.done),
    String(s.failed),
    `${(s.fraction * 100).toFixed(1)}%`,
    s.imagesPerSecond.toFixed(1),
    formatDuration(s.etaSeconds),
    formatDuration(s.elapsedSeconds),
  ]);
  const widths = COLUMNS.map((c, i) => Math.max(c.length, ...rows.map((r) => (r[i] as string).length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 || i === 1 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join('  ').trimEnd();
  return `${[line(COLUMNS), ...rows.map(line)].join('\n')}\n`;
}

/** The table plus where the run reads from and writes to (for `status RUN_ID`). */
export function renderRunDetail(status: RunStatus): string {
  const { run, stats } = status;
  const bar = progressBar(stats.fraction, 30);
  const lines = [
    renderStatusTable([status]).trimEnd(),
    '',
    `${bar} ${(stats.fraction * 100).toFixed(1)}%${stats.totalFinal ? '' : ' (still listing)'}`,
    `source  ${run.source}`,
    `output  ${run.output}`,
    `created ${run.createdAt}${run.startedAt ? `  started ${run.startedAt}` : ''}${run.finishedAt ? `  finished ${run.finishedAt}` : ''}`,
  ];
  if (run.model) lines.push(`model   ${run.model}`);
  if (run.state === 'completed') lines.push(`manifest ${run.output}manifest.jsonl  summary ${run.output}summary.json`);
  return `${lines.join('\n')}\n`;
}

export function progressBar(fraction: number, width: number): string {
  const filled = Math.round(Math.min(1, Math.max(0, fraction)) * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}

export interface WatchOptions {
  runId?: string;
  json: boolean;
  /** Stop when aborted (Ctrl-C). */
  signal: AbortSignal;
  write: (text: string) => void;
  /** Clear the screen between refreshes (a TTY). */
  clear: boolean;
  intervalMs?: number;
}

/**
 * Refresh until aborted, or, when watching one run, until it completes. With `json`, one JSON
 * document per line per refresh (NDJSON) so scripts can follow along.
 */
export async function watchStatus(deps: StatusDeps, options: WatchOptions): Promise<RunStatus[]> {
  let last: RunStatus[] = [];
  while (!options.signal.aborted) {
    last = await readStatus(deps, options.runId);
    if (options.json) options.write(`${JSON.stringify(options.runId !== undefined ? last[0] : last)}\n`);
    else options.write(`${options.clear ? '\x1b[2J\x1b[H' : ''}${options.runId !== undefined && last[0] ? renderRunDetail(last[0]) : renderStatusTable(last)}`);
    if (options.runId !== undefined && last[0]?.run.state === 'completed') break;
    await sleep(options.intervalMs ?? STATUS_DEFAULTS.intervalMs, options.signal);
  }
  return last;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
  });
}
