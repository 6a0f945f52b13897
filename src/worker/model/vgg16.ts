/**
 * `keras.applications.VGG16` (include_top=True), layer for layer: five blocks of 3x3 'same' ReLU
 * convolutions (64, 128, 256, 512, 512 filters; 2, 2, 3, 3, 3 convs), each ending in a 2x2 max-pool,
 * then flatten, fc1 (4096, relu), fc2 (4096, relu) and predictions (1000, softmax). No dropout.
 * 138,357,544 parameters at 224x224x3.
 */
import type { Architecture, LayerConfig, SpecProvenance } from './architecture.js';
import { buildModelSpecFromOrdered } from './architecture.js';
import type { ModelSpec } from './spec.js';

export const VGG16_NAME = 'vgg16';
export const VGG16_INPUT_SHAPE: [number, number, number] = [224, 224, 3];
/** Keras' default Grad-CAM layer for VGG16 (Chollet): the last conv, ReLU included, 14x14x512. */
export const VGG16_TARGET_LAYER = 'block5_conv3';
export const VGG16_PARAMS = 138_357_544;
/** The file `keras.applications.VGG16(weights='imagenet')` downloads. */
export const VGG16_KERAS_WEIGHTS_FILE = 'vgg16_weights_tf_dim_ordering_tf_kernels.h5';

const VGG16_BLOCKS: ReadonlyArray<{ filters: number; convs: number }> = [
  { filters: 64, convs: 2 },
  { filters: 128, convs: 2 },
  { filters: 256, convs: 3 },
  { filters: 512, convs: 3 },
  { filters: 512, convs: 3 },
];

export interface Vgg16Options {
  /** Output classes of `predictions`. Default 1000 (ImageNet). */
  classes?: number;
}

/** The exact VGG16 layer list (no weights). */
export function vgg16Architecture(options: Vgg16Options = {}): Architecture {
  const layers: LayerConfig[] = [];
  VGG16_BLOCKS.forEach(({ filters, convs }, b) => {
    for (let c = 1; c <= convs; c++) layers.push(conv3x3(`block${b + 1}_conv${c}`, filters));
    layers.push(maxPool2x2(`block${b + 1}_pool`));
  });
  layers.push(
    { type: 'flatten', name: 'flatten' },
    { type: 'dense', name: 'fc1', units: 4096, activation: 'relu', useBias: true },
    { type: 'dense', name: 'fc2', units: 4096, activation: 'relu', useBias: true },
    { type: 'dense', name: 'predictions', units: options.classes ?? 1000, activation: 'softmax', useBias: true },
  );
  return { name: VGG16_NAME, inputShape: [...VGG16_INPUT_SHAPE], layers };
}

/**
 * VGG16 from its 32 weight arrays in Keras order (`model.get_weights()`: kernel, bias per layer,
 * block1_conv1 first). Throws `ModelError` naming the first layer whose arrays do not fit.
 */
export function vgg16Spec(ordered: readonly Float32Array[], provenance: SpecProvenance, options: Vgg16Options = {}): ModelSpec {
  return buildModelSpecFromOrdered(vgg16Architecture(options), ordered, provenance);
}

/** A 3x3, stride-1, 'same', ReLU convolution with bias, as every VGG conv. */
export function conv3x3(name: string, filters: number): LayerConfig {
  return {
    type: 'conv2d',
    name,
    filters,
    kernelSize: [3, 3],
    strides: [1, 1],
    padding: 'same',
    activation: 'relu',
    useBias: true,
  };
}

/** A 2x2, stride-2, 'valid' max-pool, as every VGG block's last layer. */
export function maxPool2x2(name: string): LayerConfig {
  return { type: 'maxpool2d', name, poolSize: [2, 2], strides: [2, 2], padding: 'valid' };
}
