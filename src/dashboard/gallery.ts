/**
 * Server-side queries over a run's result lines (RunStore.scanResults): the gallery's filtered,
 * sorted, paginated image list, an image's place in it (the detail view's previous and next), and
 * the run page's analytics (top-1 class histogram, degenerate maps). Results are streamed page by
 * page; only the matching keys (and their sort values) are kept, ordered by the sort value and then
 * by key so that pagination is stable while a run is still producing results.
 */
import { METRIC_COLUMNS, metricValue } from '../shared/audit/metric-table.js';
import type { AuditLine } from '../shared/audit/types.js';
import type { RunManifestLine } from '../shared/manifest.js';
import { ReadDeadline } from '../shared/queue/part-cache.js';
import type { RunRecord, RunStore } from '../shared/queue/run-store.js';

export type StatusFilter = 'all' | 'ok' | 'failed';

export interface ImageFilter {
  status: StatusFilter;
  /** Top-1 class index. */
  classIndex?: number;
  /** Inclusive bounds on the top-1 probability (images without one never match a bound). */
  minProbability?: number;
  maxProbability?: number;
  /** Only images whose CAM was degenerate (true) or not (false). */
  degenerate?: boolean;
  /** Case-insensitive substring of the source key. */
  keyContains?: string;
}

export interface Page {
  offset: number;
  limit: number;
}

/**
 * Sort keys: the source key, or any per-image metric by name (METRIC_COLUMNS; `top1Prob` falls
 * back to the line's top-1 probability so runs without metrics sort by confidence too).
 */
export const SORT_KEYS: readonly string[] = ['key', ...METRIC_COLUMNS.map((c) => c.name)];
export type SortOrder = 'asc' | 'desc';

export interface ImageSort {
  by: string;
  order: SortOrder;
}

export const DEFAULT_SORT: Readonly<ImageSort> = Object.freeze({ by: 'key', order: 'asc' });

/** The value a line sorts by; undefined when it has none (it sorts last, whatever the order). */
export function sortValue(line: RunManifestLine, by: string): number | undefined {
  const column = METRIC_COLUMNS.find((c) => c.name === by);
  if (column === undefined) return undefined;
  const v = metricValue(column, (line as AuditLine).metrics);
  if (v === undefined && by === 'top1Prob') return line.status === 'ok' ? line.top1?.probability : undefined;
  return v;
}

const byKey = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export interface ImagePage {
  total: number;
  offset: number;
  limit: number;
  items: RunManifestLine[];
}

export function matches(line: RunManifestLine, f: ImageFilter): boolean {
  if (f.status !== 'all' && line.status !== f.status) return false;
  if (f.classIndex !== undefined && line.top1?.index !== f.classIndex) return false;
  const p = line.top1?.probability;
  if (f.minProbability !== undefined && (p === undefined || p < f.minProbability)) return false;
  if (f.maxProbability !== undefined && (p === undefined || p > f.maxProbability)) return false;
  if (f.degenerate !== undefined && Boolean(line.degenerate) !== f.degenerate) return false;
  if (f.keyContains && !line.key.toLowerCase().includes(f.keyContains.toLowerCase())) return false;
  return true;
}

/**
 * Source keys of the results that match `filter`, in `sort` order (one full scan of the run's
 * results; with a deadline, of the parts read by then).
 */
export async function matchingKeys(runs: RunStore, run: string | RunRecord, filter: ImageFilter, sort: ImageSort = DEFAULT_SORT, deadline?: ReadDeadline): Promise<string[]> {
  if (sort.by === 'key') {
    const keys: string[] = [];
    for await (const chunk of runs.scanResults(run, undefined, deadline)) {
      for (const line of chunk) if (matches(line, filter)) keys.push(line.key);
    }
    keys.sort(byKey);
    return sort.order === 'desc' ? keys.reverse() : keys;
  }
  const rows: { key: string; v: number | undefined }[] = [];
  for await (const chunk of runs.scanResults(run, undefined, deadline)) {
    for (const line of chunk) if (matches(line, filter)) rows.push({ key: line.key, v: sortValue(line, sort.by) });
  }
  const sign = sort.order === 'desc' ? -1 : 1;
  rows.sort((a, b) => {
    if (a.v === undefined || b.v === undefined) return a.v === b.v ? byKey(a.key, b.key) : a.v === undefined ? 1 : -1;
    return a.v !== b.v ? sign * (a.v - b.v) : byKey(a.key, b.key);
  });
  return rows.map((r) => r.key);
}

/** Where an image stands in a listing: its 0-based index (null when it does not match) and its neighbours. */
export interface ImagePosition {
  key: string;
  index: number | null;
  total: number;
  prev: string | null;
  next: string | null;
}

async function pageOf(runs: RunStore, run: string | RunRecord, keys: readonly string[], page: Page, deadline?: ReadDeadline): Promise<ImagePage> {
  const slice = keys.slice(page.offset, page.offset + page.limit);
  const lines = await runs.getResults(run, slice, deadline);
  return { total: keys.length, offset: page.offset, limit: page.limit, items: slice.flatMap((k) => lines.get(k) ?? []) };
}

/** How long a dashboard request waits for part files still being read (DashboardOptions.partWaitMs). */
export interface PartWait {
  partWaitMs: number;
}

