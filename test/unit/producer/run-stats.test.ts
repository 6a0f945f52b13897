import { describe, expect, it } from 'vitest';
import { progressBar, renderStatusTable } from '../../../src/producer/status.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { RunRecord } from '../../../src/shared/queue/run-store.js';
import { computeRunStats, formatDuration, recentImagesPerSecond } from '../../../src/shared/run-stats.js';

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0); // a multiple of 10 s
const iso = (ms: number) => new Date(ms).toISOString();

function run(over: Partial<RunRecord> = {}): RunRecord {
  return {
    id: 'r1', source: 's3://b/in/', output: 's3://b/out/', options: { ...DEFAULT_EXPLAIN_OPTIONS }, optionsHash: '', model: '', state: 'running',
    total: 1000, done: 0, failed: 0, degenerate: 0, enqueueComplete: true, createdAt: iso(T0 - 600_000), ...over,
  };
}

describe('recentImagesPerSecond', () => {
  it('divides the images of the last minute of buckets by the time they span', () => {
    const now = T0 + 5_000; // 5 s into the current bucket
    // Window: buckets T0-50 s .. T0 (6 buckets), spanning 55 s up to now. T0-60 s is outside.
    const buckets = [
      { t: T0 / 1000 - 60, count: 999 },
      { t: T0 / 1000 - 50, count: 100 },
      { t: T0 / 1000 - 20, count: 200 },
      { t: T0 / 1000, count: 30 },
    ];
    expect(recentImagesPerSecond(buckets, now)).toBeCloseTo(330 / 55, 10);
  });

  it('starts the span at the first result for a young run, but never below one second', () => {
    const buckets = [{ t: T0 / 1000, count: 40 }];
    expect(recentImagesPerSecond(buckets, T0 + 4_000, { startedAtMs: T0 })).toBeCloseTo(10, 10);
    expect(recentImagesPerSecond(buckets, T0 + 100, { startedAtMs: T0 + 50 })).toBe(40);
    expect(recentImagesPerSecond([], T0)).toBe(0);
  });
});

describe('computeRunStats', () => {
  it('gives progress, rate and ETA for an active run', () => {
    const now = T0 + 5_000;
    const s = computeRunStats(run({ done: 300, failed: 30, startedAt: iso(T0 - 300_000) }), [{ t: T0 / 1000 - 50, count: 110 }], now);
    expect(s).toMatchObject({ processed: 330, remaining: 670, fraction: 0.33, imagesPerSecond: 2, etaSeconds: 335, totalFinal: true, elapsedSeconds: 605 });
  });

  it('has no ETA without recent progress, and none while listing continues with nothing left', () => {
    expect(computeRunStats(run({ done: 10 }), [], T0).etaSeconds).toBeNull();
    expect(computeRunStats(run({ done: 10, total: 10, enqueueComplete: false, state: 'enqueuing' }), [], T0).etaSeconds).toBeNull();
  });

  it('reports the whole-run average once completed', () => {
    const s = computeRunStats(
      run({ state: 'completed', done: 990, failed: 10, startedAt: iso(T0 - 100_000), finishedAt: iso(T0) }),
      [],
      T0 + 3_600_000,
    );
    expect(s).toMatchObject({ imagesPerSecond: 10, etaSeconds: 0, fraction: 1, elapsedSeconds: 600 });
    expect(computeRunStats(run({ state: 'completed', total: 0, finishedAt: iso(T0) }), [], T0).fraction).toBe(1);
  });
});

describe('status rendering', () => {
  it('formats durations and bars', () => {
    expect([formatDuration(null), formatDuration(42), formatDuration(185), formatDuration(3720), formatDuration(90_000)]).toEqual(['-', '42s', '3m05s', '1h02m', '1d01h']);
    expect(progressBar(0.5, 10)).toBe('[#####-----]');
  });

  it('prints one aligned row per run, marking a total that can still grow', () => {
    const r = run({ done: 500, startedAt: iso(T0 - 100_000), enqueueComplete: false, state: 'enqueuing' });
    const text = renderStatusTable([{ run: r, stats: computeRunStats(r, [{ t: T0 / 1000 - 10, count: 100 }], T0) }]);
    const [head, row] = text.trimEnd().split('\n');
    expect(head).toMatch(/^RUN +STATE +TOTAL +DONE +FAILED +PROGRESS +IMG\/S +ETA +ELAPSED$/);
    expect(row?.split(/ +/)).toEqual(['r1', 'enqueuing', '1000+', '500', '0', '50.0%', '2.0', '4m10s', '10m00s']);
    expect(renderStatusTable([])).toContain('no runs yet');
  });
});
