/**
 * The one table of per-image metrics. The audit accumulator summarises these columns, the Parquet
 * table stores them, the report draws their histograms and the dashboard sorts by them: adding a
 * metric is one row here (and its formula in docs/audit-metrics.md).
 */
import { CORNERS, encodeAtlas, type CornerName, type MapMetrics, type PredictionMetrics } from './image-metrics.js';
import type { FaithfulnessMetrics, ImageMetrics, MetricValue } from './types.js';

export type MetricGroup = 'prediction' | 'truth' | 'map' | 'boxes' | 'faithfulness';

export interface MetricColumn {
  /** Key in JSON, Parquet column name (snake_case of it) and dashboard sort key. */
  name: string;
  label: string;
  group: MetricGroup;
  /** `rate`: a yes/no outcome summarised as a share; `integer`: a count or rank. */
  kind: 'number' | 'rate' | 'integer';
  /** Range of the histogram; null: no histogram (unbounded). */
  range: readonly [number, number] | null;
}

const CORNER_LABELS: Record<CornerName, string> = { topLeft: 'top-left', topRight: 'top-right', bottomLeft: 'bottom-left', bottomRight: 'bottom-right' };

export const METRIC_COLUMNS: readonly MetricColumn[] = [
  { name: 'top1Prob', label: 'top-1 probability', group: 'prediction', kind: 'number', range: [0, 1] },
  { name: 'margin', label: 'margin to top-2', group: 'prediction', kind: 'number', range: [0, 1] },
  { name: 'entropy', label: 'entropy (normalised)', group: 'prediction', kind: 'number', range: [0, 1] },
  { name: 'correct', label: 'correct', group: 'truth', kind: 'rate', range: [0, 1] },
  { name: 'trueRank', label: 'rank of the true class', group: 'truth', kind: 'integer', range: null },
  { name: 'trueProb', label: 'true-class probability', group: 'truth', kind: 'number', range: [0, 1] },
  { name: 'peakX', label: 'peak x', group: 'map', kind: 'number', range: [0, 1] },
  { name: 'peakY', label: 'peak y', group: 'map', kind: 'number', range: [0, 1] },
  { name: 'centroidX', label: 'centroid x', group: 'map', kind: 'number', range: [0, 1] },
  { name: 'centroidY', label: 'centroid y', group: 'map', kind: 'number', range: [0, 1] },
  // The largest possible spread on the unit square is √½ (all heat split between opposite corners).
  { name: 'spread', label: 'spread', group: 'map', kind: 'number', range: [0, Math.SQRT1_2] },
  { name: 'gini', label: 'Gini sparseness', group: 'map', kind: 'number', range: [0, 1] },
  { name: 'borderShare', label: 'border-band share', group: 'map', kind: 'number', range: [0, 1] },
  ...CORNERS.map(
    (c): MetricColumn => ({
      name: cornerMetricName(c),
      label: `${CORNER_LABELS[c]} corner share`,
      group: 'map',
      kind: 'number',
      range: [0, 1],
    }),
  ),
  { name: 'boxEnergy', label: 'energy in boxes', group: 'boxes', kind: 'number', range: [0, 1] },
  { name: 'boxArea', label: 'box area share', group: 'boxes', kind: 'number', range: [0, 1] },
  { name: 'pointingHit', label: 'pointing game', group: 'boxes', kind: 'rate', range: [0, 1] },
  { name: 'topIou', label: 'top-20% IoU with boxes', group: 'boxes', kind: 'number', range: [0, 1] },
  { name: 'faithTopDrop', label: 'drop, top region blurred', group: 'faithfulness', kind: 'number', range: [-1, 1] },
  { name: 'faithRandomDrop', label: 'drop, random region blurred', group: 'faithfulness', kind: 'number', range: [-1, 1] },
  { name: 'faithfulness', label: 'faithfulness (top − random drop)', group: 'faithfulness', kind: 'number', range: [-1, 1] },
];

/** `cornerTopLeft`, … */
export function cornerMetricName(c: CornerName): string {
  return `corner${c[0].toUpperCase()}${c.slice(1)}`;
}

export const METRIC_NAMES: readonly string[] = METRIC_COLUMNS.map((c) => c.name);

const COLUMN_INDEX = new Map(METRIC_COLUMNS.map((c, i) => [c.name, i] as const));

/** Position of a metric in `METRIC_COLUMNS`. */
export function columnIndex(name: string): number {
  const i = COLUMN_INDEX.get(name);
  if (i === undefined) throw new RangeError(`unknown metric ${name}`);
  return i;
}

export function metricColumn(name: string): MetricColumn | undefined {
  return METRIC_COLUMNS.find((c) => c.name === name);
}

/** Keys of an image's metrics record besides the metric columns. */
export const METRICS_EXTRA_KEYS = Object.freeze({ atlas: 'atlas', imageWidth: 'imageWidth', imageHeight: 'imageHeight', degenerate: 'degenerate' });

/** A column's value for one image as a finite number (a rate's true/false as 1/0), or undefined. */
export function metricValue(column: MetricColumn, m: ImageMetrics | undefined): number | undefined {
  const v = m?.[column.name];
  if (typeof v === 'boolean') return v ? 1 : 0;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

/** The record's value under `key` when it is a string. */
export function metricText(m: ImageMetrics | undefined, key: string): string | undefined {
  const v = m?.[key];
  return typeof v === 'string' ? v : undefined;
}

export interface MetricParts {
  image: { width: number; height: number };
  prediction: PredictionMetrics;
  map: MapMetrics | null;
  atlas: Uint8Array | null;
  /** Why the map is degenerate, when it is. */
  degenerate?: string | null;
  faithfulness?: FaithfulnessMetrics;
}

/** The flat record of one image's metrics, keyed by the metric table's names. */
export function toMetricsRecord(p: MetricParts): ImageMetrics {
  const r: Record<string, MetricValue> = {
    [METRICS_EXTRA_KEYS.imageWidth]: p.image.width,
    [METRICS_EXTRA_KEYS.imageHeight]: p.image.height,
    top1Prob: p.prediction.top1Prob,
    margin: p.prediction.margin,
    entropy: p.prediction.entropy,
  };
  if (p.prediction.correct !== undefined) Object.assign(r, { correct: p.prediction.correct, trueRank: p.prediction.trueRank ?? null, trueProb: p.prediction.trueProb ?? null });
  const m = p.map;
  if (m !== null) {
    Object.assign(r, { peakX: m.peakX, peakY: m.peakY, centroidX: m.centroidX, centroidY: m.centroidY, spread: m.spread, gini: m.gini, borderShare: m.borderShare });
    for (const c of CORNERS) r[cornerMetricName(c)] = m.cornerShares[c];
    if (m.boxEnergy !== undefined) Object.assign(r, { boxEnergy: m.boxEnergy, boxArea: m.boxArea ?? null, pointingHit: m.pointingHit ?? null, topIou: m.topIou ?? null });
  }
  if (p.faithfulness) Object.assign(r, { faithTopDrop: p.faithfulness.topDrop, faithRandomDrop: p.faithfulness.randomDrop, faithfulness: p.faithfulness.score });
  if (p.atlas !== null) r[METRICS_EXTRA_KEYS.atlas] = encodeAtlas(p.atlas);
  if (p.degenerate) r[METRICS_EXTRA_KEYS.degenerate] = p.degenerate;
  return r;
}
