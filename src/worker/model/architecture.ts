/**
 * Architecture without weights: the layer list of a sequential CNN, its shape inference and its
 * weight shapes. Every weight loader checks what it reads against this, so a file that does not fit
 * the network fails with the layer's name instead of producing a silently wrong model.
 *
 * Layout conventions (shared with both engines, keep them exact):
 * - Activations are channels-last (NHWC); `inputShape` is `[height, width, channels]`.
 * - Conv kernels are HWIO `(kh, kw, in, out)`, dense kernels `(in, out)`, both row-major float32.
 * - `flatten` flattens in `(h, w, c)` order, i.e. a plain NHWC reshape, as Keras does; VGG16's fc1
 *   depends on it (its 25,088 inputs are the 7x7x512 pool output in that order).
 * - Weights per layer are ordered kernel first, then bias (Keras `weight_names` order).
 */
import { createHash } from 'node:crypto';
import { ModelError } from '../../shared/errors.js';
import type {
  Conv2DLayerSpec,
  DenseLayerSpec,
  LayerSpec,
  ModelSpec,
} from './spec.js';

type WithoutWeights<T> = T extends { kernel: Float32Array } ? Omit<T, 'kernel' | 'bias'> & { useBias: boolean } : T;

/** A layer of `LayerSpec` minus its weight arrays; weighted layers say whether they have a bias. */
export type LayerConfig = WithoutWeights<Exclude<LayerSpec, { type: 'input' }>>;
export type Conv2DLayerConfig = WithoutWeights<Conv2DLayerSpec>;
export type DenseLayerConfig = WithoutWeights<DenseLayerSpec>;

export interface Architecture {
  name: string;
  /** `[height, width, channels]`, channels-last. */
  inputShape: [number, number, number];
  /** In execution order, input layer excluded. */
  layers: LayerConfig[];
}

/** What a layer consumes and produces, per example (batch axis left out). */
export interface LayerShapeInfo {
  name: string;
  type: LayerConfig['type'];
  /** `[h, w, c]` for 4-D tensors, `[features]` for 2-D ones. */
  inputShape: number[];
  outputShape: number[];
  /** Shapes of the layer's weights in storage order: `[kernel, bias?]`, empty for weightless layers. */
  weightShapes: number[][];
  params: number;
}

/** Weight shapes of one layer given the shape of its input, in Keras storage order. */
export function weightShapesOf(layer: LayerConfig, inputShape: readonly number[]): number[][] {
  if (layer.type === 'conv2d') {
    const channels = inputShape[2] ?? 0;
    const shapes = [[layer.kernelSize[0], layer.kernelSize[1], channels, layer.filters]];
    if (layer.useBias) shapes.push([layer.filters]);
    return shapes;
  }
  if (layer.type === 'dense') {
    const shapes = [[inputShape[0] ?? 0, layer.units]];
    if (layer.useBias) shapes.push([layer.units]);
    return shapes;
  }
  return [];
}

/** Keras/TF output length of a windowed op along one axis. */
function windowedLength(size: number, window: number, stride: number, padding: 'same' | 'valid'): number {
  return padding === 'same' ? Math.ceil(size / stride) : Math.floor((size - window) / stride) + 1;
}

function outputShapeOf(layer: LayerConfig, input: number[]): number[] {
  const spatial = input.length === 3;
  const need4d = (): [number, number, number] => {
    if (!spatial) {
      throw new ModelError(
        `layer "${layer.name}" (${layer.type}) needs a 4-D (batch, h, w, c) input but receives shape [${input.join(', ')}]`,
      );
    }
    return input as [number, number, number];
  };
  switch (layer.type) {
    case 'conv2d': {
      const [h, w] = need4d();
      return [
        windowedLength(h, layer.kernelSize[0], layer.strides[0], layer.padding),
        windowedLength(w, layer.kernelSize[1], layer.strides[1], layer.padding),
        layer.filters,
      ];
    }
    case 'maxpool2d': {
      const [h, w, c] = need4d();
      return [
        windowedLength(h, layer.poolSize[0], layer.strides[0], layer.padding),
        windowedLength(w, layer.poolSize[1], layer.strides[1], layer.padding),
        c,
      ];
    }
    case 'flatten':
      return [input.reduce((a, b) => a * b, 1)];
    case 'gap':
      return [need4d()[2]];
    case 'dense':
      // Keras applies Dense to the last axis of any rank; the engines only support 2-D inputs.
      if (spatial) {
        throw new ModelError(
          `layer "${layer.name}" (dense) receives a 4-D input [${input.join(', ')}]; add a Flatten or GlobalAveragePooling2D layer before it`,
        );
      }
      return [layer.units];
    case 'dropout':
    case 'activation':
      return input;
  }
}

/**
 * Shape inference through the whole network. Throws `ModelError` naming the first layer whose
 * output would be empty (input too small for the pooling depth) or whose input rank is wrong.
 */
export function describeLayers(arch: Architecture): LayerShapeInfo[] {
  let shape: number[] = [...arch.inputShape];
  return arch.layers.map((layer) => {
    const outputShape = outputShapeOf(layer, shape);
    if (outputShape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new ModelError(
        `layer "${layer.name}" (${layer.type}) would produce shape [${outputShape.join(', ')}] from [${shape.join(', ')}]; the input ${arch.inputShape.join('x')} is too small for this network`,
      );
    }
    const weightShapes = weightShapesOf(layer, shape);
    const info: LayerShapeInfo = {
      name: layer.name,
      type: layer.type,
      inputShape: shape,
      outputShape,
      weightShapes,
      params: weightShapes.reduce((sum, s) => sum + product(s), 0),
    };
    shape = outputShape;
    return info;
  });
}

