/**
 * The run-level analysis, one manifest line at a time. Memory depends on the number of classes and
 * the configured sizes (histogram bins, flags kept per kind), never on the number of images: means
 * come from running sums, quantiles from fixed-range histograms, class atlases from fixed-grid
 * sums, and flag evidence from bounded top-N heaps whose ordering matches the final threshold, so
 * the N kept are exactly the N most severe flags even though the run-relative thresholds are only
 * known at the end.
 */
import { auditOptions, type AuditOptions } from './audit-options.js';
import { BoundedTop } from './bounded-top.js';
import { Histogram } from './histogram.js';
import { decodeAtlas, DEFAULT_METRIC_OPTIONS } from './image-metrics.js';
import { METRIC_COLUMNS, METRICS_EXTRA_KEYS, metricText, metricValue } from './metric-table.js';
import { round } from './numbers.js';
import { thresholds } from './thresholds.js';
import { classFlags, imageFlags, type ImageCandidate } from './flags.js';
import { AUDIT_SCHEMA, FLAG_KINDS, type AuditLine, type AuditReport, type ClassRef, type ClassReport, type FlagKind, type ImageMetrics, type MetricSummary } from './types.js';

/** Running moments and an optional histogram of one metric. */
export class MetricStats {
  n = 0;
  sum = 0;
  sumSq = 0;
  readonly hist: Histogram | null;

  constructor(range: readonly [number, number] | null, bins: number) {
    this.hist = range === null ? null : new Histogram(range[0], range[1], bins);
  }

  add(v: number): void {
    this.n++;
    this.sum += v;
    this.sumSq += v * v;
    this.hist?.add(v);
  }

  get mean(): number | null {
    return this.n > 0 ? this.sum / this.n : null;
  }

  /** Sample variance (n − 1). */
  get variance(): number {
    return this.n > 1 ? Math.max(0, (this.sumSq - (this.sum * this.sum) / this.n) / (this.n - 1)) : 0;
  }

  summary(): MetricSummary {
    const h = this.hist;
    const q = (p: number): number => round(h?.quantile(p) ?? 0);
    return {
      n: this.n,
      mean: this.n > 0 ? round(this.sum / this.n) : null,
      quantiles: h !== null && h.total > 0 ? { p05: q(0.05), p25: q(0.25), p50: q(0.5), p75: q(0.75), p95: q(0.95) } : null,
    };
  }
}

/** Everything the analysis keeps about one group of images: a class in one role, or the whole run. */
export class GroupStats {
  count = 0;
  /** Images with a matched truth label, and how many of those were predicted right. */
  judged = 0;
  correct = 0;
  degenerate = 0;
  readonly metrics: (MetricStats | undefined)[] = [];
  atlasSum: Float64Array | null = null;
  atlasN = 0;

  constructor(private readonly bins: number) {}

  stat(i: number): MetricStats | undefined {
    return this.metrics[i];
  }

  addMetric(i: number, v: number): void {
    let s = this.metrics[i];
    if (s === undefined) {
      s = new MetricStats(METRIC_COLUMNS[i].range, this.bins);
      this.metrics[i] = s;
    }
    s.add(v);
  }

  addAtlas(bytes: Uint8Array): void {
    this.atlasSum ??= new Float64Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) this.atlasSum[i] += bytes[i] / 255;
    this.atlasN++;
  }

  atlas(): number[] | null {
    if (this.atlasSum === null || this.atlasN === 0) return null;
    return Array.from(this.atlasSum, (v) => round(v / this.atlasN));
  }

  summaries(): Record<string, MetricSummary> {
    const out: Record<string, MetricSummary> = {};
    METRIC_COLUMNS.forEach((c, i) => {
      const s = this.metrics[i];
      if (s !== undefined && s.n > 0) out[c.name] = s.summary();
    });
    return out;
  }
}

export interface AccumulatorContext {
  runId: string;
  /** Model class labels by index, when known (the lines' own labels fill in otherwise). */
  classLabels?: readonly string[];
  now?: () => Date;
}

export class AuditAccumulator {
  readonly options: AuditOptions;
  readonly run: GroupStats;
  readonly predicted = new Map<number, GroupStats>();
  readonly truth = new Map<number, GroupStats>();
  readonly labels = new Map<number, string>();
  readonly counts = { images: 0, ok: 0, failed: 0, withMetrics: 0, withTruth: 0, matchedTruth: 0, withBoxes: 0, degenerate: 0 };
  readonly unmatched = new Map<string, number>();
  unmatchedTruncated = 0;
  /** (true, predicted) → count. */
  readonly confusion = new Map<number, number>();
  readonly candidates: ImageCandidates;

