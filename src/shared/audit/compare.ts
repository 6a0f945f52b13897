/**
 * Two runs over the same keys (two models, two versions, two methods): do they predict the same,
 * and do they look at the same places? Lines are joined on the key; the per-image map similarity
 * comes from the atlas maps the lines carry, so nothing but the two manifests is read. Memory is
 * bounded by the number of classes and the top-N lists, not by the number of images, when both
 * manifests are in key order (a merge join); `hashJoin` serves manifests that are not.
 */
import { BoundedTop } from './bounded-top.js';
import { MetricStats } from './accumulator.js';
import { decodeAtlas, DEFAULT_METRIC_OPTIONS } from './image-metrics.js';
import { mapSimilarity } from './map-similarity.js';
import { METRICS_EXTRA_KEYS, metricText } from './metric-table.js';
import { round } from './numbers.js';
import type { AuditLine, ClassRef, MetricSummary } from './types.js';

export const COMPARE_SCHEMA = 'gradcam-audit/compare@1';

/** Metrics whose class means are compared side by side. */
const SIDE_BY_SIDE = ['top1Prob', 'borderShare', 'cornerTopLeft', 'cornerTopRight', 'cornerBottomLeft', 'cornerBottomRight', 'boxEnergy', 'pointingHit'] as const;

export interface ClassChange {
  class: ClassRef;
  /** Images of this class in both runs (by truth when both lines have it, else run A's prediction). */
  images: number;
  /** Share of them with the same top-1 class in both runs. */
  agreement: number;
  /** Mean per-image Spearman ρ of the two maps, and mean top-20% IoU. */
  rankCorrelation: number | null;
  topIou: number | null;
  /** 1 − mean ρ: how far attention moved (0 = same places, 2 = opposite). Classes are sorted by it. */
  movement: number;
  /** The class's mean maps on the atlas grid in each run. */
  atlasA: number[] | null;
  atlasB: number[] | null;
  /** Class means in each run. */
  metrics: Record<string, { a: number | null; b: number | null }>;
}

export interface ImageChange {
  key: string;
  a: { top1?: ClassRef; top1Prob: number | null; overlay?: string };
  b: { top1?: ClassRef; top1Prob: number | null; overlay?: string };
  rankCorrelation: number | null;
  topIou: number | null;
  /** Map change 1 − ρ, plus 1 when the top-1 class differs. */
  change: number;
}

export interface CompareReport {
  schema: typeof COMPARE_SCHEMA;
  runs: { a: string; b: string };
  createdAt: string;
  counts: { both: number; onlyA: number; onlyB: number; okInBoth: number; mapsInBoth: number };
  /** Share of images ok in both runs with the same top-1 class. */
  agreement: number | null;
  similarity: { rankCorrelation: MetricSummary; topIou: MetricSummary };
  atlasSize: number;
  /** Most moved first. */
  classes: ClassChange[];
  /** The images that changed most (top-N by `change`). */
  images: ImageChange[];
}

interface ClassAcc {
  images: number;
  agree: number;
  rho: MetricStats;
  iou: MetricStats;
  atlasA: Float64Array | null;
  atlasB: Float64Array | null;
  atlasN: number;
  metricsA: Map<string, MetricStats>;
  metricsB: Map<string, MetricStats>;
}

export class CompareAccumulator {
  private readonly counts = { both: 0, onlyA: 0, onlyB: 0, okInBoth: 0, mapsInBoth: 0 };
  private agree = 0;
  private readonly rho = new MetricStats([-1, 1], 200);
  private readonly iou = new MetricStats([0, 1], 200);
  private readonly classes = new Map<number, ClassAcc>();
  private readonly labels = new Map<number, string>();
  private readonly changed: BoundedTop<ImageChange>;

  constructor(
    private readonly runs: { a: string; b: string },
    private readonly options: { maxImages?: number; now?: () => Date } = {},
  ) {
    this.changed = new BoundedTop(options.maxImages ?? 100);
  }

