/**
 * Which layer Grad-CAM explains, and the split of a network at that layer: the engines run the
 * feature part forward only and backpropagate through the head alone (design: head-only backward).
 */
import { ModelError } from '../../shared/errors.js';
import type { LayerShapeInfo } from './architecture.js';
import { describeSpec } from './architecture.js';
import type { LayerSpec, ModelSpec } from './spec.js';
import { VGG16_TARGET_LAYER } from './vgg16.js';

export interface SplitModel {
  /** The resolved target layer. */
  layer: string;
  /** Input → target layer, inclusive, in execution order. */
  features: LayerSpec[];
  /** After the target layer → output, in execution order. Its input is the CAM activation. */
  head: LayerSpec[];
  /** Per-example shape of the target activation, `[h, w, c]`. */
  targetShape: [number, number, number];
}

/**
 * Resolve the target layer: an explicit name (any layer with a 4-D output, e.g. a conv or a
 * pool), else `block5_conv3` when the model has it (VGG16 and fine-tuned variants), else the last
 * conv2d layer — extended through directly following Activation layers, so that a linear conv
 * followed by a separate ReLU is explained after the ReLU, like Keras' fused `block5_conv3`.
 */
export function resolveTargetLayer(spec: ModelSpec, explicit?: string): string {
  const infos = describeSpec(spec);
  const spatial = infos.filter((l) => l.outputShape.length === 3);
  if (explicit !== undefined) {
    if (spatial.some((l) => l.name === explicit)) return explicit;
    const exists = infos.find((l) => l.name === explicit);
    const why = exists ? `its output [${exists.outputShape.join(', ')}] is not a 4-D feature map` : 'no such layer';
    throw new ModelError(`target layer "${explicit}" cannot be used (${why}); conv layers of ${spec.name}: ${listConvLayers(infos)}`);
  }
  const vgg = infos.find((l) => l.name === VGG16_TARGET_LAYER && l.type === 'conv2d');
  if (vgg) return vgg.name;
  let last = -1;
  infos.forEach((l, i) => {
    if (l.type === 'conv2d') last = i;
  });
  if (last < 0) throw new ModelError(`${spec.name} has no conv2d layer, so there is nothing for Grad-CAM to explain`);
  while (infos[last + 1]?.type === 'activation') last++;
  return infos[last]!.name;
}

/** Split a spec at `layer` (resolved with `resolveTargetLayer` when undefined). */
export function splitAtTargetLayer(spec: ModelSpec, layer?: string): SplitModel {
  const name = resolveTargetLayer(spec, layer);
  const infos = describeSpec(spec);
  const layers = spec.layers.filter((l) => l.type !== 'input');
  const index = layers.findIndex((l) => l.name === name);
  return {
    layer: name,
    features: layers.slice(0, index + 1),
    head: layers.slice(index + 1),
    targetShape: infos[index]!.outputShape as [number, number, number],
  };
}

function listConvLayers(infos: LayerShapeInfo[]): string {
  const convs = infos.filter((l) => l.type === 'conv2d').map((l) => `${l.name} [${l.outputShape.join('x')}]`);
  return convs.length > 0 ? convs.join(', ') : '(none)';
}
