/**
 * Engine result → per-image manifest (`ImageManifest`). The `explain` command and the pipeline
 * worker write the same document, so this is the one place that decides its content: predictions
 * decoded with labels, one CamRecord per target (grid rounded to 1e-4), provenance, timings.
 */
import type { ExplainOptions } from '../../shared/explain-options.js';
import { IMAGE_MANIFEST_SCHEMA } from '../../shared/manifest.js';
import type { CamRecord, ImageManifest, Provenance, SourceInfo } from '../../shared/manifest.js';
import type { CamMap, EngineImageResult, EngineInfo } from '../engine/engine.js';
import type { ClassLabel } from '../model/labels.js';
import { decodeTopK } from '../model/labels.js';

export interface AssembleInput {
  source: SourceInfo;
  result: EngineImageResult;
  engine: EngineInfo;
  options: Pick<ExplainOptions, 'topK' | 'method' | 'score' | 'resize'>;
  /** Labels per class index, or null for index-only output. */
  labels: readonly ClassLabel[] | null;
  /** Where the weights came from (path, s3:// URI or URL). */
  weightsSource: string;
  packageVersion: string;
  outputs: ImageManifest['outputs'];
  /** Milliseconds per stage. */
  timings: Record<string, number>;
  run?: ImageManifest['run'];
  /** Injected for reproducible tests. Default now. */
  now?: Date;
}

export function provenanceOf(engine: EngineInfo, options: AssembleInput['options'], weightsSource: string, packageVersion: string): Provenance {
  return {
    modelName: engine.modelName,
    weightsSource,
    weightsHash: engine.weightsHash,
    layer: engine.layer,
    method: options.method,
    score: options.score,
    resize: options.resize,
    engine: engine.engine,
    backend: engine.backend,
    device: engine.device,
    packageVersion,
  };
}

export function camRecordOf(cam: CamMap, labels: readonly ClassLabel[] | null): CamRecord {
  const label = labels?.[cam.classIndex];
  const record: CamRecord = {
    classIndex: cam.classIndex,
    score: finiteOrZero(cam.score),
    gridHeight: cam.height,
    gridWidth: cam.width,
    grid: Array.from(cam.grid, (v) => Math.round(v * 1e4) / 1e4),
    // JSON has no NaN: a non-finite statistic is recorded as 0, and `degenerate` says why.
    rawMax: finiteOrZero(cam.rawMax),
    rawMean: finiteOrZero(cam.rawMean),
    degenerate: cam.degenerate,
  };
  if (label?.wnid !== undefined) record.wnid = label.wnid;
  if (label) record.label = label.label;
  return record;
}

export function assembleManifest(input: AssembleInput): ImageManifest {
  const manifest: ImageManifest = {
    schema: IMAGE_MANIFEST_SCHEMA,
    source: input.source,
    provenance: provenanceOf(input.engine, input.options, input.weightsSource, input.packageVersion),
    predictions: decodeTopK(input.result.probabilities, input.options.topK, input.labels),
    targets: input.result.cams.map((cam) => camRecordOf(cam, input.labels)),
    outputs: input.outputs,
    timings: Object.fromEntries(Object.entries(input.timings).map(([k, v]) => [k, Math.round(v * 100) / 100])),
    createdAt: (input.now ?? new Date()).toISOString(),
  };
  if (input.run) manifest.run = input.run;
  return manifest;
}

function finiteOrZero(v: number): number {
  return Number.isFinite(v) ? v : 0;
}
