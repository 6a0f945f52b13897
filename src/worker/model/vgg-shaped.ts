/**
 * Small networks shaped like VGG16 (conv blocks, pools, a dense head, Keras layer names) for tests
 * and demos: the same code paths as the real model at a fraction of the cost.
 */
import type { Architecture, LayerConfig } from './architecture.js';
import type { RandomWeightsOptions } from './random-weights.js';
import { randomModelSpec } from './random-weights.js';
import type { ModelSpec } from './spec.js';
import { conv3x3, maxPool2x2, vgg16Architecture } from './vgg16.js';

export interface VggShapedOptions {
  /** Model name. Default `vgg-small`. */
  name?: string;
  /** `[h, w, c]`. Default `[32, 32, 3]`. */
  inputShape?: [number, number, number];
  /** Conv blocks, each `convs` 3x3 ReLU convs then a 2x2 pool. Default `[{8, 2}, {16, 2}]`. */
  blocks?: ReadonlyArray<{ filters: number; convs: number }>;
  /** Hidden dense layers (`fc1`, `fc2`, ...). Default `[32]`. */
  denseUnits?: readonly number[];
  /** Output classes (`predictions`, softmax). Default 10. */
  classes?: number;
  /** `flatten` as VGG16, or `gap` (GlobalAveragePooling2D). Default `flatten`. */
  head?: 'flatten' | 'gap';
  /** Whether the last block ends in a pool. Default true, as VGG16. */
  poolLastBlock?: boolean;
  /** Dropout rate after each hidden dense layer; 0 adds none (VGG16 has none). Default 0. */
  dropout?: number;
}

export const VGG_SHAPED_DEFAULTS: Readonly<Required<VggShapedOptions>> = Object.freeze({
  name: 'vgg-small',
  inputShape: [32, 32, 3] as [number, number, number],
  blocks: [
    { filters: 8, convs: 2 },
    { filters: 16, convs: 2 },
  ],
  denseUnits: [32],
  classes: 10,
  head: 'flatten' as const,
  poolLastBlock: true,
  dropout: 0,
});

/** The layer list of a small VGG-shaped net (no weights). */
export function vggShapedArchitecture(options: VggShapedOptions = {}): Architecture {
  const o = { ...VGG_SHAPED_DEFAULTS, ...options };
  const layers: LayerConfig[] = [];
  o.blocks.forEach(({ filters, convs }, b) => {
    for (let c = 1; c <= convs; c++) layers.push(conv3x3(`block${b + 1}_conv${c}`, filters));
    if (b < o.blocks.length - 1 || o.poolLastBlock) layers.push(maxPool2x2(`block${b + 1}_pool`));
  });
  layers.push(o.head === 'gap' ? { type: 'gap', name: 'global_average_pooling2d' } : { type: 'flatten', name: 'flatten' });
  o.denseUnits.forEach((units, i) => {
    layers.push({ type: 'dense', name: `fc${i + 1}`, units, activation: 'relu', useBias: true });
    if (o.dropout > 0) layers.push({ type: 'dropout', name: `dropout${i + 1}`, rate: o.dropout });
  });
  layers.push({ type: 'dense', name: 'predictions', units: o.classes, activation: 'softmax', useBias: true });
  return { name: o.name, inputShape: [...o.inputShape], layers };
}

/** A small VGG-shaped net with deterministic random weights. */
export function vggShapedSpec(options: VggShapedOptions & RandomWeightsOptions = {}): ModelSpec {
  return randomModelSpec(vggShapedArchitecture(options), options);
}

/**
 * Full-size VGG16 with deterministic random weights (553 MB of float32): benchmarks and
 * full-size engine checks where the ImageNet weights cannot be downloaded.
 */
export function randomVgg16Spec(options: RandomWeightsOptions = {}): ModelSpec {
  return randomModelSpec(vgg16Architecture(), options);
}