  constructor(
    private readonly context: AccumulatorContext,
    options: Partial<AuditOptions> = {},
  ) {
    this.options = auditOptions(options);
    this.run = new GroupStats(this.options.runBins);
    context.classLabels?.forEach((l, i) => this.labels.set(i, l));
    this.candidates = new ImageCandidates(this.options);
  }

  private group(map: Map<number, GroupStats>, index: number): GroupStats {
    let g = map.get(index);
    if (g === undefined) {
      g = new GroupStats(this.options.classBins);
      map.set(index, g);
    }
    return g;
  }

  add(line: AuditLine): void {
    this.counts.images++;
    if (line.status !== 'ok') {
      this.counts.failed++;
      return;
    }
    this.counts.ok++;
    const top1 = line.top1;
    if (top1?.label !== undefined && !this.labels.has(top1.index)) this.labels.set(top1.index, top1.label);
    const truth = line.truth;
    const trueIndex = truth?.index ?? null;
    if (truth !== undefined) {
      this.counts.withTruth++;
      if (trueIndex === null) this.countUnmatched(truth.label);
      else {
        this.counts.matchedTruth++;
        if (!this.labels.has(trueIndex)) this.labels.set(trueIndex, truth.label);
      }
      if (truth.boxes > 0) this.counts.withBoxes++;
    }
    const groups: GroupStats[] = [this.run];
    if (top1 !== undefined) groups.push(this.group(this.predicted, top1.index));
    if (trueIndex !== null) groups.push(this.group(this.truth, trueIndex));
    for (const g of groups) g.count++;
    if (line.degenerate === true) {
      this.counts.degenerate++;
      for (const g of groups) g.degenerate++;
    }
    if (trueIndex !== null && top1 !== undefined) {
      const right = top1.index === trueIndex;
      for (const g of groups) {
        g.judged++;
        if (right) g.correct++;
      }
      const cell = trueIndex * 2 ** 21 + top1.index;
      this.confusion.set(cell, (this.confusion.get(cell) ?? 0) + 1);
    }
    const m = line.metrics;
    if (m !== undefined) {
      this.counts.withMetrics++;
      METRIC_COLUMNS.forEach((c, i) => {
        const v = metricValue(c, m);
        if (v !== undefined) for (const g of groups) g.addMetric(i, v);
      });
      const atlas = decodeAtlas(metricText(m, METRICS_EXTRA_KEYS.atlas), DEFAULT_METRIC_OPTIONS.atlasSize);
      if (atlas !== null) for (const g of groups) g.addAtlas(atlas);
    }
    this.candidates.offer(line, trueIndex);
  }

  private countUnmatched(label: string): void {
    const n = this.unmatched.get(label);
    if (n !== undefined) this.unmatched.set(label, n + 1);
    else if (this.unmatched.size < this.options.maxUnmatchedLabels) this.unmatched.set(label, 1);
    else this.unmatchedTruncated++;
  }

  classRef(index: number): ClassRef {
    const label = this.labels.get(index);
    return label === undefined ? { index } : { index, label };
  }

  private classReports(map: Map<number, GroupStats>, role: 'predicted' | 'true'): ClassReport[] {
    return [...map.entries()]
      .sort(([a, ga], [b, gb]) => gb.count - ga.count || a - b)
      .map(([index, g]) => ({
        class: this.classRef(index),
        role,
        count: g.count,
        accuracy: g.judged > 0 ? round(g.correct / g.judged) : null,
        degenerate: g.degenerate,
        metrics: g.summaries(),
        atlas: g.atlas(),
      }));
  }

  finish(): AuditReport {
    const o = this.options;
    const flags = [...classFlags(this), ...imageFlags(this)];
    const flagCounts = Object.fromEntries(FLAG_KINDS.map((k) => [k, 0])) as Record<FlagKind, number>;
    for (const f of flags) if (f.subject.type === 'class') flagCounts[f.kind]++;
    for (const [kind, n] of this.candidates.counts(this)) flagCounts[kind] += n;
    const histograms: AuditReport['histograms'] = {};
    METRIC_COLUMNS.forEach((c, i) => {
      const h = this.run.stat(i)?.hist;
      if (h && h.total > 0) histograms[c.name] = h.snapshot(o.reportBins);
    });
    const classes = new Set<number>();
    for (const cell of this.confusion.keys()) {
      classes.add(Math.floor(cell / 2 ** 21));
      classes.add(cell % 2 ** 21);
    }
    return {
      schema: AUDIT_SCHEMA,
      runId: this.context.runId,
      createdAt: (this.context.now?.() ?? new Date()).toISOString(),
      options: { ...o, metrics: DEFAULT_METRIC_OPTIONS },
      counts: { ...this.counts },
      metrics: this.run.summaries(),
      histograms,
      atlasSize: DEFAULT_METRIC_OPTIONS.atlasSize,
      atlas: this.run.atlas(),
      classes: { predicted: this.classReports(this.predicted, 'predicted'), true: this.classReports(this.truth, 'true') },
      unmatchedLabels: [...this.unmatched.entries()].map(([label, count]) => ({ label, count })).sort((a, b) => b.count - a.count || (a.label < b.label ? -1 : 1)),
      unmatchedLabelsTruncated: this.unmatchedTruncated,
      confusion:
        this.counts.matchedTruth > 0
          ? {
              classes: [...classes].sort((a, b) => a - b).map((i) => this.classRef(i)),
              cells: [...this.confusion.entries()].map(([cell, n]): [number, number, number] => [Math.floor(cell / 2 ** 21), cell % 2 ** 21, n]).sort((a, b) => a[0] - b[0] || a[1] - b[1]),
            }
          : null,
      flags,
      flagCounts,
    };
  }
}