  /** One key: its line in run A, in run B, or both. */
  add(a: AuditLine | undefined, b: AuditLine | undefined): void {
    if (a === undefined && b === undefined) return;
    if (a === undefined) {
      this.counts.onlyB++;
      return;
    }
    if (b === undefined) {
      this.counts.onlyA++;
      return;
    }
    this.counts.both++;
    if (a.status !== 'ok' || b.status !== 'ok' || a.top1 === undefined || b.top1 === undefined) return;
    this.counts.okInBoth++;
    for (const t of [a.top1, b.top1]) if (t.label !== undefined) this.labels.set(t.index, t.label);
    const same = a.top1.index === b.top1.index;
    if (same) this.agree++;
    const truthA = a.truth?.index ?? null;
    const truthB = b.truth?.index ?? null;
    const cls = truthA !== null && truthA === truthB ? truthA : a.top1.index;
    if (truthA !== null && a.truth?.label !== undefined && !this.labels.has(truthA)) this.labels.set(truthA, a.truth.label);
    const c = this.classAcc(cls);
    c.images++;
    if (same) c.agree++;
    for (const name of SIDE_BY_SIDE) {
      addMetric(c.metricsA, name, a.metrics?.[name]);
      addMetric(c.metricsB, name, b.metrics?.[name]);
    }
    const ma = decodeAtlas(metricText(a.metrics, METRICS_EXTRA_KEYS.atlas));
    const mb = decodeAtlas(metricText(b.metrics, METRICS_EXTRA_KEYS.atlas));
    let rho: number | null = null;
    let iou: number | null = null;
    if (ma !== null && mb !== null) {
      this.counts.mapsInBoth++;
      const s = mapSimilarity(ma, mb);
      rho = s.rankCorrelation;
      iou = s.topIou;
      if (rho !== null) {
        this.rho.add(rho);
        c.rho.add(rho);
      }
      this.iou.add(iou);
      c.iou.add(iou);
      c.atlasA = addAtlas(c.atlasA, ma);
      c.atlasB = addAtlas(c.atlasB, mb);
      c.atlasN++;
    }
    const change = (rho === null ? 0 : 1 - rho) + (same ? 0 : 1);
    const side = (l: AuditLine) => ({ top1: l.top1 ? this.ref(l.top1.index) : undefined, top1Prob: typeof l.metrics?.top1Prob === 'number' ? round(l.metrics.top1Prob) : (l.top1?.probability ?? null), ...(l.outputs?.overlay ? { overlay: l.outputs.overlay } : {}) });
    this.changed.offer(change, { key: a.key, a: side(a), b: side(b), rankCorrelation: rho === null ? null : round(rho), topIou: iou === null ? null : round(iou), change: round(change) });
  }

  private ref(index: number): ClassRef {
    const label = this.labels.get(index);
    return label === undefined ? { index } : { index, label };
  }

  private classAcc(index: number): ClassAcc {
    let c = this.classes.get(index);
    if (c === undefined) {
      c = { images: 0, agree: 0, rho: new MetricStats(null, 1), iou: new MetricStats(null, 1), atlasA: null, atlasB: null, atlasN: 0, metricsA: new Map(), metricsB: new Map() };
      this.classes.set(index, c);
    }
    return c;
  }

