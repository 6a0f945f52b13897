/**
 * Which classes get a CAM, and request validation shared by every engine. Validation errors name
 * the flag a person would fix, since requests come from `explain` flags or job payloads built
 * from them.
 */
import { ConfigError } from '../../shared/errors.js';
import { CAM_METHODS, SCORE_MODES } from '../../shared/explain-options.js';
import type { TargetSpec } from '../../shared/explain-options.js';
import type { EngineRequest } from './engine.js';

/** Indices of the `k` largest probabilities, best first; ties keep the lower index first, NaN sorts last. */
export function topKIndices(probabilities: ArrayLike<number>, k: number): number[] {
  const order = Array.from({ length: probabilities.length }, (_, i) => i);
  const value = (i: number): number => (Number.isNaN(probabilities[i]) ? -Infinity : probabilities[i]);
  order.sort((x, y) => value(y) - value(x) || x - y);
  return order.slice(0, Math.max(0, Math.min(k, order.length)));
}

/** The class indices to explain for one image. */
export function resolveTargets(targets: TargetSpec, topK: number, probabilities: ArrayLike<number>): number[] {
  switch (targets.kind) {
    case 'top1':
      return topKIndices(probabilities, 1);
    case 'topk':
      return topKIndices(probabilities, topK);
    case 'indices':
      return [...targets.indices];
  }
}

/** How many targets each image gets; the same for every image of a request. */
export function targetCount(request: Pick<EngineRequest, 'targets' | 'topK'>, numClasses: number): number {
  switch (request.targets.kind) {
    case 'top1':
      return 1;
    case 'topk':
      return Math.min(request.topK, numClasses);
    case 'indices':
      return request.targets.indices.length;
  }
}

/** Throws a ConfigError naming the flag when the request cannot be served by a model with `numClasses` outputs. */
export function validateRequest(request: Pick<EngineRequest, 'targets' | 'topK' | 'method' | 'score'>, numClasses: number): void {
  if (!(CAM_METHODS as readonly string[]).includes(request.method)) {
    throw new ConfigError('--method', `expected one of ${CAM_METHODS.join(', ')}, got "${String(request.method)}"`);
  }
  if (!(SCORE_MODES as readonly string[]).includes(request.score)) {
    throw new ConfigError('--score', `expected one of ${SCORE_MODES.join(', ')}, got "${String(request.score)}"`);
  }
  if (!Number.isInteger(request.topK) || request.topK < 1) {
    throw new ConfigError('--top-k', `expected a positive integer, got ${String(request.topK)}`);
  }
  const t = request.targets;
  if (t.kind === 'indices') {
    if (t.indices.length === 0) throw new ConfigError('--targets', 'expected at least one class index');
    const bad = t.indices.filter((i) => !Number.isInteger(i) || i < 0 || i >= numClasses);
    if (bad.length > 0) {
      throw new ConfigError('--targets', `class index ${bad.join(', ')} out of range: the model has ${numClasses} classes (0..${numClasses - 1})`);
    }
    if (new Set(t.indices).size !== t.indices.length) throw new ConfigError('--targets', `duplicate class index in ${t.indices.join(',')}`);
  } else if (t.kind !== 'top1' && t.kind !== 'topk') {
    throw new ConfigError('--targets', `unknown target kind "${String((t as { kind: unknown }).kind)}"; expected top1, topk or class indices`);
  }
}
