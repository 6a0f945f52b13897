/**
 * What the ONNX Grad-CAM compiler can handle. The graph differentiates the head (target layer →
 * logits) in closed form, so every head layer needs a hand-written backward rule; anything without
 * one makes the model unsupported, and the caller falls back to the TF.js engine (autodiff).
 */
import type { CamMethod } from '../../../shared/explain-options.js';
import type { LayerSpec, ModelSpec } from '../../model/spec.js';
import { resolveTargetLayer } from '../../model/target-layer.js';
import { describeError } from '../../../shared/errors.js';

/** Methods whose formulas are compiled into the graph (all of design.md §4). */
export const ONNX_CAM_METHODS: readonly CamMethod[] = ['gradcam', 'gradcam++', 'hirescam', 'xgradcam', 'layercam'];

export type OnnxSupport = { ok: true; layer: string } | { ok: false; reason: string };

/**
 * Whether `spec` explained at `layer` with `method` can run as one ONNX graph. On `ok: false` the
 * reason is a sentence for the fallback log line.
 */
export function isOnnxSupported(spec: ModelSpec, method: CamMethod, layer?: string): OnnxSupport {
  if (!ONNX_CAM_METHODS.includes(method)) return { ok: false, reason: `CAM method ${method} is not compiled into the ONNX graph` };
  let target: string;
  try {
    target = resolveTargetLayer(spec, layer);
  } catch (err) {
    return { ok: false, reason: describeError(err) };
  }
  const index = spec.layers.findIndex((l) => l.name === target);
  const trunk = spec.layers.slice(0, index + 1);
  const head = spec.layers.slice(index + 1);

  for (const l of trunk) {
    const problem = trunkProblem(l);
    if (problem) return { ok: false, reason: `layer ${l.name}: ${problem}` };
  }
  const targetLayer = spec.layers[index];
  if (!['conv2d', 'maxpool2d', 'activation', 'dropout'].includes(targetLayer.type)) {
    return { ok: false, reason: `target layer ${target} (${targetLayer.type}) has no 4-D output` };
  }
  const problem = headProblem(head);
  return problem === null ? { ok: true, layer: target } : { ok: false, reason: problem };
}

function trunkProblem(l: LayerSpec): string | null {
  switch (l.type) {
    case 'input':
    case 'dropout':
    case 'maxpool2d':
      return null;
    case 'conv2d':
    case 'activation':
      return l.activation === 'softmax' ? 'softmax inside the conv stack is not supported' : null;
    default:
      return `${l.type} before the target layer is not supported`;
  }
}

function headProblem(head: LayerSpec[]): string | null {
  let spatial = true; // still 4-D (before flatten/GAP)
  let sawSoftmax = false;
  for (let i = 0; i < head.length; i++) {
    const l = head[i];
    const last = i === head.length - 1;
    if (sawSoftmax) return `layer ${l.name} follows the softmax`;
    switch (l.type) {
      case 'dropout':
        break;
      case 'maxpool2d':
        if (!spatial) return `layer ${l.name}: max-pool after flatten`;
        if (l.padding !== 'valid' || l.strides[0] !== l.poolSize[0] || l.strides[1] !== l.poolSize[1] || l.poolSize[0] !== l.poolSize[1]) {
          return `layer ${l.name}: only square, non-overlapping 'valid' max-pools (strides = pool size) have a compiled backward`;
        }
        break;
      case 'flatten':
      case 'gap':
        if (!spatial) return `layer ${l.name}: second ${l.type}`;
        spatial = false;
        break;
      case 'conv2d':
        return `layer ${l.name}: conv layers after the target layer have no compiled backward`;
      case 'dense':
      case 'activation':
        if (l.type === 'dense' && spatial) return `layer ${l.name}: dense layer on a 4-D tensor`;
        if (l.activation === 'sigmoid') return `layer ${l.name}: sigmoid in the head has no compiled backward`;
        if (l.activation === 'softmax') {
          if (!last) return `layer ${l.name}: softmax must be the last layer`;
          if (l.type === 'activation' && head[i - 1]?.type !== 'dense') {
            return `layer ${l.name}: softmax must directly follow a dense layer`;
          }
          sawSoftmax = true;
        }
        break;
      default:
        return `layer ${l.name}: ${l.type} in the head is not supported`;
    }
  }
  const final = head[head.length - 1];
  // A model ending in a linear dense layer outputs logits; the graph softmaxes them (as TF.js does).
  if (!sawSoftmax && !(final?.type === 'dense' && final.activation === 'linear')) {
    return 'the model does not end in a dense classifier (softmax or linear)';
  }
  if (spatial) return 'the head has no flatten or global-average-pooling layer';
  return null;
}
