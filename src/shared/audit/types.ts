/**
 * The audit's documents: what one image contributes (`ImageMetrics`, `LineTruth`, carried by the
 * prediction JSON and the manifest line) and what a run's analysis publishes (`AuditReport`,
 * `audit.json`). Field meanings and formulas: docs/audit-metrics.md.
 */
import type { HistogramSnapshot } from './histogram.js';

export const AUDIT_SCHEMA = 'gradcam-audit/audit@1';

/** Opt-in (`--faithfulness`): how much the top of the map matters to the model. */
export interface FaithfulnessMetrics {
  /** Drop of the explained class's probability when the top region is replaced by a blurred copy. */
  topDrop: number;
  /** The same for a random region of the same area. */
  randomDrop: number;
  /** topDrop − randomDrop: > 0 when the map points at what the model uses. */
  score: number;
}

/**
 * One image's metrics as the prediction document, the manifest line and metrics.parquet carry them:
 * a flat record of named values, one column each. The metric names are the rows of
 * `METRIC_COLUMNS` (metric-table.ts); besides them, `atlas` (the map on the fixed atlas grid,
 * base64 bytes), `imageWidth`, `imageHeight` and `degenerate` (why the map is degenerate).
 * A metric that does not apply to the image (no truth, no boxes, no map) is null or absent.
 */
export type MetricValue = number | boolean | string | null;
export type ImageMetrics = Readonly<Record<string, MetricValue>>;

/** Ground truth as a job carries it to the worker: the label as written, boxes in image pixels. */
export interface JobTruth {
  label: string;
  /** [x0, y0, x1, y1) per box. */
  boxes?: [number, number, number, number][];
}

/** Ground truth as a manifest line carries it. */
export interface LineTruth {
  /** The label as the truth source wrote it. */
  label: string;
  /** The model class it matched (index, wnid or name), or null: counted as unmatched. */
  index: number | null;
  /** Number of boxes given for the image. */
  boxes: number;
}

/** What the audit reads from one manifest line. */
export interface AuditLine {
  key: string;
  status: 'ok' | 'failed';
  top1?: { index: number; label?: string; probability: number };
  degenerate?: boolean;
  outputs?: { overlay?: string; heatmap?: string; prediction?: string };
  truth?: LineTruth;
  metrics?: ImageMetrics;
  error?: string;
}

export type FlagKind =
  | 'corner-shortcut'
  | 'border-shortcut'
  | 'background-shortcut'
  | 'right-for-wrong-reasons'
  | 'label-suspect'
  | 'out-of-distribution'
  | 'degenerate-map';

export const FLAG_KINDS: readonly FlagKind[] = [
  'corner-shortcut',
  'border-shortcut',
  'background-shortcut',
  'right-for-wrong-reasons',
  'label-suspect',
  'out-of-distribution',
  'degenerate-map',
];

export interface ClassRef {
  index: number;
  label?: string;
}

export type FlagSubject =
  | { type: 'class'; class: ClassRef; role: 'predicted' | 'true' }
  | { type: 'image'; key: string; predicted?: ClassRef; truth?: ClassRef; overlay?: string; prediction?: string };

export interface AuditFlag {
  kind: FlagKind;
  /** Orders flags of one kind, higher first; its meaning per kind is in docs/audit-metrics.md. */
  severity: number;
  subject: FlagSubject;
  /** The measured values that raised the flag. */
  evidence: Record<string, number | string | boolean | null>;
  /** The thresholds they crossed. */
  threshold: Record<string, number>;
  /** One sentence a person can act on. */
  message: string;
}

export interface MetricSummary {
  /** Images with a value. */
  n: number;
  mean: number | null;
  /** 5th, 25th, 50th, 75th and 95th percentiles (within half a histogram bin). */
  quantiles: { p05: number; p25: number; p50: number; p75: number; p95: number } | null;
}

export interface ClassReport {
  class: ClassRef;
  role: 'predicted' | 'true';
  count: number;
  /** Top-1 accuracy among the class's images with a matched truth label; null without truth. */
  accuracy: number | null;
  degenerate: number;
  metrics: Record<string, MetricSummary>;
  /** Mean normalised map on the fixed grid, row-major, `atlasSize²` values in [0, 1]; null without maps. */
  atlas: number[] | null;
}

export interface AuditReport {
  schema: typeof AUDIT_SCHEMA;
  runId: string;
  createdAt: string;
  options: Record<string, unknown>;
  counts: { images: number; ok: number; failed: number; withMetrics: number; withTruth: number; matchedTruth: number; withBoxes: number; degenerate: number };
  /** Whole-run summaries per metric, and their histograms (for the report). */
  metrics: Record<string, MetricSummary>;
  histograms: Record<string, HistogramSnapshot>;
  atlasSize: number;
  /** The whole run's mean map. */
  atlas: number[] | null;
  classes: { predicted: ClassReport[]; true: ClassReport[] };
  /** Truth labels that matched no model class, with how often each occurred. */
  unmatchedLabels: { label: string; count: number }[];
  unmatchedLabelsTruncated: number;
  /** Sparse: one cell per (true, predicted) pair that occurred; null without truth. */
  confusion: { classes: ClassRef[]; cells: [number, number, number][] } | null;
  flags: AuditFlag[];
  /** Every flag raised per kind; `flags` keeps the most severe `maxFlagsPerKind` of each. */
  flagCounts: Record<FlagKind, number>;
}