/**
 * Sorted matching keys per (run, counters, filter), so paging through a large finished run scans
 * its results once instead of once per page (about 0.2 s per scan at 20,000 results here). Keys
 * only, not lines: 100,000 keys are a few MiB. The counters stamp the run's results exactly (see
 * AnalyticsCache), and a total key budget bounds memory whatever the filters. A listing computed
 * without some parts (not read within `partWaitMs`) is computed again by the next request.
 */
export class ImageQueryCache {
  private readonly entries = new Map<string, { keys: Promise<string[]>; partial: boolean }>();
  private readonly sizes = new Map<string, number>();
  private keyCount = 0;

  constructor(
    private readonly wait: PartWait,
    private readonly maxKeys = 500_000,
  ) {}

  async query(runs: RunStore, run: RunRecord, filter: ImageFilter, page: Page, sort: ImageSort = DEFAULT_SORT): Promise<ImagePage> {
    const deadline = new ReadDeadline(this.wait.partWaitMs);
    return pageOf(runs, run, await this.keys(runs, run, filter, sort, deadline), page, deadline);
  }

  /** The image's index in the listing and the keys before and after it. */
  async position(runs: RunStore, run: RunRecord, filter: ImageFilter, sort: ImageSort, key: string): Promise<ImagePosition> {
    const keys = await this.keys(runs, run, filter, sort, new ReadDeadline(this.wait.partWaitMs));
    const i = keys.indexOf(key);
    if (i < 0) return { key, index: null, total: keys.length, prev: null, next: null };
    return { key, index: i, total: keys.length, prev: keys[i - 1] ?? null, next: keys[i + 1] ?? null };
  }

  private keys(runs: RunStore, run: RunRecord, filter: ImageFilter, sort: ImageSort, deadline: ReadDeadline): Promise<string[]> {
    const id = `${run.id}\0${run.done}/${run.failed}\0${JSON.stringify(filter)}\0${sort.by}:${sort.order}`;
    const hit = this.entries.get(id);
    if (hit && !hit.partial) {
      this.entries.delete(id);
      this.entries.set(id, hit);
      return hit.keys;
    }
    this.forget(id);
    const entry = { keys: matchingKeys(runs, run, filter, sort, deadline), partial: false };
    this.entries.set(id, entry);
    entry.keys.then(
      (k) => {
        entry.partial = !deadline.complete;
        if (this.entries.get(id) === entry) this.account(id, k.length);
      },
      () => {
        if (this.entries.get(id) === entry) this.entries.delete(id);
      },
    );
    return entry.keys;
  }

  private forget(id: string): void {
    this.keyCount -= this.sizes.get(id) ?? 0;
    this.sizes.delete(id);
    this.entries.delete(id);
  }

  private account(id: string, size: number): void {
    this.sizes.set(id, size);
    this.keyCount += size;
    for (const oldest of this.entries.keys()) {
      if (this.keyCount <= this.maxKeys || oldest === id) break;
      this.keyCount -= this.sizes.get(oldest) ?? 0;
      this.sizes.delete(oldest);
      this.entries.delete(oldest);
    }
  }
}

export interface RunAnalytics {
  ok: number;
  failed: number;
  degenerate: number;
  /** Top-1 classes, most frequent first. */
  classHistogram: Array<{ index: number; label?: string; count: number }>;
}

export async function computeAnalytics(runs: RunStore, run: string | RunRecord, deadline?: ReadDeadline): Promise<RunAnalytics> {
  const counts = new Map<number, { index: number; label?: string; count: number }>();
  let ok = 0;
  let failed = 0;
  let degenerate = 0;
  for await (const chunk of runs.scanResults(run, undefined, deadline)) {
    for (const line of chunk) {
      if (line.status === 'failed') {
        failed += 1;
        continue;
      }
      ok += 1;
      if (line.degenerate) degenerate += 1;
      if (line.top1) {
        const entry = counts.get(line.top1.index) ?? { index: line.top1.index, label: line.top1.label, count: 0 };
        entry.count += 1;
        counts.set(line.top1.index, entry);
      }
    }
  }
  const classHistogram = [...counts.values()].sort((a, b) => b.count - a.count || a.index - b.index);
  return { ok, failed, degenerate, classHistogram };
}

/**
 * Analytics cached per run until its counters move: results only change when `done` or `failed`
 * does (a retried failure that succeeds moves both), so the counters are an exact version stamp
 * and the live pages never rescan an unchanged run. Analytics computed without some parts (not
 * read within `partWaitMs`; the run's counters are shown from Redis either way) are computed
 * again by the next request, from the parts read by then.
 */
export class AnalyticsCache {
  private readonly entries = new Map<string, { stamp: string; value: Promise<RunAnalytics>; partial: boolean }>();
  constructor(
    private readonly wait: PartWait,
    private readonly maxRuns = 64,
  ) {}

  get(runs: RunStore, run: RunRecord): Promise<RunAnalytics> {
    const stamp = `${run.done}/${run.failed}`;
    const hit = this.entries.get(run.id);
    if (hit && hit.stamp === stamp && !hit.partial) return hit.value;
    const deadline = new ReadDeadline(this.wait.partWaitMs);
    const entry = { stamp, value: computeAnalytics(runs, run, deadline), partial: false };
    entry.value.then(
      () => void (entry.partial = !deadline.complete),
      () => {
        if (this.entries.get(run.id) === entry) this.entries.delete(run.id);
      },
    );
    this.entries.delete(run.id);
    this.entries.set(run.id, entry);
    while (this.entries.size > this.maxRuns) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    return entry.value;
  }
}
