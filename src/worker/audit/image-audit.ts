/**
 * The worker's share of the audit: per image, the metrics record (prediction, map, boxes, atlas)
 * from the engine's result, with the job's ground truth matched to the model's classes. The image
 * core calls `imageMetricsOf` once per image (it is pure and costs well under a millisecond for a
 * 16x16 map; see `npm run bench:audit`).
 */
import { atlasBytes, DEFAULT_METRIC_OPTIONS, mapMetrics, predictionMetrics, type MetricOptions } from '../../shared/audit/image-metrics.js';
import type { LabelMatcher } from '../../shared/audit/label-matcher.js';
import { toMetricsRecord } from '../../shared/audit/metric-table.js';
import type { ImageMetrics, JobTruth, LineTruth } from '../../shared/audit/types.js';
import type { EngineImageResult } from '../engine/engine.js';

/** A job's truth with its label matched to a model class (index null: unmatched). */
export interface ResolvedTruth {
  label: string;
  index: number | null;
  boxes: readonly [number, number, number, number][];
}

export function resolveTruth(truth: JobTruth | undefined, matcher: LabelMatcher): ResolvedTruth | undefined {
  if (truth === undefined) return undefined;
  return { label: truth.label, index: matcher.match(truth.label), boxes: truth.boxes ?? [] };
}

/** Truth as the manifest line carries it. */
export function lineTruthOf(t: ResolvedTruth): LineTruth {
  return { label: t.label, index: t.index, boxes: t.boxes.length };
}

export interface ImageAuditInput {
  result: EngineImageResult;
  /** Oriented size of the source image. */
  image: { width: number; height: number };
  truth?: ResolvedTruth;
}

/** Metrics of one image; map metrics describe its first explained map. */
export function imageMetricsOf(input: ImageAuditInput, options: MetricOptions = DEFAULT_METRIC_OPTIONS): ImageMetrics {
  const { result, image, truth } = input;
  const cam = result.cams[0];
  const trueIndex = truth?.index ?? undefined;
  const map = cam === undefined ? null : { grid: cam.grid, gridHeight: cam.height, gridWidth: cam.width, degenerate: cam.degenerate };
  return toMetricsRecord({
    image,
    prediction: predictionMetrics(result.probabilities, trueIndex === null ? undefined : trueIndex),
    map: map === null ? null : mapMetrics(map, image.width, image.height, truth && truth.boxes.length > 0 ? truth.boxes : undefined, options),
    atlas: map === null ? null : atlasBytes(map, options.atlasSize),
    degenerate: cam?.degenerate ?? null,
    ...(result.faithfulness ? { faithfulness: result.faithfulness } : {}),
  });
}
