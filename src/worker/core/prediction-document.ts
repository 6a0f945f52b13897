/**
 * Engine result → prediction document (`ImageManifest`, `predictions/<name>.json`). The image
 * core builds it for `explain` and workers alike, so this is the one place that decides its
 * content: predictions decoded with labels, one CamRecord per target (grid rounded to 1e-4),
 * metrics and truth, provenance, timings and their units.
 */
import type { ImageMetrics, LineTruth } from '../../shared/audit/types.js';
import type { ExplainOptions } from '../../shared/explain-options.js';
import { IMAGE_MANIFEST_SCHEMA, PREDICTION_UNITS } from '../../shared/manifest.js';
import type { CamRecord, ImageManifest, ModelProvenance, Provenance, SourceInfo } from '../../shared/manifest.js';
import type { CamMap, EngineImageResult, EngineInfo } from '../engine/engine.js';
import { DEFAULT_FAITHFULNESS_OPTIONS } from '../engine/faithfulness.js';
import type { ClassLabel } from '../model/labels.js';
import { decodeTopK } from '../model/labels.js';

export interface AssembleInput {
  source: SourceInfo;
  result: EngineImageResult;
  engine: EngineInfo;
  options: Pick<ExplainOptions, 'topK' | 'method' | 'score' | 'resize' | 'faithfulness'>;
  /** Labels per class index, or null for index-only output. */
  labels: readonly ClassLabel[] | null;
  /** Where the weights came from (path, s3:// URI or URL). */
  weightsSource: string;
  /** Preprocessing and labels the model was run with. */
  model: ModelProvenance;
  packageVersion: string;
  outputs: ImageManifest['outputs'];
  metrics: ImageMetrics;
  truth?: LineTruth;
  /** Milliseconds per stage. */
  timings: Record<string, number>;
  run?: ImageManifest['run'];
  /** Injected for reproducible tests. Default now. */
  now?: Date;
}

export function provenanceOf(engine: EngineInfo, options: AssembleInput['options'], weightsSource: string, packageVersion: string, model: ModelProvenance): Provenance {
  return {
    modelName: engine.modelName,
    weightsSource,
    weightsHash: engine.weightsHash,
    layer: engine.layer,
    preprocess: model.preprocess,
    centerCrop: model.centerCrop,
    labels: model.labels,
    method: options.method,
    score: options.score,
    resize: options.resize,
    engine: engine.engine,
    backend: engine.backend,
    device: engine.device,
    packageVersion,
    ...(options.faithfulness ? { faithfulness: { fraction: DEFAULT_FAITHFULNESS_OPTIONS.fraction, blurSigma: DEFAULT_FAITHFULNESS_OPTIONS.blurSigma } } : {}),
  };
}

export function camRecordOf(cam: CamMap, labels: readonly ClassLabel[] | null): CamRecord {
  const label = labels?.[cam.classIndex];
  const record: CamRecord = {
    classIndex: cam.classIndex,
    score: finiteOrZero(cam.score),
    gridHeight: cam.height,
    gridWidth: cam.width,
    grid: roundedGrid(cam.grid),
    // JSON has no NaN: a non-finite statistic is recorded as 0, and `degenerate` says why.
    rawMax: finiteOrZero(cam.rawMax),
    rawMean: finiteOrZero(cam.rawMean),
    degenerate: cam.degenerate,
  };
  if (label?.wnid !== undefined) record.wnid = label.wnid;
  if (label) record.label = label.label;
  return record;
}

export function predictionDocumentOf(input: AssembleInput): ImageManifest {
  const doc: ImageManifest = {
    schema: IMAGE_MANIFEST_SCHEMA,
    source: input.source,
    provenance: provenanceOf(input.engine, input.options, input.weightsSource, input.packageVersion, input.model),
    predictions: decodeTopK(input.result.probabilities, input.options.topK, input.labels),
    targets: input.result.cams.map((cam) => camRecordOf(cam, input.labels)),
    outputs: input.outputs,
    metrics: input.metrics,
    timings: roundTimings(input.timings),
    units: PREDICTION_UNITS,
    createdAt: (input.now ?? new Date()).toISOString(),
  };
  if (input.truth) doc.truth = input.truth;
  if (input.run) doc.run = input.run;
  return doc;
}

/** Timings as documents carry them: milliseconds to 0.01. */
export function roundTimings(timings: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v * 100) / 100]));
}

/**
 * The document's bytes, as both hosts write them: indented, except each target's grid, which is one
 * line. Indented, a 56x56 grid was a line per value: 38 instead of 23 KB per document, and 25% more
 * CPU to encode, for no reader (the dashboard parses it; a person reads the rest of the document).
 */
export function encodePredictionDocument(doc: ImageManifest): Buffer {
  const token = (i: number): string => `\u0000grid ${i}`;
  const shell = { ...doc, targets: doc.targets.map((t, i) => ({ ...t, grid: token(i) })) };
  let text = JSON.stringify(shell, null, 1);
  for (let i = 0; i < doc.targets.length; i++) {
    const quoted = JSON.stringify(token(i));
    const at = text.indexOf(quoted);
    // A token must stand for its grid alone: should any other string in the document read the same
    // (a key naming it), the document is written all indented instead.
    if (at < 0 || text.indexOf(quoted, at + 1) >= 0) return Buffer.from(`${JSON.stringify(doc, null, 1)}\n`, 'utf8');
    text = text.slice(0, at) + JSON.stringify(doc.targets[i].grid) + text.slice(at + quoted.length);
  }
  return Buffer.from(`${text}\n`, 'utf8');
}

/**
 * The grid to 1e-4, as JSON numbers. A plain loop: `Array.from(grid, fn)` walks a typed array
 * through the iterator protocol, 8x slower for a 56x56 map, and its iterator results were the
 * largest stream of objects the worker's full collections reclaimed (they live until the document
 * is written).
 */
function roundedGrid(grid: Float32Array): number[] {
  // Pushed, not preallocated: a holey array (`new Array(n)`) takes JSON.stringify's slow path.
  const out: number[] = [];
  for (let i = 0; i < grid.length; i++) out.push(Math.round(grid[i] * 1e4) / 1e4);
  return out;
}

function finiteOrZero(v: number): number {
  return Number.isFinite(v) ? v : 0;
}
