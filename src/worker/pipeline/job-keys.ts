/**
 * Two derived keys per job:
 * - the batch key: only images whose engine-relevant options agree may share an engine call;
 * - the options hash: stored on every output object, it tells a re-run whether existing outputs
 *   were made from the same options and model (then the job is a no-op) or must be redone.
 */
import { createHash } from 'node:crypto';
import type { ExplainOptions } from '../../shared/explain-options.js';

/** Engine-relevant options: what changes the engine call (rendering options do not). */
export function batchKeyFor(options: ExplainOptions, defaultLayer: string): string {
  return stableStringify({
    method: options.method,
    score: options.score,
    targets: options.targets,
    topK: options.topK,
    resize: options.resize,
    layer: options.layer ?? defaultLayer,
  });
}

export interface ModelIdentity {
  modelName: string;
  weightsHash: string;
  layer: string;
}

/** sha256 over every option that changes an output, plus the model that produced it. */
export function optionsHashFor(options: ExplainOptions, model: ModelIdentity): string {
  const payload = stableStringify({ options: { ...options, layer: options.layer ?? model.layer }, model });
  return createHash('sha256').update(payload).digest('hex');
}

/** JSON with object keys sorted, so equal values always hash alike whatever the key order. */
export function stableStringify(value: unknown): string {
  if (value === undefined) return 'null';
  if (value === null || typeof value !== 'object') return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(stableStringify).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableStringify(v)}`).join(',')}}`;
}
