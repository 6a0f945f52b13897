/**
 * Small Keras functional models built with TF.js Layers (`tf.model`), with seeded weights, written
 * as a TF.js Layers model (model.json + weights.bin) and as a Keras full-model .h5 (tf.keras 2.x
 * layout). TF.js Layers is the independent reference: its own layer implementations compute the
 * probabilities and, through `tf.grad`, the gradient at the target layer.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { writeKerasModelHdf5 } from '../../../../scripts/weights/write-keras-hdf5.js';
import type { KerasArchitecture } from '../../../../src/shared/model-options.js';
import { applicationTopology } from '../../../../src/worker/model/applications/index.js';
import { mulberry32 } from '../../../../src/worker/model/random-weights.js';

type L = typeof tf.layers;
type SymbolicTensor = tf.SymbolicTensor;

/** Residual blocks with BatchNorm (ResNet-style stem with ZeroPadding2D + MaxPooling2D, a strided projection shortcut, a dilated conv). */
function residual(l: L): tf.LayersModel {
  const input = tf.input({ shape: [14, 14, 3], name: 'image' });
  let x = l.zeroPadding2d({ padding: 1, name: 'stem_pad' }).apply(input) as SymbolicTensor;
  x = l.conv2d({ filters: 8, kernelSize: 3, useBias: false, name: 'stem_conv' }).apply(x) as SymbolicTensor;
  x = l.batchNormalization({ epsilon: 1.001e-5, name: 'stem_bn' }).apply(x) as SymbolicTensor;
  const stem = l.activation({ activation: 'relu', name: 'stem_relu' }).apply(x) as SymbolicTensor;
  x = l.conv2d({ filters: 8, kernelSize: 3, padding: 'same', name: 'b1_conv1' }).apply(stem) as SymbolicTensor;
  x = l.batchNormalization({ name: 'b1_bn1' }).apply(x) as SymbolicTensor;
  x = l.reLU({ name: 'b1_relu1' }).apply(x) as SymbolicTensor;
  x = l.conv2d({ filters: 8, kernelSize: 3, padding: 'same', dilationRate: 2, name: 'b1_conv2' }).apply(x) as SymbolicTensor;
  x = l.batchNormalization({ name: 'b1_bn2' }).apply(x) as SymbolicTensor;
  x = l.add({ name: 'b1_add' }).apply([stem, x]) as SymbolicTensor;
  const b1 = l.activation({ activation: 'relu', name: 'b1_out' }).apply(x) as SymbolicTensor;
  const pooled = l.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same', name: 'b2_pool' }).apply(b1) as SymbolicTensor;
  const shortcut = l.conv2d({ filters: 12, kernelSize: 1, name: 'b2_0_conv' }).apply(pooled) as SymbolicTensor;
  x = l.conv2d({ filters: 12, kernelSize: 3, padding: 'same', name: 'b2_1_conv' }).apply(pooled) as SymbolicTensor;
  x = l.batchNormalization({ name: 'b2_1_bn' }).apply(x) as SymbolicTensor;
  x = l.add({ name: 'b2_add' }).apply([shortcut, x]) as SymbolicTensor;
  x = l.activation({ activation: 'relu', name: 'b2_out' }).apply(x) as SymbolicTensor;
  x = l.globalAveragePooling2d({ name: 'avg_pool' }).apply(x) as SymbolicTensor;
  const out = l.dense({ units: 5, activation: 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'residual' });
}

