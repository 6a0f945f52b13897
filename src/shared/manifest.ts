/**
 * Output documents. `ImageManifest` is written per image by `explain` and by workers
 * (`predictions/<key>.json`); `RunManifestLine` is one line of a run's `manifest.jsonl`;
 * `RunSummary` is `summary.json`. The dashboard reads all three, so they live in `shared`.
 */
import type { CamMethod, ResizeMode, ScoreMode } from './explain-options.js';

export const IMAGE_MANIFEST_SCHEMA = 'gradcam-audit/image@1';
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
  /** Row-major, normalised to [0,1], rounded to 1e-4. All zeros when degenerate. */
  grid: number[];
  rawMax: number;
  rawMean: number;
  degenerate: string | null;
}

export interface Provenance {
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
  /** Output locations, relative names (explain) or s3:// URIs (worker). */
  outputs: { overlay: string; heatmap: string; manifest: string };
  /** Milliseconds per stage; the engine's time is the batch time divided by the batch size. */
  timings: Record<string, number>;
  run?: { runId: string; workerId: string; jobId: string };
  createdAt: string;
}

export interface RunManifestLine {
  key: string;
  status: 'ok' | 'failed';
  top1?: { index: number; label?: string; probability: number };
  outputs?: { overlay: string; heatmap: string; prediction: string };
  degenerate?: boolean;
  error?: string;
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
}