  finish(): CompareReport {
    const classes: ClassChange[] = [...this.classes.entries()].map(([index, c]) => {
      const meanRho = c.rho.mean;
      const metrics: ClassChange['metrics'] = {};
      for (const name of SIDE_BY_SIDE) {
        const a = c.metricsA.get(name)?.mean ?? null;
        const b = c.metricsB.get(name)?.mean ?? null;
        if (a !== null || b !== null) metrics[name] = { a: a === null ? null : round(a), b: b === null ? null : round(b) };
      }
      return {
        class: this.ref(index),
        images: c.images,
        agreement: round(c.agree / c.images),
        rankCorrelation: meanRho === null ? null : round(meanRho),
        topIou: c.iou.mean === null ? null : round(c.iou.mean),
        movement: meanRho === null ? 0 : round(1 - meanRho),
        atlasA: meanAtlas(c.atlasA, c.atlasN),
        atlasB: meanAtlas(c.atlasB, c.atlasN),
        metrics,
      };
    });
    classes.sort((x, y) => y.movement - x.movement || y.images - x.images || x.class.index - y.class.index);
    return {
      schema: COMPARE_SCHEMA,
      runs: this.runs,
      createdAt: (this.options.now?.() ?? new Date()).toISOString(),
      counts: { ...this.counts },
      agreement: this.counts.okInBoth > 0 ? round(this.agree / this.counts.okInBoth) : null,
      similarity: { rankCorrelation: this.rho.summary(), topIou: this.iou.summary() },
      atlasSize: DEFAULT_METRIC_OPTIONS.atlasSize,
      classes,
      images: this.changed.sorted().map((e) => e.item),
    };
  }
}

function addMetric(map: Map<string, MetricStats>, name: string, v: unknown): void {
  const x = typeof v === 'boolean' ? (v ? 1 : 0) : v;
  if (typeof x !== 'number' || !Number.isFinite(x)) return;
  let s = map.get(name);
  if (s === undefined) {
    s = new MetricStats(null, 1);
    map.set(name, s);
  }
  s.add(x);
}

function addAtlas(sum: Float64Array | null, bytes: Uint8Array): Float64Array {
  const out = sum ?? new Float64Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) out[i] += bytes[i] / 255;
  return out;
}

function meanAtlas(sum: Float64Array | null, n: number): number[] | null {
  return sum === null || n === 0 ? null : Array.from(sum, (v) => round(v / n));
}

/** A manifest that is not in key order cannot be merge-joined. */
export class UnorderedManifestError extends Error {
  constructor(which: string, previous: string, key: string) {
    super(`${which}'s manifest is not in key order ("${key}" after "${previous}")`);
    this.name = 'UnorderedManifestError';
  }
}

/** Merge join of two key-ordered line streams (UTF-16 code unit order, as JavaScript compares). */
export async function* mergeJoin(a: AsyncIterable<AuditLine>, b: AsyncIterable<AuditLine>): AsyncGenerator<[AuditLine | undefined, AuditLine | undefined]> {
  const ia = a[Symbol.asyncIterator]();
  const ib = b[Symbol.asyncIterator]();
  let prevA: string | undefined;
  let prevB: string | undefined;
  const next = async (it: AsyncIterator<AuditLine>, which: 'A' | 'B'): Promise<AuditLine | undefined> => {
    const r = await it.next();
    if (r.done) return undefined;
    const prev = which === 'A' ? prevA : prevB;
    if (prev !== undefined && !(r.value.key > prev)) throw new UnorderedManifestError(`run ${which}`, prev, r.value.key);
    if (which === 'A') prevA = r.value.key;
    else prevB = r.value.key;
    return r.value;
  };
  let la = await next(ia, 'A');
  let lb = await next(ib, 'B');
  while (la !== undefined || lb !== undefined) {
    if (lb === undefined || (la !== undefined && la.key < lb.key)) {
      yield [la, undefined];
      la = await next(ia, 'A');
    } else if (la === undefined || lb.key < la.key) {
      yield [undefined, lb];
      lb = await next(ib, 'B');
    } else {
      yield [la, lb];
      la = await next(ia, 'A');
      lb = await next(ib, 'B');
    }
  }
}

/** Join for manifests in any order: run A's lines are held in memory (O(run A)). */
export async function* hashJoin(a: AsyncIterable<AuditLine>, b: AsyncIterable<AuditLine>): AsyncGenerator<[AuditLine | undefined, AuditLine | undefined]> {
  const left = new Map<string, AuditLine>();
  for await (const l of a) left.set(l.key, l);
  for await (const r of b) {
    const l = left.get(r.key);
    left.delete(r.key);
    yield [l, r];
  }
  for (const l of left.values()) yield [l, undefined];
}
