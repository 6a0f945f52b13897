/**
 * What the ONNX Grad-CAM compiler can handle. The graph differentiates the head (target → logits)
 * in closed form, so every head node needs a backward rule (differentiate.ts); anything without
 * one makes the model unsupported, and the caller falls back to the TF.js engine (autodiff).
 */
import type { CamMethod } from '../../../shared/explain-options.js';
import { CAM_METHODS, needsGradient } from '../../../shared/explain-options.js';
import { describeError } from '../../../shared/errors.js';
import type { ModelInput } from '../../model/graph/from-sequential.js';
import { toModelGraph } from '../../model/graph/from-sequential.js';
import { splitAtTarget } from '../../model/graph/walker.js';
import { headNodeProblem } from './differentiate.js';

/**
 * Methods whose formulas are compiled into the graph (all of design.md §4). The gradient-free ones
 * need only the forward and the target activation, which every graph returns.
 */
export const ONNX_CAM_METHODS: readonly CamMethod[] = CAM_METHODS.filter(needsGradient);

export type OnnxSupport = { ok: true; layer: string } | { ok: false; reason: string };

/**
 * Whether `model` explained at `layer` with `method` can run as one ONNX graph. On `ok: false` the
 * reason is a sentence for the fallback log line. A gradient-free method needs no backward rule, so
 * any head the forward can run is fine.
 */
export function isOnnxSupported(model: ModelInput, method: CamMethod, layer?: string): OnnxSupport {
  try {
    const graph = toModelGraph(model);
    const split = splitAtTarget(graph, layer);
    if (!needsGradient(method)) return { ok: true, layer: split.target };
    for (const node of split.head) {
      const problem = headNodeProblem(node, graph);
      if (problem) return { ok: false, reason: problem };
    }
    return { ok: true, layer: split.target };
  } catch (err) {
    return { ok: false, reason: describeError(err) };
  }
}