/** MobileNet/EfficientNet-style: Rescaling, asymmetric ZeroPadding2D, ReLU(6), DepthwiseConv2D, swish, squeeze-excitation (GAP, Reshape, Multiply, hard sigmoid), inverted residual Add. */
function mobile(l: L): tf.LayersModel {
  const input = tf.input({ shape: [12, 12, 3], name: 'image' });
  let x = l.rescaling({ scale: 1 / 127.5, offset: -1, name: 'rescale' }).apply(input) as SymbolicTensor;
  x = l.zeroPadding2d({ padding: [[0, 1], [0, 1]], name: 'stem_pad' }).apply(x) as SymbolicTensor;
  x = l.conv2d({ filters: 8, kernelSize: 3, strides: 2, useBias: false, name: 'stem_conv' }).apply(x) as SymbolicTensor;
  x = l.batchNormalization({ epsilon: 1e-3, name: 'stem_bn' }).apply(x) as SymbolicTensor;
  const stem = l.reLU({ maxValue: 6, name: 'stem_relu' }).apply(x) as SymbolicTensor;
  x = l.depthwiseConv2d({ kernelSize: 3, padding: 'same', depthMultiplier: 2, useBias: false, name: 'dw_conv' }).apply(stem) as SymbolicTensor;
  x = l.batchNormalization({ name: 'dw_bn' }).apply(x) as SymbolicTensor;
  const act = l.activation({ activation: 'swish', name: 'dw_swish' }).apply(x) as SymbolicTensor;
  let se = l.globalAveragePooling2d({ name: 'se_squeeze' }).apply(act) as SymbolicTensor;
  se = l.reshape({ targetShape: [1, 1, 16], name: 'se_reshape' }).apply(se) as SymbolicTensor;
  se = l.conv2d({ filters: 4, kernelSize: 1, activation: 'relu', name: 'se_reduce' }).apply(se) as SymbolicTensor;
  se = l.conv2d({ filters: 16, kernelSize: 1, activation: 'hardSigmoid', name: 'se_expand' }).apply(se) as SymbolicTensor;
  x = l.multiply({ name: 'se_excite' }).apply([act, se]) as SymbolicTensor;
  x = l.conv2d({ filters: 8, kernelSize: 1, useBias: false, name: 'project_conv' }).apply(x) as SymbolicTensor;
  x = l.batchNormalization({ name: 'project_bn' }).apply(x) as SymbolicTensor;
  x = l.add({ name: 'block_add' }).apply([stem, x]) as SymbolicTensor;
  x = l.conv2d({ filters: 16, kernelSize: 1, activation: 'relu6', name: 'top_conv' }).apply(x) as SymbolicTensor;
  x = l.globalAveragePooling2d({ name: 'avg_pool' }).apply(x) as SymbolicTensor;
  x = l.dropout({ rate: 0.2, name: 'top_dropout' }).apply(x) as SymbolicTensor;
  const out = l.dense({ units: 4, activation: 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'mobile' });
}

/**
 * Keras' `Normalization` layer, which TF.js Layers lacks, written from Keras' definition: `mean`,
 * `variance` and `count` weights over the last axis, `(x - mean) / max(sqrt(variance), 1e-7)`.
 * Registered so that TF.js Layers can build and serialise EfficientNet-style models.
 */
export class KerasNormalization extends tf.layers.Layer {
  static readonly className = 'Normalization';
  private stats: Array<ReturnType<tf.layers.Layer['addWeight']>> = [];
  private readonly axis: unknown;

  constructor(args: { name?: string; axis?: unknown }) {
    super(args);
    this.axis = args.axis ?? -1;
  }

  override build(inputShape: tf.Shape | tf.Shape[]): void {
    const channels = (inputShape as number[]).at(-1)!;
    this.stats = [
      this.addWeight('mean', [channels], 'float32', tf.initializers.zeros(), undefined, false),
      this.addWeight('variance', [channels], 'float32', tf.initializers.ones(), undefined, false),
      this.addWeight('count', [], 'float32', tf.initializers.zeros(), undefined, false),
    ];
    this.built = true;
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      return tf.div(tf.sub(x, this.stats[0].read()), tf.maximum(tf.sqrt(this.stats[1].read()), 1e-7));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return { ...super.getConfig(), axis: this.axis as number, mean: null, variance: null, invert: false };
  }
}
tf.serialization.registerClass(KerasNormalization);