/**
 * Image-level flag candidates, kept so that the final, run-relative thresholds select exactly:
 * - label suspects, per predicted class, ordered by the predicted probability (the final rule is a
 *   threshold on it per class), with a histogram of it for the exact count;
 * - out-of-distribution, among images under the absolute probability cap, ordered by entropy (the
 *   final rule is an entropy threshold), with a histogram for the exact count;
 * - right for the wrong reasons and degenerate maps, decided per image at once.
 */
export class ImageCandidates {
  readonly suspects = new Map<number, { top: BoundedTop<ImageCandidate>; hist: Histogram }>();
  /** Per class: the predicted probability where prediction and truth agree (self-confidence). */
  readonly agreeing = new Map<number, Histogram>();
  readonly ood: BoundedTop<ImageCandidate>;
  readonly oodEntropy: Histogram;
  readonly wrongReasons: BoundedTop<ImageCandidate>;
  readonly degenerate: BoundedTop<ImageCandidate>;

  constructor(private readonly o: AuditOptions) {
    this.ood = new BoundedTop(o.maxFlagsPerKind);
    this.oodEntropy = new Histogram(0, 1, o.runBins);
    this.wrongReasons = new BoundedTop(o.maxFlagsPerKind);
    this.degenerate = new BoundedTop(o.maxFlagsPerKind);
  }

  offer(line: AuditLine, trueIndex: number | null): void {
    const m = line.metrics;
    const top1 = line.top1;
    const candidate = (): ImageCandidate => ({ line: { key: line.key, top1, truth: line.truth, outputs: line.outputs, degenerate: line.degenerate }, metrics: m });
    if (line.degenerate === true) this.degenerate.offer(1, candidate());
    if (m === undefined || top1 === undefined) return;
    const prob = num(m, 'top1Prob');
    const entropy = num(m, 'entropy');
    if (prob === undefined) return;
    if (trueIndex !== null && top1.index === trueIndex) {
      let h = this.agreeing.get(trueIndex);
      if (h === undefined) {
        h = new Histogram(0, 1, this.o.runBins);
        this.agreeing.set(trueIndex, h);
      }
      h.add(prob);
    }
    if (trueIndex !== null && top1.index !== trueIndex) {
      let s = this.suspects.get(top1.index);
      if (s === undefined) {
        s = { top: new BoundedTop(this.o.maxFlagsPerKind), hist: new Histogram(0, 1, this.o.runBins) };
        this.suspects.set(top1.index, s);
      }
      s.hist.add(prob);
      if (prob >= this.o.labelSuspectMinProb) s.top.offer(prob, candidate());
    }
    if (entropy !== undefined && prob <= this.o.oodMaxProb) {
      this.oodEntropy.add(entropy);
      if (entropy >= this.o.oodMinEntropy) this.ood.offer(entropy, candidate());
    }
    const energy = num(m, 'boxEnergy');
    const area = num(m, 'boxArea');
    if (m.correct === true && energy !== undefined && area !== undefined && area > 0 && m.pointingHit === false) {
      const ratio = energy / area;
      if (ratio < this.o.wrongReasonsMaxEnergyOverArea) this.wrongReasons.offer(1 - ratio, candidate());
    }
  }

  /** Exact totals per image-level kind, under the final thresholds. */
  counts(acc: AuditAccumulator): [FlagKind, number][] {
    const t = thresholds(acc);
    let suspects = 0;
    for (const [cls, s] of this.suspects) suspects += s.hist.countFromBin(t.suspectBin(cls));
    return [
      ['label-suspect', suspects],
      ['out-of-distribution', this.oodEntropy.countFromBin(t.oodEntropyBin)],
      ['right-for-wrong-reasons', this.wrongReasons.offered],
      ['degenerate-map', this.degenerate.offered],
    ];
  }
}

function num(m: ImageMetrics, key: string): number | undefined {
  const v = m[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
