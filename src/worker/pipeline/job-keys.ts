/**
 * Two derived keys per job:
 * - the batch key: only images whose engine-relevant options agree may share an engine call;
 * - the options hash: stored on every output object, it tells a re-run whether existing outputs
 *   were made from the same options and model (then the job is a no-op) or must be redone.
 */
import type { JobTruth } from '../../shared/audit/types.js';
import type { ExplainOptions } from '../../shared/explain-options.js';
import { stableHash, stableStringify } from '../../shared/stable-json.js';

/** Engine-relevant options: what changes the engine call (rendering options do not). */
export function batchKeyFor(options: ExplainOptions, defaultLayer: string): string {
  return stableStringify({
    method: options.method,
    score: options.score,
    targets: options.targets,
    topK: options.topK,
    resize: options.resize,
    layer: options.layer ?? defaultLayer,
    faithfulness: options.faithfulness,
  });
}

export interface ModelIdentity {
  modelName: string;
  weightsHash: string;
  layer: string;
}

/** sha256 over every option that changes an output, plus the model that produced it. */
export function optionsHashFor(options: ExplainOptions, model: ModelIdentity): string {
  return stableHash({ options: { ...options, layer: options.layer ?? model.layer }, model });
}

/**
 * What an image's outputs were made from besides its source bytes: the options hash, and the
 * image's ground truth (the prediction document carries metrics that depend on it). Without truth
 * it equals the options hash, so outputs of runs without truth stay valid.
 */
export function outputsHashFor(options: ExplainOptions, model: ModelIdentity, truth: JobTruth | undefined): string {
  const hash = optionsHashFor(options, model);
  return truth === undefined ? hash : stableHash({ options: hash, truth });
}