/**
 * EfficientNet-style, with keras.applications' layer kinds and names: Rescaling, Normalization and
 * a per-channel Rescaling at the input, `stem_conv_pad` (correct_pad), swish, MBConv blocks with
 * `expand_conv`, `dwconv_pad` + a stride-2 5x5 `dwconv`, squeeze-excitation (`se_squeeze`
 * GlobalAveragePooling2D, `se_reshape` to 1x1xC, 1x1 `se_reduce` swish / `se_expand` sigmoid,
 * `se_excite` Multiply), `project_conv`, `drop` (Dropout, noise shape (None, 1, 1, 1)) + `add`,
 * then `top_conv`, `avg_pool`, `top_dropout`, `predictions`.
 */
function efficient(l: L): tf.LayersModel {
  const input = tf.input({ shape: [16, 16, 3], name: 'image' });
  const apply = (layer: tf.layers.Layer, x: SymbolicTensor | SymbolicTensor[]): SymbolicTensor => layer.apply(x) as SymbolicTensor;
  let x = apply(l.rescaling({ scale: 1 / 255, name: 'rescaling' }), input);
  x = apply(new KerasNormalization({ axis: [3], name: 'normalization' }), x);
  x = apply(l.rescaling({ scale: [0.229, 0.224, 0.225].map((s) => 1 / Math.sqrt(s)) as unknown as number, name: 'rescaling_1' }), x);
  x = apply(l.zeroPadding2d({ padding: [[0, 1], [0, 1]], name: 'stem_conv_pad' }), x);
  x = apply(l.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', useBias: false, name: 'stem_conv' }), x);
  x = apply(l.batchNormalization({ name: 'stem_bn' }), x);
  x = apply(l.activation({ activation: 'swish', name: 'stem_activation' }), x);
  const block = (prefix: string, y: SymbolicTensor, o: { filtersIn: number; filtersOut: number; expansion: number; kernel: number; stride: number; dropRate: number }): SymbolicTensor => {
    const inputs = y;
    const filters = o.filtersIn * o.expansion;
    if (o.expansion !== 1) {
      y = apply(l.conv2d({ filters, kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}expand_conv` }), y);
      y = apply(l.batchNormalization({ name: `${prefix}expand_bn` }), y);
      y = apply(l.activation({ activation: 'swish', name: `${prefix}expand_activation` }), y);
    }
    if (o.stride === 2) {
      const h = y.shape[1] as number;
      const k = Math.floor(o.kernel / 2);
      y = apply(l.zeroPadding2d({ padding: [[k - (h % 2 === 0 ? 1 : 0), k], [k - (h % 2 === 0 ? 1 : 0), k]], name: `${prefix}dwconv_pad` }), y);
    }
    y = apply(l.depthwiseConv2d({ kernelSize: o.kernel, strides: o.stride, padding: o.stride === 2 ? 'valid' : 'same', useBias: false, name: `${prefix}dwconv` }), y);
    y = apply(l.batchNormalization({ name: `${prefix}bn` }), y);
    y = apply(l.activation({ activation: 'swish', name: `${prefix}activation` }), y);
    let se = apply(l.globalAveragePooling2d({ name: `${prefix}se_squeeze` }), y);
    se = apply(l.reshape({ targetShape: [1, 1, filters], name: `${prefix}se_reshape` }), se);
    se = apply(l.conv2d({ filters: Math.max(1, Math.floor(o.filtersIn * 0.25)), kernelSize: 1, padding: 'same', activation: 'swish', name: `${prefix}se_reduce` }), se);
    se = apply(l.conv2d({ filters, kernelSize: 1, padding: 'same', activation: 'sigmoid', name: `${prefix}se_expand` }), se);
    y = apply(l.multiply({ name: `${prefix}se_excite` }), [y, se]);
    y = apply(l.conv2d({ filters: o.filtersOut, kernelSize: 1, padding: 'same', useBias: false, name: `${prefix}project_conv` }), y);
    y = apply(l.batchNormalization({ name: `${prefix}project_bn` }), y);
    if (o.stride === 1 && o.filtersIn === o.filtersOut) {
      y = apply(l.dropout({ rate: o.dropRate, noiseShape: [null, 1, 1, 1] as unknown as number[], name: `${prefix}drop` }), y);
      y = apply(l.add({ name: `${prefix}add` }), [y, inputs]);
    }
    return y;
  };
  x = block('block1a_', x, { filtersIn: 8, filtersOut: 4, expansion: 1, kernel: 3, stride: 1, dropRate: 0 });
  x = block('block2a_', x, { filtersIn: 4, filtersOut: 6, expansion: 6, kernel: 5, stride: 2, dropRate: 0.05 });
  x = block('block2b_', x, { filtersIn: 6, filtersOut: 6, expansion: 6, kernel: 5, stride: 1, dropRate: 0.1 });
  x = apply(l.conv2d({ filters: 16, kernelSize: 1, padding: 'same', useBias: false, name: 'top_conv' }), x);
  x = apply(l.batchNormalization({ name: 'top_bn' }), x);
  x = apply(l.activation({ activation: 'swish', name: 'top_activation' }), x);
  x = apply(l.globalAveragePooling2d({ name: 'avg_pool' }), x);
  x = apply(l.dropout({ rate: 0.2, name: 'top_dropout' }), x);
  const out = apply(l.dense({ units: 5, activation: 'softmax', name: 'predictions' }), x);
  return tf.model({ inputs: input, outputs: out, name: 'efficient' });
}

/** DenseNet-style: a dense block of Concatenate, a transition with AveragePooling2D, a Flatten head. */
function dense(l: L): tf.LayersModel {
  const input = tf.input({ shape: [10, 10, 3], name: 'image' });
  const x0 = l.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv0' }).apply(input) as SymbolicTensor;
  let cat: SymbolicTensor = x0;
  for (const i of [1, 2]) {
    let y = l.batchNormalization({ name: `block_${i}_bn` }).apply(cat) as SymbolicTensor;
    y = l.activation({ activation: 'relu', name: `block_${i}_relu` }).apply(y) as SymbolicTensor;
    y = l.conv2d({ filters: 4, kernelSize: 3, padding: 'same', useBias: false, name: `block_${i}_conv` }).apply(y) as SymbolicTensor;
    cat = l.concatenate({ axis: -1, name: `block_${i}_concat` }).apply([cat, y]) as SymbolicTensor;
  }
  let x = l.batchNormalization({ name: 'transition_bn' }).apply(cat) as SymbolicTensor;
  x = l.activation({ activation: 'relu', name: 'transition_relu' }).apply(x) as SymbolicTensor;
  x = l.conv2d({ filters: 8, kernelSize: 1, useBias: false, name: 'transition_conv' }).apply(x) as SymbolicTensor;
  x = l.averagePooling2d({ poolSize: 2, strides: 2, name: 'transition_pool' }).apply(x) as SymbolicTensor;
  x = l.flatten({ name: 'flatten' }).apply(x) as SymbolicTensor;
  x = l.dense({ units: 6, activation: 'relu', name: 'fc1' }).apply(x) as SymbolicTensor;
  const out = l.dense({ units: 3, activation: 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'dense' });
}

/**
 * Cropping2D, SeparableConv2D (depth multiplier 2, strided), UpSampling2D (nearest) and a
 * GlobalMaxPooling2D head on a non-square map (its global max-pool backward is not the square
 * window one).
 */
function layers(l: L): tf.LayersModel {
  const input = tf.input({ shape: [12, 10, 3], name: 'image' });
  let x = l.conv2d({ filters: 6, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv1' }).apply(input) as SymbolicTensor;
  x = l.cropping2D({ cropping: [[1, 1], [0, 2]], name: 'crop' }).apply(x) as SymbolicTensor;
  x = l.separableConv2d({ filters: 8, kernelSize: 3, depthMultiplier: 2, strides: 2, padding: 'same', activation: 'relu', name: 'sep_conv' }).apply(x) as SymbolicTensor;
  x = l.upSampling2d({ size: [2, 2], name: 'upsample' }).apply(x) as SymbolicTensor;
  x = l.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu', name: 'conv2' }).apply(x) as SymbolicTensor;
  x = l.globalMaxPooling2d({ name: 'gmp' }).apply(x) as SymbolicTensor;
  const out = l.dense({ units: 4, activation: 'softmax', name: 'predictions' }).apply(x) as SymbolicTensor;
  return tf.model({ inputs: input, outputs: out, name: 'layers' });
}

export interface KerasFixture {
  name: string;
  model: tf.LayersModel;
  /** The default Grad-CAM target (a Keras layer name). */
  target: string;
  /** Typical magnitude of the model's input values. */
  inputScale: number;
}

export const KERAS_FIXTURES = {
  residual: { build: residual, target: 'b2_out', inputScale: 1 },
  mobile: { build: mobile, target: 'top_conv', inputScale: 255 },
  dense: { build: dense, target: 'transition_pool', inputScale: 1 },
  efficient: { build: efficient, target: 'top_activation', inputScale: 255 },
  layers: { build: layers, target: 'conv2', inputScale: 1 },
} as const;

/**
 * Seeded weights of a sensible scale: kernels uniform with variance 1/fan_in, BatchNorm statistics
 * far from the identity (so a dropped or misordered BN shows), small biases.
 */
export function seedWeights(model: tf.LayersModel, seed: number): void {
  const rand = mulberry32(seed);
  for (const layer of model.layers) {
    const values = layer.weights.map((w) => {
      const shape = w.shape as number[];
      const size = shape.reduce((a, b) => a * b, 1);
      const variable = w.originalName.split('/').pop()!;
      const fanIn = shape.length > 1 ? size / shape[shape.length - 1] : 1;
      const bound = variable.endsWith('kernel') ? Math.sqrt(3 / (variable === 'depthwise_kernel' ? shape[0] * shape[1] : fanIn)) : 0.1;
      const data = Float32Array.from({ length: size }, () => {
        const r = rand();
        if (variable === 'gamma' || variable === 'moving_variance' || variable === 'variance') return 0.5 + r;
        // Normalization's statistics of 0-1 pixels.
        if (variable === 'mean') return 0.3 + 0.4 * r;
        return (r * 2 - 1) * bound;
      });
      return tf.tensor(data, shape);
    });
    if (values.length > 0) layer.setWeights(values);
    values.forEach((v) => v.dispose());
  }
}

export function buildKerasFixture(name: keyof typeof KERAS_FIXTURES, seed = 11): KerasFixture {
  const spec = KERAS_FIXTURES[name];
  const model = spec.build(tf.layers);
  seedWeights(model, seed);
  return { name, model, target: spec.target, inputScale: spec.inputScale };
}

/** TF.js Layers' own model.json + weights.bin (what `model.save('file://...')` writes). */
export async function saveTfjs(model: tf.LayersModel, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const data = artifacts.weightData as ArrayBuffer;
      await writeFile(join(dir, 'weights.bin'), new Uint8Array(data));
      const json = { modelTopology: artifacts.modelTopology, format: 'layers-model', generatedBy: 'TensorFlow.js tfjs-layers', weightsManifest: [{ paths: ['weights.bin'], weights: artifacts.weightSpecs }] };
      await writeFile(join(dir, 'model.json'), JSON.stringify(json));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  return join(dir, 'model.json');
}

/**
 * The model config as Keras writes it into a full-model .h5 (class Functional, Keras 2 node
 * format). Keras numbers a nested model's calls from 0 within the saved model; TF.js counts the
 * nested model's own construction node, so its references are shifted down by one here.
 */
export function kerasModelConfigOf(model: tf.LayersModel): object {
  const topology = model.toJSON(undefined, false) as { class_name: string; config: { layers: Array<{ class_name: string; name: string; inbound_nodes: Array<Array<[string, number, number, object]>> }> } };
  const nested = new Set(topology.config.layers.filter((l) => l.class_name === 'Model').map((l) => l.name));
  for (const layer of topology.config.layers) {
    layer.inbound_nodes = layer.inbound_nodes.map((node) => node.map(([name, n, t, kw]) => [name, nested.has(name) ? n - 1 : n, t, kw]));
    if (layer.class_name === 'Model') layer.class_name = 'Functional';
  }
  return { class_name: 'Functional', config: topology.config };
}

/** The model's weights per layer, in model order, as `writeKerasModelHdf5` takes them (a nested model's as `<inner layer>/<variable>`). */
export function kerasLayerWeights(model: tf.LayersModel): Array<{ name: string; weights: Array<{ name: string; data: Float32Array; shape: number[] }> }> {
  return model.layers.map((layer) => ({
    name: layer.name,
    weights: layer.weights.map((w) => ({ name: layer instanceof tf.LayersModel ? w.originalName : w.originalName.split('/').pop()!, data: w.read().dataSync() as Float32Array, shape: w.shape as number[] })),
  }));
}

/** A Keras full-model .h5 (`model.save('x.h5')` in tf.keras 2.x). */
export async function saveKerasH5(model: tf.LayersModel, path: string): Promise<string> {
  await writeKerasModelHdf5(path, { modelConfig: kerasModelConfigOf(model), layers: kerasLayerWeights(model) });
  return path;
}

/**
 * The reference: the TF.js Layers model run layer by layer with its own layer implementations
 * (inference mode), `delta` added to the target layer's output, so `tf.grad` with respect to
 * `delta` is the gradient of the score at the target activation. The last Dense is applied
 * without its softmax to expose the logits.
 */
export function referenceForward(model: tf.LayersModel, x: tf.Tensor4D, target: string, delta: tf.Tensor | null): { activation: tf.Tensor4D; logits: tf.Tensor2D } {
  const outputs = new Map<string, tf.Tensor>();
  let activation: tf.Tensor4D | null = null;
  let logits: tf.Tensor2D | null = null;
  const last = model.outputLayers[0];
  for (const layer of model.layers) {
    if (layer.getClassName() === 'InputLayer') {
      outputs.set(layer.name, x);
      continue;
    }
    const inputs = layer.inboundNodes[0].inboundLayers.map((l) => outputs.get(l.name)!);
    let y: tf.Tensor;
    if (layer === last) {
      const [kernel, bias] = layer.getWeights();
      y = tf.add(tf.matMul(inputs[0] as tf.Tensor2D, kernel as tf.Tensor2D), bias);
      logits = y as tf.Tensor2D;
    } else {
      y = layer.apply(inputs.length === 1 ? inputs[0] : inputs, { training: false }) as tf.Tensor;
    }
    if (layer.name === target) {
      activation = y as tf.Tensor4D;
      if (delta) y = tf.add(y, delta);
    }
    outputs.set(layer.name, y);
  }
  return { activation: activation!, logits: logits! };
}

/**
 * A `keras.applications` layout as TF.js Layers deserialises it from our Keras JSON (TF.js names
 * the Functional class `Model`): an independent reading of the layout's weight shapes.
 */
export async function applicationModel(name: KerasArchitecture, inputShape: [number, number, number], classes: number): Promise<tf.LayersModel> {
  const topology = applicationTopology(name, { inputShape, classes });
  if (topology.kind !== 'graph') throw new Error(`${name} is sequential`);
  return tf.models.modelFromJSON({ modelTopology: { ...topology.model, class_name: 'Model' } });
}

/** `model.save_weights('x.h5')`: no topology in the file. */
export async function saveWeightsOnlyH5(model: tf.LayersModel, path: string): Promise<string> {
  await writeKerasModelHdf5(path, { modelConfig: null, layers: kerasLayerWeights(model) });
  return path;
}
