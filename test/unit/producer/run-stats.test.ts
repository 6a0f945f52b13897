import { describe, expect, it } from 'vitest';
import { progressBar, renderStatusTable } from '../../../src/producer/status.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { RunRecord } from '../../../src/shared/queue/run-store.js';
import { computeRunStats, formatDuration, processingSpan, recentImagesPerSecond, runTiming, throughputChart } from '../../../src/shared/run-stats.js';

const T0 = Date.UTC(2026, 10, 25, 12, 0, 0); // a multiple of 10 s
const iso = (ms: number) => new Date(ms).toISOString();

function run(over: Partial<RunRecord> = {}): RunRecord {
  return {
    id: 'r1', source: 's3://b/in/', output: 's3://b/out/', options: { ...DEFAULT_EXPLAIN_OPTIONS }, optionsHash: '', model: '', state: 'running',
    total: 1000, done: 0, failed: 0, degenerate: 0, enqueueComplete: true, createdAt: iso(T0 - 600_000),
    epoch: 'e1', cursor: '', listed: true, manifestWritten: false, generation: 0, ...over,
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

describe('one throughput definition', () => {
  // A run enqueued at T0 - 600 s; a worker took its first image at T0 + 3 s; 240 images finished by
  // T0 + 47 s (bucket counts below), when it completed.
  const buckets = [
    { t: T0 / 1000, count: 50 },
    { t: T0 / 1000 + 10, count: 60 },
    { t: T0 / 1000 + 20, count: 40 },
    { t: T0 / 1000 + 30, count: 70 },
    { t: T0 / 1000 + 40, count: 20 },
  ];
  const done = run({ state: 'completed', total: 240, done: 230, failed: 10, startedAt: iso(T0 + 3_000), finishedAt: iso(T0 + 47_000) });

  it('is images finished over the processing span, the same in status, the chart and summary.json', () => {
    const stats = computeRunStats(done, buckets, T0 + 3_600_000);
    const chart = throughputChart(buckets, processingSpan(done, T0 + 3_600_000), { processed: 240 });
    const summary = runTiming(done, 240, new Date(T0 + 47_000));
    expect(stats).toMatchObject({ imagesPerSecond: 5.45, rateWindow: 'run' });
    expect(chart.imagesPerSecond).toBe(5.45);
    expect(summary).toMatchObject({ processingSeconds: 44, wallTimeSeconds: 647, throughputImagesPerSecond: 5.455 });
  });

  it('charts exactly the span: partial bins at its ends count only their part inside it', () => {
    const chart = throughputChart(buckets, processingSpan(done, 0));
    expect(chart).toMatchObject({ binSeconds: 10, from: T0 / 1000 + 3, to: T0 / 1000 + 47 });
    expect(chart.bars.map((b) => [b.seconds, b.count, b.imagesPerSecond])).toEqual([
      [7, 50, 7.14],
      [10, 60, 6],
      [10, 40, 4],
      [10, 70, 7],
      [7, 20, 2.86],
    ]);
    // The bars' time-weighted mean is the run's throughput.
    const weighted = chart.bars.reduce((s, b) => s + b.imagesPerSecond * b.seconds, 0) / chart.bars.reduce((s, b) => s + b.seconds, 0);
    expect(weighted).toBeCloseTo(240 / 44, 2);
  });

  it('widens the bins so a long run fits the chart, and ends a running run at now', () => {
    const long = [{ t: T0 / 1000, count: 100 }, { t: T0 / 1000 + 7_190, count: 5 }];
    const chart = throughputChart(long, { startMs: T0, endMs: T0 + 7_200_000 }, { maxBars: 60 });
    expect(chart.binSeconds).toBe(120);
    expect(chart.bars).toHaveLength(60);
    expect(chart.bars[0]).toMatchObject({ count: 100, seconds: 120 });
    expect(chart.bars.at(-1)).toMatchObject({ count: 5 });
    const running = run({ startedAt: iso(T0) });
    expect(processingSpan(running, T0 + 25_000)).toEqual({ startMs: T0, endMs: T0 + 25_000 });
    expect(throughputChart([{ t: T0 / 1000 + 20, count: 10 }], processingSpan(running, T0 + 25_000)).bars.at(-1)).toMatchObject({ seconds: 5, imagesPerSecond: 2 });
    expect(throughputChart([], processingSpan(run(), T0))).toMatchObject({ bars: [], from: null });
  });

  it('gives a run with no image a zero throughput and no start', () => {
    expect(runTiming(run({ startedAt: undefined }), 0, new Date(T0))).toEqual({ createdAt: iso(T0 - 600_000), finishedAt: iso(T0), wallTimeSeconds: 600, processingSeconds: 0, throughputImagesPerSecond: 0 });
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
