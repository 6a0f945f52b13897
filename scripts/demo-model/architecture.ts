/**
 * The demo network: a small VGG-style classifier (3x3 'same' conv + ReLU blocks with 2x2 max-pools),
 * a last conv layer that Grad-CAM targets, global average pooling and a softmax dense head. GAP before
 * the dense layer keeps the class evidence spatially resolved at the last conv layer, which is what
 * makes the network's Grad-CAM maps localise objects well.
 *
 * Two views of the same network live here: a `tf.Sequential` (what we save, what the project's loader
 * and engine read) and a functional forward pass over plain variables (what we train, see
 * conv-grad.ts for why). `toLayerWeights` maps one onto the other.
 */
import * as tf from '@tensorflow/tfjs';
import { makeSameConv } from './conv-grad.js';
import type { Prng } from './prng.js';

export interface DemoArchitecture {
  /** Square input side in pixels. */
  inputSize: number;
  /** The single 3x3 conv of each block, and whether the block ends in a 2x2 max-pool. */
  blocks: { filters: number; pool: boolean }[];
  /** Filters of the Grad-CAM target layer, which follows the blocks. */
  lastConvFilters: number;
  numClasses: number;
}

/**
 * The network the training starts with: cheaper per step while the features form, then widened
 * (function-preserving, see widen.ts) into `DEMO_ARCHITECTURE`. At this width the network levelled
 * off at about 0.93-0.94 validation accuracy.
 */
export const DEMO_NARROW_ARCHITECTURE: Readonly<DemoArchitecture> = Object.freeze({
  inputSize: 64,
  // The last block does not pool: the Grad-CAM target then has a 16x16 grid (4-pixel cells) on a
  // 64x64 input. With an 8x8 grid, peaks on an object's edges often fell in a cell centred just
  // outside its tight box.
  blocks: [
    { filters: 16, pool: true },
    { filters: 32, pool: true },
    { filters: 64, pool: false },
  ],
  lastConvFilters: 64,
  numClasses: 5,
});

/** The saved network: the narrow one with 1.5x the filters in every conv layer. */
export const DEMO_ARCHITECTURE: Readonly<DemoArchitecture> = Object.freeze({
  ...DEMO_NARROW_ARCHITECTURE,
  blocks: [
    { filters: 24, pool: true },
    { filters: 48, pool: true },
    { filters: 96, pool: false },
  ],
  lastConvFilters: 96,
});

export const MODEL_NAME = 'demo_shapes';
export const LAST_CONV_LAYER = 'last_conv';

/**
 * Training sees the caffe-preprocessed input divided by this constant (its values span roughly
 * -124..152, std ≈ 60), so He-initialised weights and Adam's step size suit the first layer as well.
 * The division is folded into the first kernel on export, so the saved model takes plain caffe input
 * exactly like VGG16.
 */
export const TRAINING_INPUT_SCALE = 64;

export function buildDemoLayersModel(arch: DemoArchitecture = DEMO_ARCHITECTURE): tf.Sequential {
  const model = tf.sequential({ name: MODEL_NAME });
  arch.blocks.forEach(({ filters, pool }, i) => {
    const block = `block${i + 1}`;
    model.add(
      tf.layers.conv2d({
        name: `${block}_conv1`,
        filters,
        kernelSize: 3,
        padding: 'same',
        activation: 'relu',
        ...(i === 0 ? { inputShape: [arch.inputSize, arch.inputSize, 3] } : {}),
      }),
    );
    if (pool) model.add(tf.layers.maxPooling2d({ name: `${block}_pool`, poolSize: 2, strides: 2 }));
  });
  model.add(tf.layers.conv2d({ name: LAST_CONV_LAYER, filters: arch.lastConvFilters, kernelSize: 3, padding: 'same', activation: 'relu' }));
  model.add(tf.layers.globalAveragePooling2d({ name: 'gap' }));
  model.add(tf.layers.dense({ name: 'predictions', units: arch.numClasses, activation: 'softmax' }));
  return model;
}

export interface DemoParams {
  /** Conv kernels (HWIO) and biases, blocks first, then the last conv. */
  convs: { kernel: tf.Variable; bias: tf.Variable }[];
  dense: { kernel: tf.Variable; bias: tf.Variable };
}

function normalTensor(prng: Prng, shape: number[], std: number): tf.Tensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const values = new Float32Array(size);
  for (let i = 0; i < size; i++) values[i] = std * prng.normal();
  return tf.tensor(values, shape);
}

/** He-normal conv kernels, Glorot-normal dense kernel, zero biases, all from `prng`. */
export function initParams(prng: Prng, arch: DemoArchitecture = DEMO_ARCHITECTURE): DemoParams {
  const filters = [...arch.blocks.map((b) => b.filters), arch.lastConvFilters];
  let inChannels = 3;
  const convs = filters.map((out, i) => {
    const kernel = tf.variable(normalTensor(prng, [3, 3, inChannels, out], Math.sqrt(2 / (9 * inChannels))), true, `conv${i}_kernel`);
    const bias = tf.variable(tf.zeros([out]), true, `conv${i}_bias`);
    inChannels = out;
    return { kernel, bias };
  });
  const dense = {
    kernel: tf.variable(normalTensor(prng, [inChannels, arch.numClasses], Math.sqrt(2 / (inChannels + arch.numClasses))), true, 'dense_kernel'),
    bias: tf.variable(tf.zeros([arch.numClasses]), true, 'dense_bias'),
  };
  return { convs, dense };
}

const firstConv = makeSameConv(false);
const innerConv = makeSameConv(true);

/** Logits for a batch of training inputs (caffe input already divided by TRAINING_INPUT_SCALE). */
export function forwardLogits(params: DemoParams, x: tf.Tensor4D, arch: DemoArchitecture = DEMO_ARCHITECTURE): tf.Tensor2D {
  let h = x;
  params.convs.forEach(({ kernel, bias }, i) => {
    const conv = (i === 0 ? firstConv : innerConv)(h, kernel as tf.Tensor4D);
    h = tf.relu(tf.add(conv, bias)) as tf.Tensor4D;
    if (arch.blocks[i]?.pool === true) h = tf.maxPool(h, 2, 2, 'valid');
  });
  const pooled = tf.mean(h, [1, 2]) as tf.Tensor2D;
  return tf.add(tf.matMul(pooled, params.dense.kernel as tf.Tensor2D), params.dense.bias);
}

/** The trained variables in `tf.Sequential.getWeights()` order, with the input scale folded in. */
export function toLayerWeights(params: DemoParams): tf.Tensor[] {
  return tf.tidy(() => [
    ...params.convs.flatMap(({ kernel, bias }, i) => [i === 0 ? tf.div(kernel, TRAINING_INPUT_SCALE) : kernel.clone(), bias.clone()]),
    params.dense.kernel.clone(),
    params.dense.bias.clone(),
  ]);
}

export function disposeParams(params: DemoParams): void {
  for (const { kernel, bias } of params.convs) {
    kernel.dispose();
    bias.dispose();
  }
  params.dense.kernel.dispose();
  params.dense.bias.dispose();
}