/** Total number of weights (trainable parameters) of the network. */
export function countParams(arch: Architecture): number {
  return describeLayers(arch).reduce((sum, l) => sum + l.params, 0);
}

/** The architecture of a spec: its layers with the weight arrays dropped. */
export function architectureOf(spec: Pick<ModelSpec, 'name' | 'inputShape' | 'layers'>): Architecture {
  const layers: LayerConfig[] = [];
  for (const layer of spec.layers) {
    if (layer.type === 'input') continue;
    if (layer.type === 'conv2d' || layer.type === 'dense') {
      const { kernel: _kernel, bias, ...rest } = layer;
      layers.push({ ...rest, useBias: bias !== null } as LayerConfig);
    } else {
      layers.push(layer);
    }
  }
  return { name: spec.name, inputShape: spec.inputShape, layers };
}

/** Shapes of every layer of a spec (see `describeLayers`). */
export function describeSpec(spec: Pick<ModelSpec, 'name' | 'inputShape' | 'layers'>): LayerShapeInfo[] {
  return describeLayers(architectureOf(spec));
}

/** The weights of one layer as read from a file, with the shape the file declares (if any). */
export interface LayerWeights {
  /** `[kernel, bias?]` in Keras storage order. */
  arrays: Float32Array[];
  /** Declared shapes, checked exactly when present; otherwise only element counts are checked. */
  shapes?: number[][];
}

export interface SpecProvenance {
  source: string;
  /** Defaults to `hashWeights` over the attached weights. */
  weightsHash?: string;
}

/**
 * Attach weights to an architecture. `weights` maps each weighted layer's name to its arrays
 * (weightless layers may be absent). Every array is checked against the architecture, and a
 * mismatch names the layer, the expected and the found shape.
 */
export function buildModelSpec(
  arch: Architecture,
  weights: ReadonlyMap<string, LayerWeights>,
  provenance: SpecProvenance,
): ModelSpec {
  const infos = describeLayers(arch);
  const layers: LayerSpec[] = arch.layers.map((layer, i) => {
    const info = infos[i]!;
    if (layer.type !== 'conv2d' && layer.type !== 'dense') return layer;
    const found = weights.get(layer.name);
    if (!found) throw new ModelError(`no weights for layer "${layer.name}" (${layer.type}, expects ${formatShapes(info.weightShapes)})`);
    checkLayerWeights(layer.name, info.weightShapes, found);
    const { useBias: _useBias, ...config } = layer;
    return { ...config, kernel: found.arrays[0]!, bias: layer.useBias ? found.arrays[1]! : null } as LayerSpec;
  });
  const partial = { name: arch.name, inputShape: [...arch.inputShape] as [number, number, number], layers };
  return {
    ...partial,
    weightsHash: provenance.weightsHash ?? hashWeights(layers),
    source: provenance.source,
  };
}

/**
 * Attach weights given as one flat list in layer order (kernel, bias, kernel, bias, ...), as
 * Keras' `model.get_weights()` returns them.
 */
export function buildModelSpecFromOrdered(
  arch: Architecture,
  ordered: readonly Float32Array[],
  provenance: SpecProvenance,
): ModelSpec {
  const infos = describeLayers(arch);
  const expected = infos.reduce((n, l) => n + l.weightShapes.length, 0);
  if (ordered.length !== expected) {
    throw new ModelError(`${arch.name} has ${expected} weight arrays but ${ordered.length} were given`);
  }
  const map = new Map<string, LayerWeights>();
  let next = 0;
  for (const info of infos) {
    if (info.weightShapes.length === 0) continue;
    map.set(info.name, { arrays: ordered.slice(next, next + info.weightShapes.length) });
    next += info.weightShapes.length;
  }
  return buildModelSpec(arch, map, provenance);
}

function checkLayerWeights(name: string, expected: number[][], found: LayerWeights): void {
  if (found.arrays.length !== expected.length) {
    throw new ModelError(
      `layer "${name}": expected ${expected.length} weight arrays (${formatShapes(expected)}) but found ${found.arrays.length}`,
    );
  }
  expected.forEach((shape, j) => {
    const what = j === 0 ? 'kernel' : 'bias';
    const declared = found.shapes?.[j];
    if (declared && !sameShape(declared, shape)) {
      throw new ModelError(`layer "${name}": ${what} has shape [${declared.join(', ')}] but the architecture needs [${shape.join(', ')}]`);
    }
    const length = found.arrays[j]!.length;
    if (length !== product(shape)) {
      throw new ModelError(`layer "${name}": ${what} has ${length} values but the architecture needs [${shape.join(', ')}] = ${product(shape)}`);
    }
  });
}

/**
 * sha256 (hex) over the float32 weight bytes in layer order, kernel before bias. It identifies the
 * weights, not the container: the same weights in either HDF5 naming style or in TF.js Layers
 * format hash the same.
 */
export function hashWeights(layers: readonly LayerSpec[]): string {
  const hash = createHash('sha256');
  for (const layer of layers) {
    if (layer.type !== 'conv2d' && layer.type !== 'dense') continue;
    hash.update(new Uint8Array(layer.kernel.buffer, layer.kernel.byteOffset, layer.kernel.byteLength));
    if (layer.bias) hash.update(new Uint8Array(layer.bias.buffer, layer.bias.byteOffset, layer.bias.byteLength));
  }
  return hash.digest('hex');
}

export function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function formatShapes(shapes: number[][]): string {
  return shapes.map((s) => `[${s.join(', ')}]`).join(' + ') || 'no weights';
}
