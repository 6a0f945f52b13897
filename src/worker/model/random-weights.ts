/**
 * Deterministic random weights for any architecture: tests, fixtures and benchmarks need real
 * networks without downloadable pretrained weights. The same seed gives the same bytes on every
 * machine (own PRNG; `Math.random` cannot be seeded).
 */
import type { Architecture, LayerWeights } from './architecture.js';
import { buildModelSpec, describeLayers, product } from './architecture.js';
import type { ModelSpec } from './spec.js';

export interface RandomWeightsOptions {
  /** PRNG seed (any 32-bit integer). Default 1. */
  seed?: number;
  /**
   * Typical magnitude (standard deviation) of the network's input. The first layer's weights are
   * divided by it so that activations start near unit scale. Default 1; use about 64 for
   * Keras-caffe-preprocessed images (0..255 minus the ImageNet mean).
   */
  inputStd?: number;
  /** Biases are uniform in ±biasScale; non-zero so that a dropped bias shows. Default 0.05. */
  biasScale?: number;
}

const DEFAULTS: Required<RandomWeightsOptions> = { seed: 1, inputStd: 1, biasScale: 0.05 };

/** mulberry32: tiny, fast, 32-bit state; plenty for initial weights. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Uniform initialisation with a variance that keeps activations at a steady scale:
 * He (variance 2/fan_in) before a ReLU, which halves the second moment, and Glorot
 * (variance 2/(fan_in+fan_out)) elsewhere, e.g. the softmax layer, so logits stay moderate and the
 * softmax does not saturate. Uniform in ±sqrt(3·variance).
 */
export function randomWeights(arch: Architecture, options: RandomWeightsOptions = {}): Map<string, LayerWeights> {
  const { seed, inputStd, biasScale } = { ...DEFAULTS, ...options };
  const next = mulberry32(seed);
  const weights = new Map<string, LayerWeights>();
  let first = true;
  for (const [i, info] of describeLayers(arch).entries()) {
    if (info.weightShapes.length === 0) continue;
    const layer = arch.layers[i]!;
    const kernelShape = info.weightShapes[0]!;
    const fanOut = kernelShape[kernelShape.length - 1]!;
    const fanIn = product(kernelShape) / fanOut;
    const relu = 'activation' in layer && layer.activation === 'relu';
    let variance = relu ? 2 / fanIn : 2 / (fanIn + fanOut);
    if (first) variance /= inputStd * inputStd;
    first = false;
    const arrays = [uniform(product(kernelShape), Math.sqrt(3 * variance), next)];
    if (info.weightShapes.length > 1) arrays.push(uniform(product(info.weightShapes[1]!), biasScale, next));
    weights.set(info.name, { arrays });
  }
  return weights;
}

/** An architecture with deterministic random weights, as a `ModelSpec`. */
export function randomModelSpec(arch: Architecture, options: RandomWeightsOptions = {}): ModelSpec {
  const seed = options.seed ?? DEFAULTS.seed;
  return buildModelSpec(arch, randomWeights(arch, options), { source: `random:${arch.name}?seed=${seed}` });
}

function uniform(length: number, limit: number, next: () => number): Float32Array {
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) out[i] = (2 * next() - 1) * limit;
  return out;
}
