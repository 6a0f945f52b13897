/**
 * The one table of per-image metrics. The audit accumulator summarises these columns, the Parquet
 * table stores them, the report draws their histograms and the dashboard sorts by them: adding a
 * metric is one row here (and its formula in docs/audit-metrics.md).
 */
import { CORNERS, type CornerName } from './image-metrics.js';
import type { ImageMetrics } from './types.js';

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
  get(m: ImageMetrics): number | null | undefined;
}

const rate = (b: boolean | undefined): number | undefined => (b === undefined ? undefined : b ? 1 : 0);

const CORNER_LABELS: Record<CornerName, string> = { topLeft: 'top-left', topRight: 'top-right', bottomLeft: 'bottom-left', bottomRight: 'bottom-right' };

export const METRIC_COLUMNS: readonly MetricColumn[] = [
  { name: 'top1Prob', label: 'top-1 probability', group: 'prediction', kind: 'number', range: [0, 1], get: (m) => m.prediction.top1Prob },
  { name: 'margin', label: 'margin to top-2', group: 'prediction', kind: 'number', range: [0, 1], get: (m) => m.prediction.margin },
  { name: 'entropy', label: 'entropy (normalised)', group: 'prediction', kind: 'number', range: [0, 1], get: (m) => m.prediction.entropy },
  { name: 'correct', label: 'correct', group: 'truth', kind: 'rate', range: [0, 1], get: (m) => rate(m.prediction.correct) },
  { name: 'trueRank', label: 'rank of the true class', group: 'truth', kind: 'integer', range: null, get: (m) => m.prediction.trueRank },
  { name: 'trueProb', label: 'true-class probability', group: 'truth', kind: 'number', range: [0, 1], get: (m) => m.prediction.trueProb },
  { name: 'peakX', label: 'peak x', group: 'map', kind: 'number', range: [0, 1], get: (m) => m.map?.peakX },
  { name: 'peakY', label: 'peak y', group: 'map', kind: 'number', range: [0, 1], get: (m) => m.map?.peakY },
  { name: 'centroidX', label: 'centroid x', group: 'map', kind: 'number', range: [0, 1], get: (m) => m.map?.centroidX },
  { name: 'centroidY', label: 'centroid y', group: 'map', kind: 'number', range: [0, 1], get: (m) => m.map?.centroidY },
  // The largest possible spread on the unit square is √½ (all heat split between opposite corners).
  { name: 'spread', label: 'spread', group: 'map', kind: 'number', range: [0, Math.SQRT1_2], get: (m) => m.map?.spread },
  { name: 'gini', label: 'Gini sparseness', group: 'map', kind: 'number', range: [0, 1], get: (m) => m.map?.gini },
  { name: 'borderShare', label: 'border-band share', group: 'map', kind: 'number', range: [0, 1], get: (m) => m.map?.borderShare },
  ...CORNERS.map(
    (c): MetricColumn => ({
      name: cornerMetricName(c),
      label: `${CORNER_LABELS[c]} corner share`,
      group: 'map',
      kind: 'number',
      range: [0, 1],
      get: (m) => m.map?.cornerShares[c],
    }),
  ),
  { name: 'boxEnergy', label: 'energy in boxes', group: 'boxes', kind: 'number', range: [0, 1], get: (m) => m.map?.boxEnergy },
  { name: 'boxArea', label: 'box area share', group: 'boxes', kind: 'number', range: [0, 1], get: (m) => m.map?.boxArea },
  { name: 'pointingHit', label: 'pointing game', group: 'boxes', kind: 'rate', range: [0, 1], get: (m) => rate(m.map?.pointingHit) },
  { name: 'topIou', label: 'top-20% IoU with boxes', group: 'boxes', kind: 'number', range: [0, 1], get: (m) => m.map?.topIou },
  { name: 'faithTopDrop', label: 'drop, top region blurred', group: 'faithfulness', kind: 'number', range: [-1, 1], get: (m) => m.faithfulness?.topDrop },
  { name: 'faithRandomDrop', label: 'drop, random region blurred', group: 'faithfulness', kind: 'number', range: [-1, 1], get: (m) => m.faithfulness?.randomDrop },
  { name: 'faithfulness', label: 'faithfulness (top − random drop)', group: 'faithfulness', kind: 'number', range: [-1, 1], get: (m) => m.faithfulness?.score },
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

/** A column's value for one image as a finite number, or undefined. */
export function metricValue(column: MetricColumn, m: ImageMetrics | undefined): number | undefined {
  if (m === undefined) return undefined;
  const v = column.get(m);
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}
