/**
 * Output documents. `ImageManifest` is the prediction document the image core writes per image
 * for `explain` and for workers alike (`predictions/<name>.json`); `RunManifestLine` is one line
 * of a run's `manifest.jsonl` (and of `explain --json`), derived from that document by
 * `manifestLineOf`; `RunSummary` is `summary.json`. The dashboard reads all three, so they live in
 * `shared`.
 */
import type { ArtifactPaths } from './artifacts.js';
import type { ImageMetrics, LineTruth } from './audit/types.js';
import type { CamMethod, ResizeMode, ScoreMode } from './explain-options.js';
import type { PreprocessMode } from './preprocessing.js';

/** @2: `outputs.manifest` became `outputs.prediction`; `metrics`, `truth` and `units` added. */
export const IMAGE_MANIFEST_SCHEMA = 'gradcam-audit/image@2';

/** What the numbers of a prediction document mean; written into every document. */
export const PREDICTION_UNITS = Object.freeze({
  timings: 'milliseconds of wall time per stage; infer is the batch time divided by the batch size',
  grid: 'row-major: gridHeight rows of gridWidth values, top row first, value [y * gridWidth + x]; normalised to [0,1], rounded to 1e-4',
  coordinates: 'pixels of the oriented (EXIF-applied) source image, origin top left',
});
export const RUN_SUMMARY_SCHEMA = 'gradcam-audit/summary@1';

export interface Prediction {
  index: number;
  /** Present when labels are known (ImageNet class index or `--labels`). */
  wnid?: string;
  label?: string;
  probability: number;
}

export interface CamRecord {
  classIndex: number;
  wnid?: string;
  label?: string;
  /** Value of the differentiated score for this class. */
  score: number;
  gridHeight: number;
  gridWidth: number;
  /** Row-major (`grid[y * gridWidth + x]`, top row first), normalised to [0,1], rounded to 1e-4. All zeros when degenerate. */
  grid: number[];
  rawMax: number;
  rawMean: number;
  degenerate: string | null;
}

/** The model properties a prediction was made with (src/shared/model-options.ts). */
export interface ModelProvenance {
  /** Input preprocessing mode (`--preprocess`). */
  preprocess: PreprocessMode;
  /** torchvision center crop (`--center-crop`). */
  centerCrop: boolean;
  /** Where the class names came from: a file or URI, `imagenet`, or `none`. */
  labels: string;
}

export interface Provenance extends ModelProvenance {
  modelName: string;
  weightsSource: string;
  weightsHash: string;
  layer: string;
  method: CamMethod;
  score: ScoreMode;
  resize: ResizeMode;
  engine: string;
  backend: string;
  device: string;
  packageVersion: string;
  /** With `--faithfulness`: the perturbation it measured with (docs/audit-metrics.md). */
  faithfulness?: { fraction: number; blurSigma: number };
}

export interface SourceInfo {
  /** Local path (explain) or s3:// URI (worker). */
  uri: string;
  bucket?: string;
  key?: string;
  etag?: string;
  size: number;
  format: string;
  /** Oriented (EXIF-applied) size of the decoded image. */
  width: number;
  height: number;
}

export interface ImageManifest {
  schema: typeof IMAGE_MANIFEST_SCHEMA;
  source: SourceInfo;
  provenance: Provenance;
  predictions: Prediction[];
  targets: CamRecord[];
  /** Output locations per artifact (shared/artifacts.ts): paths relative to `--out` (explain) or s3:// URIs (worker). */
  outputs: ArtifactPaths;
  /** The audit's per-image metrics (docs/audit-metrics.md), in image coordinates. */
  metrics: ImageMetrics;
  /** Ground truth given for the image (`enqueue --truth`), matched to the model's classes. */
  truth?: LineTruth;
  /** Milliseconds per stage; the engine's time is the batch time divided by the batch size. */
  timings: Record<string, number>;
  /** Units and orders of the numbers above (`PREDICTION_UNITS`). */
  units: typeof PREDICTION_UNITS;
  run?: { runId: string; workerId: string; jobId: string };
  createdAt: string;
}

export interface RunManifestLine {
  key: string;
  status: 'ok' | 'failed';
  top1?: { index: number; label?: string; probability: number };
  outputs?: ArtifactPaths;
  degenerate?: boolean;
  /** Ground truth, when the run has it for this image (the audit's accumulator reads it). */
  truth?: LineTruth;
  /** The image's metrics record, as in its prediction document (the audit's accumulator reads it). */
  metrics?: ImageMetrics;
  error?: string;
}

/**
 * An ok image's manifest line, from its prediction document: one derivation for every host.
 * `outputs` comes from the caller, who knows where the image's outputs are by the one rule
 * (outputKeysFor), never from the document: a stored document is only as trustworthy as whoever could write to the output bucket, and the run's analysis reads the
 * objects a line names.
 */
export function manifestLineOf(key: string, doc: ImageManifest, outputs: ArtifactPaths): RunManifestLine {
  const top = doc.predictions[0];
  const line: RunManifestLine = { key, status: 'ok' };
  if (top) line.top1 = { index: top.index, probability: top.probability, ...(top.label !== undefined ? { label: top.label } : {}) };
  line.degenerate = doc.targets.some((t) => t.degenerate !== null);
  line.outputs = outputs;
  if (doc.truth) line.truth = doc.truth;
  // A document from before metrics existed (an idempotent re-run over old outputs) has none.
  if (doc.metrics) line.metrics = doc.metrics;
  return line;
}

/** A failed image's manifest line. */
export function failedLineOf(key: string, error: string): RunManifestLine {
  return { key, status: 'failed', error };
}

export interface RunSummary {
  schema: typeof RUN_SUMMARY_SCHEMA;
  runId: string;
  source: string;
  output: string;
  counts: { total: number; ok: number; failed: number };
  classHistogram: Array<{ index: number; label?: string; count: number }>;
  degenerateMaps: number;
  /** counts.total ÷ processingSeconds: the run's throughput (one definition, shared/run-stats.ts). */
  throughputImagesPerSecond: number;
  /** finishedAt − createdAt: enqueue to completion, waiting for workers included. */
  wallTimeSeconds: number;
  /** finishedAt − startedAt: from the first image taken by a worker to completion. */
  processingSeconds: number;
  provenance: Partial<Provenance>;
  /** When enqueue created the run. */
  createdAt: string;
  /** When a worker took the run's first image; absent for a run with no image. */
  startedAt?: string;
  finishedAt: string;
  /**
   * The run's analysis (audit.json, metrics.parquet, report.html), written by the finalizer after
   * this file; absent until it has run. A failed analysis never blocks the manifest:
   * `gradcam-audit report RUN_ID` redoes it.
   */
  analysis?: RunAnalysisRecord;
}

export type RunAnalysisRecord =
  | { status: 'written'; files: string[]; flags: number; seconds: number }
  | { status: 'failed'; error: string; seconds: number; redo: string };
