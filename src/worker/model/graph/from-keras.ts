/**
 * A Keras model config (Functional or Sequential: the `model_config` of a full-model .h5, the
 * `modelTopology` of a TF.js Layers model.json, or a `keras.applications` layout built in code) →
 * graph, with any topology: residual adds, concatenations, squeeze-excitation multiplies, nested
 * models (a pretrained base inside a fine-tuned classifier) and shared layers.
 *
 * Layout follows `from-sequential.ts`: the NHWC input is transposed to NCHW once and every 4-D
 * Keras tensor is an NCHW graph value, so Keras axes are mapped (channels: 3 → 1), HWIO kernels
 * become OIHW and TF's 'same' padding becomes explicit pads. Layers whose result depends on
 * Keras' (h, w, c) memory order (Flatten, Reshape) transpose back to NHWC first. 2-D and 3-D
 * tensors keep Keras' layout.
 *
 * Each layer's output value carries the layer's name (`conv5_block3_out`), so `--layer` takes
 * Keras layer names. Every layer class is checked against `SUPPORTED_KERAS_GRAPH_LAYERS` before
 * any weight is read.
 */
import { createHash } from 'node:crypto';
import { ModelError } from '../../../shared/errors.js';
import type { Json } from '../keras-config.js';
import { MODEL_CLASSES, asObject, layerName, pair, parseInputShape, positiveInt, requireChannelsLast, unwrap } from '../keras-config.js';
import { hwioToOihw, tfSamePads } from './from-sequential.js';
import type { Attr, ConstTensor, GraphNode, ModelGraph } from './ir.js';
import type { Shape } from './ops.js';
import { nodeOutputShapes } from './ops.js';

/** One stored weight array of a layer, read on demand (so shapes are checked before any data is read). */
export interface StoredWeight {
  /** Variable name (`kernel`, `gamma`, `moving_mean`), or `''` when the file does not say. */
  name: string;
  shape: number[];
  read(): Float32Array;
}

/** The stored weights of a Keras layer, in storage order; undefined when the file has none. */
export type KerasWeightLookup = (layer: string) => readonly StoredWeight[] | undefined;

export interface KerasGraphOptions {
  /** Where the model came from (path, s3:// URI or URL), for provenance and errors. */
  source: string;
  /**
   * `keras_version` of the file. Keras 3 redefined `hard_sigmoid` (slope 1/6 instead of 0.2);
   * TF.js and Keras 2 use 0.2.
   */
  kerasVersion?: string;
  /** Input shape `[h, w, c]` when the config leaves height and width open (keras.applications with include_top). */
  inputShape?: [number, number, number];
}

/**
 * Look stored weights up by layer. Keras names them `<layer>/<variable>:0`, where the layer name
 * may itself hold slashes (DenseNet's `conv1/conv`) and nested models may add their own name in
 * front (`resnet50/conv1_conv/kernel:0`): a layer's weights are those whose prefix is its name,
 * else those whose prefix ends in `/<name>`. A bare name (`block1_conv1_W_1:0`, Keras 1) belongs
 * to the group that lists it and is matched by position.
 */
export function kerasWeightLookup(entries: ReadonlyArray<{ path: string; group: string; shape: number[]; read: () => Float32Array }>): KerasWeightLookup {
  const byPrefix = new Map<string, StoredWeight[]>();
  for (const e of entries) {
    const path = e.path.replace(/:\d+$/, '');
    const cut = path.lastIndexOf('/');
    const prefix = cut < 0 ? e.group : path.slice(0, cut);
    byPrefix.set(prefix, [...(byPrefix.get(prefix) ?? []), { name: cut < 0 ? '' : path.slice(cut + 1), shape: e.shape, read: e.read }]);
  }
  return (layer) => byPrefix.get(layer) ?? [...byPrefix].find(([prefix]) => prefix.endsWith(`/${layer}`))?.[1];
}

/** Per-layer conversion context. */
interface LayerCall {
  /** Keras layer name (weights are looked up by it). */
  layer: string;
  className: string;
  config: Json;
  /** Output value name: the layer name, with `_call<k>` for the k-th call of a shared layer. */
  base: string;
  inputs: string[];
  /** `source: layer "name" (Class)`, for errors. */
  where: string;
}

type LayerConverter = (b: KerasGraphBuilder, call: LayerCall) => string;

/** Keras axis of a tensor of Keras rank `rank` (batch included) → the graph's axis (4-D tensors are NCHW there). */
function graphAxis(axis: number, rank: number, where: string): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a <= 0 || a >= rank) throw new ModelError(`${where}: axis ${axis} is not a feature axis of a ${rank}-D tensor`);
  return rank === 4 ? [0, 2, 3, 1][a] : a;
}

const IDENTITY_LAYERS = ['Dropout', 'SpatialDropout2D', 'GaussianNoise', 'GaussianDropout', 'AlphaDropout', 'ActivityRegularization'];

/**
 * Activation names as Keras 2, Keras 3 and TF.js serialise them (TF.js writes camelCase:
 * `hardSigmoid`), mapped to graph ops. Each returns the value named `base`.
 */
const ACTIVATIONS: Record<string, (b: KerasGraphBuilder, base: string, x: string) => string> = {
  linear: (b, base, x) => (x === base ? x : b.add(`${base}/Identity`, 'Identity', [x], base)),
  relu: (b, base, x) => b.add(`${base}/Relu`, 'Relu', [x], base),
  relu6: (b, base, x) => b.add(`${base}/Clip`, 'Clip', [x], base, { min: { float: 0 }, max: { float: 6 } }),
  sigmoid: (b, base, x) => b.add(`${base}/Sigmoid`, 'Sigmoid', [x], base),
  tanh: (b, base, x) => b.add(`${base}/Tanh`, 'Tanh', [x], base),
  hard_sigmoid: (b, base, x) => b.add(`${base}/HardSigmoid`, 'HardSigmoid', [x], base, { alpha: { float: b.hardSigmoidSlope }, beta: { float: 0.5 } }),
  swish: (b, base, x) => b.add(`${base}/Mul`, 'Mul', [x, b.add(`${base}/Sigmoid`, 'Sigmoid', [x], `${base}/sigmoid`)], base),
  hard_swish: (b, base, x) => b.add(`${base}/HardSwish`, 'HardSwish', [x], base),
  softmax: (b, base, x) => b.add(`${base}/Softmax`, 'Softmax', [x], base, { axis: { int: b.rank(x) === 4 ? 1 : -1 } }),
  gelu: (b, base, x) => b.add(`${base}/Gelu`, 'Gelu', [x], base),
  gelu_new: (b, base, x) => b.add(`${base}/Gelu`, 'Gelu', [x], base, { approximate: { string: 'tanh' } }),
  leaky_relu: (b, base, x) => b.add(`${base}/LeakyRelu`, 'LeakyRelu', [x], base, { alpha: { float: 0.2 } }),
};
const ACTIVATION_ALIASES: Record<string, string> = { silu: 'swish', hard_silu: 'hard_swish' };

/** The activations a layer may name, for docs and errors. */
export const SUPPORTED_KERAS_ACTIVATIONS: readonly string[] = [...Object.keys(ACTIVATIONS), ...Object.keys(ACTIVATION_ALIASES)].sort();

function activationName(value: unknown, where: string): string {
  // Keras 3 may write {"class_name": "function", "config": "relu"} or {"config": {"name": "relu"}}.
  const obj = asObject(value);
  const raw = value == null ? 'linear' : typeof value === 'string' ? value : typeof obj?.config === 'string' ? obj.config : asObject(obj?.config)?.name;
  const snake = typeof raw === 'string' ? raw.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase() : '';
  const name = ACTIVATION_ALIASES[snake] ?? snake;
  if (!(name in ACTIVATIONS)) throw new ModelError(`${where}: activation ${JSON.stringify(value)} is not supported (supported: ${SUPPORTED_KERAS_ACTIVATIONS.join(', ')})`);
  return name;
}

function activate(b: KerasGraphBuilder, call: LayerCall, x: string): string {
  return ACTIVATIONS[activationName(call.config.activation, call.where)](b, call.base, x);
}

/** The value a layer with an activation computes before it: the final name when the activation is linear. */
function preActivation(call: LayerCall, suffix: string): string {
  return activationName(call.config.activation, call.where) === 'linear' ? call.base : `${call.base}/${suffix}`;
}

function one(call: LayerCall): string {
  if (call.inputs.length !== 1) throw new ModelError(`${call.where} receives ${call.inputs.length} inputs; it takes one`);
  return call.inputs[0];
}

function optionalNumber(value: unknown, fallback: number, what: string): number {
  if (value == null) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw new ModelError(`${what} ${JSON.stringify(value)} is not a number`);
  return value;
}

/** A scalar or per-channel list from a config (Rescaling's scale, Normalization's mean). */
function numbers(value: unknown, what: string): number[] {
  const list = typeof value === 'number' ? [value] : Array.isArray(value) ? value.flat(3) : null;
  if (!list || list.length === 0 || !list.every((v) => typeof v === 'number' && Number.isFinite(v))) throw new ModelError(`${what} ${JSON.stringify(value)} is not a number or a list of numbers`);
  return list as number[];
}

/** Spatial window geometry of Conv/Pool layers, with TF's padding resolved into explicit pads. */
function windowAttrs(b: KerasGraphBuilder, x: string, kernel: [number, number], strides: [number, number], dilation: [number, number], call: LayerCall): Record<string, Attr> {
  const [h, w] = b.kerasShape(x, 3, call.where);
  const paddingMode = call.config.padding ?? 'valid';
  if (paddingMode !== 'same' && paddingMode !== 'valid') throw new ModelError(`${call.where}: padding ${JSON.stringify(paddingMode)} is not supported (same, valid)`);
  const [pt, pb] = tfSamePads(paddingMode, h, (kernel[0] - 1) * dilation[0] + 1, strides[0]);
  const [pl, pr] = tfSamePads(paddingMode, w, (kernel[1] - 1) * dilation[1] + 1, strides[1]);
  return { kernel_shape: { ints: [...kernel] }, strides: { ints: [...strides] }, pads: { ints: [pt, pl, pb, pr] }, dilations: { ints: [...dilation] } };
}

/** A convolution layer's input, its channels and its window (kernel, strides, dilation) from the config. */
function convolutionWindow(b: KerasGraphBuilder, call: LayerCall): { x: string; cin: number; kernel: [number, number]; strides: [number, number]; dilation: [number, number] } {
  const x = one(call);
  const [, , cin] = b.kerasShape(x, 3, call.where);
  const c = call.config;
  return {
    x,
    cin,
    kernel: pair(c.kernel_size, `${call.where} kernel_size`),
    strides: pair(c.strides ?? 1, `${call.where} strides`),
    dilation: pair(c.dilation_rate ?? 1, `${call.where} dilation_rate`),
  };
}

function convolution(b: KerasGraphBuilder, call: LayerCall, depthwise: boolean): string {
  const { x, cin, kernel, strides, dilation } = convolutionWindow(b, call);
  const c = call.config;
  const groups = depthwise ? cin : positiveInt(c.groups ?? 1, `${call.where} groups`);
  if (cin % groups !== 0) throw new ModelError(`${call.where}: ${cin} input channels do not split into ${groups} groups`);
  const multiplier = depthwise ? positiveInt(c.depth_multiplier ?? 1, `${call.where} depth_multiplier`) : 1;
  const filters = depthwise ? cin * multiplier : positiveInt(c.filters, `${call.where} filters`);
  const useBias = c.use_bias !== false;
  const kernelName = depthwise ? 'depthwise_kernel' : 'kernel';
  const stored = b.weights(call, [
    { name: kernelName, shape: depthwise ? [kernel[0], kernel[1], cin, multiplier] : [kernel[0], kernel[1], cin / groups, filters] },
    ...(useBias ? [{ name: 'bias', shape: [filters] }] : []),
  ]);
  // Depthwise HWIO [kh, kw, C, m] is OIHW [C·m, 1, kh, kw] with output channel c·m + k, as ONNX groups order them.
  const oihw = depthwise ? hwioToOihw(stored[0], kernel[0], kernel[1], 1, filters) : hwioToOihw(stored[0], kernel[0], kernel[1], cin / groups, filters);
  const inputs = [x, b.constant(`${call.base}/kernel`, [filters, depthwise ? 1 : cin / groups, ...kernel], oihw)];
  if (useBias) inputs.push(b.constant(`${call.base}/bias`, [filters], stored[1]));
  const attrs = { ...windowAttrs(b, x, kernel, strides, dilation, call), group: { int: groups } };
  return activate(b, call, b.add(`${call.base}/Conv`, 'Conv', inputs, preActivation(call, 'conv'), attrs));
}

/**
 * SeparableConv2D: the depthwise convolution (strides, padding, dilation, depth_multiplier) then a
 * 1x1 pointwise convolution with the bias and the activation, as Keras' separable_conv2d.
 */
function separableConvolution(b: KerasGraphBuilder, call: LayerCall): string {
  const { x, cin, kernel, strides, dilation } = convolutionWindow(b, call);
  const c = call.config;
  // TF.js Layers leaves depth_multiplier out of a SeparableConv2D's config: the stored kernel says.
  const multiplier = positiveInt(c.depth_multiplier ?? b.storedShape(call.layer, 'depthwise_kernel')?.[3] ?? 1, `${call.where} depth_multiplier`);
  const filters = positiveInt(c.filters, `${call.where} filters`);
  const useBias = c.use_bias !== false;
  const inner = cin * multiplier;
  const stored = b.weights(call, [
    { name: 'depthwise_kernel', shape: [kernel[0], kernel[1], cin, multiplier] },
    { name: 'pointwise_kernel', shape: [1, 1, inner, filters] },
    ...(useBias ? [{ name: 'bias', shape: [filters] }] : []),
  ]);
  const depthwiseKernel = b.constant(`${call.base}/depthwise_kernel`, [inner, 1, ...kernel], hwioToOihw(stored[0], kernel[0], kernel[1], 1, inner));
  const depthwise = b.add(`${call.base}/depthwise`, 'Conv', [x, depthwiseKernel], `${call.base}/depthwise_out`, { ...windowAttrs(b, x, kernel, strides, dilation, call), group: { int: cin } });
  const inputs = [depthwise, b.constant(`${call.base}/pointwise_kernel`, [filters, inner, 1, 1], hwioToOihw(stored[1], 1, 1, inner, filters))];
  if (useBias) inputs.push(b.constant(`${call.base}/bias`, [filters], stored[2]));
  const pointwise = { kernel_shape: { ints: [1, 1] }, strides: { ints: [1, 1] }, pads: { ints: [0, 0, 0, 0] }, dilations: { ints: [1, 1] }, group: { int: 1 } };
  return activate(b, call, b.add(`${call.base}/Conv`, 'Conv', inputs, preActivation(call, 'conv'), pointwise));
}

/** Keras' per-side sizes (ZeroPadding2D, Cropping2D): int for all sides, [rows, cols], or [[top, bottom], [left, right]]; as [top, left, bottom, right]. */
function sides(p: unknown, what: string): [number, number, number, number] {
  const pairs = typeof p === 'number' ? [[p, p], [p, p]] : Array.isArray(p) && p.length === 2 && p.every((v) => typeof v === 'number') ? [[p[0], p[0]], [p[1], p[1]]] : p;
  const ok = Array.isArray(pairs) && pairs.length === 2 && pairs.every((q) => Array.isArray(q) && q.length === 2 && q.every((v) => Number.isInteger(v) && (v as number) >= 0));
  if (!ok) throw new ModelError(`${what} ${JSON.stringify(p)} is not a set of non-negative integers`);
  const [[t, bottom], [l, r]] = pairs as [[number, number], [number, number]];
  return [t, l, bottom, r];
}

function pooling(op: 'MaxPool' | 'AveragePool'): LayerConverter {
  return (b, call) => {
    const x = one(call);
    const size = pair(call.config.pool_size ?? 2, `${call.where} pool_size`);
    // Keras: strides=None means strides = pool_size; TF's 'same' average excludes the padding (ONNX count_include_pad=0).
    const strides = call.config.strides == null ? size : pair(call.config.strides, `${call.where} strides`);
    const attrs = windowAttrs(b, x, size, strides, [1, 1], call);
    delete attrs.dilations;
    return b.add(`${call.base}/${op}`, op, [x], call.base, attrs);
  };
}

function merge(op: 'Add' | 'Sub' | 'Mul'): LayerConverter {
  return (b, call) => {
    if (call.inputs.length < 2 || (op === 'Sub' && call.inputs.length !== 2)) throw new ModelError(`${call.where} receives ${call.inputs.length} inputs`);
    const ranks = new Set(call.inputs.map((v) => b.rank(v)));
    if (ranks.size !== 1) throw new ModelError(`${call.where}: inputs of different ranks (${call.inputs.map((v) => `[${b.kerasShape(v).join(', ')}]`).join(', ')}) are not supported`);
    let acc = call.inputs[0];
    call.inputs.slice(1).forEach((v, i) => {
      acc = b.add(`${call.base}/${op}${i === 0 ? '' : `_${i}`}`, op, [acc, v], i === call.inputs.length - 2 ? call.base : `${call.base}/${op.toLowerCase()}_${i}`);
    });
    return acc;
  };
}

/** Per-channel constant that broadcasts over a value of the given graph rank (`[C, 1, 1]` for NCHW). */
function channelConstant(b: KerasGraphBuilder, name: string, values: number[] | Float32Array, rank: number): string {
  const dims = values.length === 1 ? [] : rank === 4 ? [values.length, 1, 1] : [values.length];
  return b.constant(name, dims, Float32Array.from(values));
}

/** The converters, keyed by Keras class name: the one list of layers Keras graphs may contain. */
const LAYERS: Record<string, LayerConverter> = {
  Conv2D: (b, call) => convolution(b, call, false),
  SeparableConv2D: (b, call) => separableConvolution(b, call),
  DepthwiseConv2D: (b, call) => convolution(b, call, true),
  Dense: (b, call) => {
    const x = one(call);
    if (b.rank(x) !== 2) throw new ModelError(`${call.where} receives shape [${b.kerasShape(x).join(', ')}]; only Dense on a vector (after Flatten or global pooling) is supported`);
    const [features] = b.kerasShape(x);
    const units = positiveInt(call.config.units, `${call.where} units`);
    const useBias = call.config.use_bias !== false;
    const stored = b.weights(call, [{ name: 'kernel', shape: [features, units] }, ...(useBias ? [{ name: 'bias', shape: [units] }] : [])]);
    const inputs = [x, b.constant(`${call.base}/kernel`, [features, units], stored[0])];
    if (useBias) inputs.push(b.constant(`${call.base}/bias`, [units], stored[1]));
    return activate(b, call, b.add(`${call.base}/Gemm`, 'Gemm', inputs, preActivation(call, 'linear')));
  },
  BatchNormalization: (b, call) => {
    const x = one(call);
    const rank = b.rank(x);
    const axes = Array.isArray(call.config.axis) ? call.config.axis : [call.config.axis ?? -1];
    if (axes.length !== 1 || graphAxis(Number(axes[0]), rank, call.where) !== 1) throw new ModelError(`${call.where}: axis ${JSON.stringify(call.config.axis)} is not supported; only the channel axis (-1)`);
    const channels = b.kerasShape(x).at(-1)!;
    const scale = call.config.scale !== false;
    const center = call.config.center !== false;
    const stored = b.weights(call, [
      ...(scale ? [{ name: 'gamma', shape: [channels] }] : []),
      ...(center ? [{ name: 'beta', shape: [channels] }] : []),
      { name: 'moving_mean', shape: [channels] },
      { name: 'moving_variance', shape: [channels] },
    ]);
    const [gamma, beta] = [scale ? stored[0] : new Float32Array(channels).fill(1), center ? stored[scale ? 1 : 0] : new Float32Array(channels)];
    const [mean, variance] = stored.slice(-2);
    const inputs = [x, ...(
      [['gamma', gamma], ['beta', beta], ['moving_mean', mean], ['moving_variance', variance]] as const
    ).map(([n, data]) => b.constant(`${call.base}/${n}`, [channels], data))];
    return b.add(`${call.base}/BatchNormalization`, 'BatchNormalization', inputs, call.base, { epsilon: { float: optionalNumber(call.config.epsilon, 1e-3, `${call.where} epsilon`) } });
  },
  Activation: (b, call) => activate(b, call, one(call)),
  ReLU: (b, call) => {
    const x = one(call);
    const max = call.config.max_value == null ? null : optionalNumber(call.config.max_value, 0, `${call.where} max_value`);
    const slope = optionalNumber(call.config.negative_slope, 0, `${call.where} negative_slope`);
    if (optionalNumber(call.config.threshold, 0, `${call.where} threshold`) !== 0) throw new ModelError(`${call.where}: a non-zero threshold is not supported`);
    if (slope !== 0 && max !== null) throw new ModelError(`${call.where}: max_value together with negative_slope is not supported`);
    if (max !== null) return b.add(`${call.base}/Clip`, 'Clip', [x], call.base, { min: { float: 0 }, max: { float: max } });
    if (slope !== 0) return b.add(`${call.base}/LeakyRelu`, 'LeakyRelu', [x], call.base, { alpha: { float: slope } });
    return b.add(`${call.base}/Relu`, 'Relu', [x], call.base);
  },
  LeakyReLU: (b, call) => {
    const alpha = optionalNumber(call.config.negative_slope ?? call.config.alpha, 0.3, `${call.where} negative_slope`);
    return b.add(`${call.base}/LeakyRelu`, 'LeakyRelu', [one(call)], call.base, { alpha: { float: alpha } });
  },
  Softmax: (b, call) => {
    const x = one(call);
    const axis = graphAxis(Number(call.config.axis ?? -1), b.rank(x), call.where);
    return b.add(`${call.base}/Softmax`, 'Softmax', [x], call.base, { axis: { int: axis } });
  },
  Add: merge('Add'),
  Subtract: merge('Sub'),
  Multiply: merge('Mul'),
  Average: (b, call) => {
    const sum = merge('Add')(b, { ...call, base: `${call.base}/sum` });
    return b.add(`${call.base}/Mul`, 'Mul', [sum, b.constant(`${call.base}/scale`, [], Float32Array.of(1 / call.inputs.length))], call.base);
  },
  Concatenate: (b, call) => {
    if (call.inputs.length < 2) throw new ModelError(`${call.where} receives ${call.inputs.length} inputs`);
    const axis = graphAxis(Number(call.config.axis ?? -1), b.rank(call.inputs[0]), call.where);
    return b.add(`${call.base}/Concat`, 'Concat', call.inputs, call.base, { axis: { int: axis } });
  },
  ZeroPadding2D: (b, call) => {
    const x = one(call);
    b.kerasShape(x, 3, call.where);
    const [t, l, bottom, r] = sides(call.config.padding ?? 1, `${call.where}: padding`);
    return b.add(`${call.base}/Pad`, 'Pad', [x], call.base, { pads: { ints: [0, 0, t, l, 0, 0, bottom, r] }, mode: { string: 'constant' }, value: { float: 0 } });
  },
  Cropping2D: (b, call) => {
    const x = one(call);
    const [h, w] = b.kerasShape(x, 3, call.where);
    const [t, l, bottom, r] = sides(call.config.cropping ?? 0, `${call.where}: cropping`);
    if (t + bottom >= h || l + r >= w) throw new ModelError(`${call.where}: cropping ${JSON.stringify(call.config.cropping)} leaves nothing of a ${h}x${w} input`);
    // ONNX Pad removes rows and columns where its pads are negative.
    return b.add(`${call.base}/Pad`, 'Pad', [x], call.base, { pads: { ints: [0, 0, -t, -l, 0, 0, -bottom, -r] }, mode: { string: 'constant' }, value: { float: 0 } });
  },
  UpSampling2D: (b, call) => {
    const x = one(call);
    b.kerasShape(x, 3, call.where);
    const [sh, sw] = pair(call.config.size ?? 2, `${call.where} size`);
    const interpolation = call.config.interpolation ?? 'nearest';
    // Keras resizes with tf.image.resize: nearest repeats each pixel (for integer factors the
    // same as ONNX's asymmetric/floor sampling); bilinear samples at half-pixel centres.
    const modes: Record<string, Record<string, Attr>> = {
      nearest: { mode: { string: 'nearest' }, coordinate_transformation_mode: { string: 'asymmetric' }, nearest_mode: { string: 'floor' } },
      bilinear: { mode: { string: 'linear' }, coordinate_transformation_mode: { string: 'half_pixel' } },
    };
    if (typeof interpolation !== 'string' || !(interpolation in modes)) throw new ModelError(`${call.where}: interpolation ${JSON.stringify(interpolation)} is not supported (nearest, bilinear)`);
    return b.add(`${call.base}/Resize`, 'Resize', [x], call.base, { ...modes[interpolation], scales: { floats: [1, 1, sh, sw] } });
  },
  MaxPooling2D: pooling('MaxPool'),
  AveragePooling2D: pooling('AveragePool'),
  GlobalMaxPooling2D: (b, call) => {
    const x = one(call);
    const [h, w] = b.kerasShape(x, 3, call.where);
    // A max-pool whose window is the whole map: an op both engines run and differentiate, and one
    // the default target walks back through (so the target is the pooled feature map).
    const attrs: Record<string, Attr> = { kernel_shape: { ints: [h, w] }, strides: { ints: [h, w] }, pads: { ints: [0, 0, 0, 0] } };
    if (call.config.keepdims === true) return b.add(`${call.base}/MaxPool`, 'MaxPool', [x], call.base, attrs);
    const pooled = b.add(`${call.base}/MaxPool`, 'MaxPool', [x], `${call.base}/pool`, attrs);
    return b.add(`${call.base}/Flatten`, 'Flatten', [pooled], call.base, { axis: { int: 1 } });
  },
  GlobalAveragePooling2D: (b, call) => {
    const x = one(call);
    b.kerasShape(x, 3, call.where);
    if (call.config.keepdims === true) return b.add(`${call.base}/GlobalAveragePool`, 'GlobalAveragePool', [x], call.base);
    const pooled = b.add(`${call.base}/GlobalAveragePool`, 'GlobalAveragePool', [x], `${call.base}/pool`);
    return b.add(`${call.base}/Flatten`, 'Flatten', [pooled], call.base, { axis: { int: 1 } });
  },
  Flatten: (b, call) => {
    const x = b.toKerasOrder(one(call), call.base);
    return b.add(`${call.base}/Flatten`, 'Flatten', [x], call.base, { axis: { int: 1 } });
  },
  Reshape: (b, call) => {
    const target = call.config.target_shape;
    if (!Array.isArray(target) || !target.every((d) => Number.isInteger(d) && (d > 0 || d === -1))) throw new ModelError(`${call.where}: target_shape ${JSON.stringify(target)} is not a list of sizes`);
    const x = b.toKerasOrder(one(call), call.base);
    const image = target.length === 3;
    const y = b.add(`${call.base}/Reshape`, 'Reshape', [x], image ? `${call.base}/nhwc` : call.base, { shape: { ints: [0, ...(target as number[])] } });
    return image ? b.add(`${call.base}/to_nchw`, 'Transpose', [y], call.base, { perm: { ints: [0, 3, 1, 2] } }) : y;
  },
  Rescaling: (b, call) => {
    const x = one(call);
    const rank = b.rank(x);
    const scale = numbers(call.config.scale ?? 1, `${call.where} scale`);
    const offset = numbers(call.config.offset ?? 0, `${call.where} offset`);
    const scaled = b.add(`${call.base}/Mul`, 'Mul', [x, channelConstant(b, `${call.base}/scale`, scale, rank)], `${call.base}/scaled`);
    return b.add(`${call.base}/Add`, 'Add', [scaled, channelConstant(b, `${call.base}/offset`, offset, rank)], call.base);
  },
  Normalization: (b, call) => {
    const x = one(call);
    const rank = b.rank(x);
    const channels = b.kerasShape(x).at(-1)!;
    const axes = Array.isArray(call.config.axis) ? call.config.axis : [call.config.axis ?? -1];
    if (axes.length !== 1 || graphAxis(Number(axes[0]), rank, call.where) !== (rank === 4 ? 1 : rank - 1)) throw new ModelError(`${call.where}: only normalisation over the last axis is supported`);
    if (call.config.invert === true) throw new ModelError(`${call.where}: invert=true is not supported`);
    // Statistics are in the config when given to the constructor, else adapted and stored as weights.
    let mean: number[];
    let variance: number[];
    if (call.config.mean != null && call.config.variance != null) {
      mean = numbers(call.config.mean, `${call.where} mean`);
      variance = numbers(call.config.variance, `${call.where} variance`);
    } else {
      const stored = b.weights(call, [{ name: 'mean' }, { name: 'variance' }]);
      [mean, variance] = [Array.from(stored[0]), Array.from(stored[1])];
    }
    for (const [what, v] of [['mean', mean], ['variance', variance]] as const) {
      if (v.length !== 1 && v.length !== channels) throw new ModelError(`${call.where}: ${what} has ${v.length} values for ${channels} channels`);
    }
    // Keras: (x - mean) / max(sqrt(variance), epsilon), epsilon = 1e-7.
    const centred = b.add(`${call.base}/Sub`, 'Sub', [x, channelConstant(b, `${call.base}/mean`, mean, rank)], `${call.base}/centred`);
    const inv = variance.map((v) => 1 / Math.max(Math.sqrt(v), 1e-7));
    return b.add(`${call.base}/Mul`, 'Mul', [centred, channelConstant(b, `${call.base}/inv_std`, inv, rank)], call.base);
  },
  ...Object.fromEntries(IDENTITY_LAYERS.map((name): [string, LayerConverter] => [name, (b, call) => b.add(`${call.base}/Identity`, 'Identity', [one(call)], call.base)])),
};

/** Keras layer classes a model config may contain (besides InputLayer and nested models). */
export const SUPPORTED_KERAS_GRAPH_LAYERS: readonly string[] = ['InputLayer', ...Object.keys(LAYERS)].sort();

/** Accumulates graph nodes with their shapes, inferred by the shared op rules as each is added. */
class KerasGraphBuilder {
  readonly nodes: GraphNode[] = [];
  readonly constants: Record<string, ConstTensor> = {};
  readonly shapes = new Map<string, Shape>();
  readonly hardSigmoidSlope: number;
  /** The graph input, once the input layer is converted. */
  inputInfo?: { name: string; shape: [number, number, number] };
  private readonly nodeNames = new Set<string>();
  private readonly hash = createHash('sha256');
  private readonly read = new Map<string, Float32Array[]>();

  constructor(
    private readonly lookup: KerasWeightLookup,
    readonly options: KerasGraphOptions,
  ) {
    this.hardSigmoidSlope = /^3\./.test(options.kerasVersion ?? '') ? 1 / 6 : 0.2;
  }

  add(name: string, op: string, inputs: string[], output: string, attrs: Record<string, Attr> = {}): string {
    if (this.nodeNames.has(name) || this.shapes.has(output)) throw new ModelError(`${this.options.source}: the name "${output}" is used by two layers (a nested model shares a layer name with its outer model?)`);
    const node: GraphNode = { name, op, inputs, outputs: [output], attrs };
    const [shape] = nodeOutputShapes(node, inputs.map((v) => this.shapes.get(v)!), this);
    this.nodes.push(node);
    this.nodeNames.add(name);
    this.shapes.set(output, shape);
    return output;
  }

  constant(name: string, dims: number[], data: Float32Array): string {
    this.constants[name] = { dtype: 'float32', dims, data };
    this.shapes.set(name, dims);
    return name;
  }

  /** Graph rank of a value (4: an NCHW image tensor). */
  rank(value: string): number {
    return this.shapes.get(value)!.length;
  }

  /** The Keras shape without the batch axis (`[h, w, c]` for images); checks the rank when `rank` is given. */
  kerasShape(value: string, rank?: number, where?: string): number[] {
    const s = this.shapes.get(value)!;
    const shape = s.length === 4 ? [s[2], s[3], s[1]] : s.slice(1);
    if (rank !== undefined && shape.length !== rank) throw new ModelError(`${where}: needs a ${rank + 1}-D (batch, height, width, channels) input but receives shape [${shape.join(', ')}]`);
    return shape;
  }

  /** An image value in Keras' NHWC order (for layers that depend on memory order); others as they are. */
  toKerasOrder(value: string, base: string): string {
    return this.rank(value) === 4 ? this.add(`${base}/to_nhwc`, 'Transpose', [value], `${base}/nhwc_in`, { perm: { ints: [0, 2, 3, 1] } }) : value;
  }

  /**
   * A layer's weights in the given order, matched by variable name (or by position when the file's
   * names say nothing) and checked against the expected shapes (`shape` omitted: any shape whose
   * size matches the first expected array's channels is accepted, as Normalization stores either
   * `[C]` or `[1, 1, 1, C]`).
   */
  weights(call: LayerCall, expected: ReadonlyArray<{ name: string; shape?: number[] }>): Float32Array[] {
    const cached = this.read.get(call.layer);
    if (cached) return cached;
    const stored = this.lookup(call.layer) ?? [];
    const byName = expected.map((e) => stored.find((s) => s.name === e.name));
    const picked = byName.every((s) => s !== undefined) ? (byName as StoredWeight[]) : stored.length === expected.length ? stored : null;
    const describe = (list: ReadonlyArray<{ name: string; shape?: number[] }>): string => list.map((w) => `${w.name || '?'}${w.shape ? ` [${w.shape.join(', ')}]` : ''}`).join(', ');
    if (!picked) throw new ModelError(`${call.where} needs weights ${describe(expected)} but the file has ${stored.length > 0 ? describe(stored) : 'none for it'}`);
    picked.forEach((s, i) => {
      const want = expected[i].shape;
      if (want && (s.shape.length !== want.length || s.shape.some((d, k) => d !== want[k]))) {
        throw new ModelError(`${call.where}: weight ${expected[i].name} has shape [${s.shape.join(', ')}] but the layer needs [${want.join(', ')}]`);
      }
    });
    const arrays = picked.map((s) => s.read());
    for (const a of arrays) this.hash.update(new Uint8Array(a.buffer, a.byteOffset, a.byteLength));
    this.read.set(call.layer, arrays);
    return arrays;
  }

  /** The shape of a layer's stored weight, without reading it; undefined when the file has no such weight. */
  storedShape(layer: string, name: string): number[] | undefined {
    return this.lookup(layer)?.find((w) => w.name === name)?.shape;
  }

  weightsHash(): string {
    return this.hash.digest('hex');
  }
}

/** A reference to a layer's output in a config: Keras 2 `[name, node, tensor, kwargs]`, Keras 3 `keras_history`. */
interface TensorRef {
  layer: string;
  node: number;
  tensor: number;
}

function tensorRefs(value: unknown): TensorRef[] {
  const refs: TensorRef[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      if (typeof v[0] === 'string' && typeof v[1] === 'number' && typeof v[2] === 'number') {
        refs.push({ layer: v[0], node: v[1], tensor: v[2] });
        return;
      }
      v.forEach(visit);
      return;
    }
    const obj = asObject(v);
    if (!obj) return;
    if (Array.isArray(obj.keras_history)) return visit(obj.keras_history);
    // Keras 3 node data: tensors sit in "args" (kwargs hold options such as `training`).
    visit('args' in obj ? obj.args : Object.values(obj));
  };
  visit(value);
  return refs;
}

/** Calls of a layer (one per inbound node), each a list of input references. */
function layerCalls(layer: Json): TensorRef[][] {
  const nodes = layer.inbound_nodes;
  if (!Array.isArray(nodes)) return [];
  return nodes.map((n) => tensorRefs(n));
}

const key = (r: TensorRef): string => `${r.layer}\u0000${r.node}\u0000${r.tensor}`;

function modelLayers(model: Json, source: string): Json[] {
  const config = model.config;
  const layers = Array.isArray(config) ? config : asObject(config)?.layers;
  if (!Array.isArray(layers)) throw new ModelError(`${source}: model "${layerName(model)}" has no layer list`);
  return layers.map((l, i) => {
    const obj = asObject(l);
    if (!obj || typeof obj.class_name !== 'string') throw new ModelError(`${source}: layer #${i} of "${layerName(model)}" is malformed`);
    return obj;
  });
}

/** Every layer class of the model, nested models included, is one the converter knows. */
function checkLayers(model: Json, source: string): void {
  for (const layer of modelLayers(model, source)) {
    const cls = layer.class_name as string;
    if (MODEL_CLASSES.has(cls)) {
      checkLayers(layer, source);
      continue;
    }
    const where = `${source}: layer "${layerName(layer)}" (${cls})`;
    if (cls !== 'InputLayer' && !(cls in LAYERS)) {
      const hint =
        cls === 'Lambda' || cls.startsWith('TFOp') || cls === 'SlicingOpLambda'
          ? ' (it holds Python code, which cannot be read from the file: rebuild that part from Keras layers, or export the model to ONNX with tf2onnx, which traces the code into ONNX operators, and pass the .onnx file)'
          : '';
      throw new ModelError(`${where} is not supported${hint}; supported layers: ${SUPPORTED_KERAS_GRAPH_LAYERS.join(', ')}`);
    }
    requireChannelsLast(asObject(layer.config) ?? {}, where);
  }
}

/** Convert one (possibly nested) model; `inputs` are the values its input layers receive (null at the top). */
function convertModel(b: KerasGraphBuilder, model: Json, inputs: string[] | null): string[] {
  const source = b.options.source;
  const layers = modelLayers(model, source);
  if (model.class_name === 'Sequential') return convertSequential(b, model, layers, inputs);
  const config = asObject(model.config) ?? {};
  const inputRefs = tensorRefs(config.input_layers);
  const outputRefs = tensorRefs(config.output_layers);
  if (inputRefs.length !== 1 || outputRefs.length !== 1) {
    throw new ModelError(`${source}: model "${layerName(model)}" has ${inputRefs.length} inputs and ${outputRefs.length} outputs; only single-input, single-output models are supported`);
  }
  const values = new Map<string, string>();
  const byName = new Map(layers.map((l) => [layerName(l), l]));
  const inputLayer = byName.get(inputRefs[0].layer);
  if (!inputLayer) throw new ModelError(`${source}: model "${layerName(model)}" names input layer "${inputRefs[0].layer}", which it does not contain`);
  values.set(key(inputRefs[0]), inputs ? inputs[0] : graphInput(b, inputLayer, layerName(inputLayer)));

  // Calls in dependency order: Keras lists layers topologically, but nothing guarantees it for hand-written configs.
  // Keras numbers a layer's nodes within the saved model only; TF.js keeps a nested model's own
  // construction node as node 0, so its calls start at 1 there.
  const tfjs = /^tfjs/.test(b.options.kerasVersion ?? '');
  const resolve = (r: TensorRef): TensorRef => (tfjs && MODEL_CLASSES.has(String(byName.get(r.layer)?.class_name)) ? { ...r, node: r.node - 1 } : r);
  let pending = layers.filter((l) => l !== inputLayer).flatMap((layer) => layerCalls(layer).map((refs, index) => ({ layer, refs: refs.map(resolve), index })));
  while (pending.length > 0) {
    const ready = pending.filter((p) => p.refs.every((r) => values.has(key(r))));
    if (ready.length === 0) {
      const stuck = pending[0];
      const missing = stuck.refs.find((r) => !values.has(key(r)))!;
      throw new ModelError(`${source}: layer "${layerName(stuck.layer)}" reads the output of "${missing.layer}", which the model does not compute from its input`);
    }
    for (const p of ready) {
      const outputs = convertCall(b, p.layer, p.index, p.refs.map((r) => values.get(key(r))!));
      outputs.forEach((v, t) => values.set(key({ layer: layerName(p.layer), node: p.index, tensor: t }), v));
    }
    pending = pending.filter((p) => !ready.includes(p));
  }
  const out = values.get(key(resolve(outputRefs[0])));
  if (!out) throw new ModelError(`${source}: the output layer "${outputRefs[0].layer}" of model "${layerName(model)}" is not computed from its input`);
  return [out];
}

function convertSequential(b: KerasGraphBuilder, model: Json, layers: Json[], inputs: string[] | null): string[] {
  const hasInputLayer = layers[0]?.class_name === 'InputLayer';
  const rest = hasInputLayer ? layers.slice(1) : layers;
  // Without an InputLayer, the first layer declares the input shape (batch_input_shape).
  let x = inputs ? inputs[0] : graphInput(b, layers[0] ?? {}, hasInputLayer ? layerName(layers[0]) : 'input');
  if (rest.length === 0) throw new ModelError(`${b.options.source}: model "${layerName(model)}" has no layers`);
  for (const layer of rest) [x] = convertCall(b, layer, 0, [x]);
  return [x];
}

/** The graph input, named after the input layer, transposed once to NCHW. */
function graphInput(b: KerasGraphBuilder, layer: Json, name: string): string {
  const config = asObject(layer.config) ?? {};
  const declared = config.batch_input_shape ?? config.batch_shape;
  const where = `${b.options.source}: layer "${layerName(layer)}" (${String(layer.class_name)})`;
  let shape = b.options.inputShape;
  if (!shape) {
    if (declared === undefined) throw new ModelError(`${where}: the model declares no input shape (no InputLayer with batch_input_shape)`);
    shape = parseInputShape(declared, where);
  }
  if (b.shapes.size > 0) throw new ModelError(`${b.options.source}: the model has more than one input`);
  b.shapes.set(name, [1, ...shape]);
  b.inputInfo = { name, shape: [...shape] };
  return b.add('to_nchw', 'Transpose', [name], `${name}/nchw`, { perm: { ints: [0, 3, 1, 2] } });
}

function convertCall(b: KerasGraphBuilder, layer: Json, index: number, inputs: string[]): string[] {
  const cls = layer.class_name as string;
  const name = layerName(layer);
  if (MODEL_CLASSES.has(cls)) return convertModel(b, layer, inputs);
  const call: LayerCall = {
    layer: name,
    className: cls,
    config: asObject(layer.config) ?? {},
    base: index === 0 ? name : `${name}_call${index}`,
    inputs,
    where: `${b.options.source}: layer "${name}" (${cls})`,
  };
  if (cls === 'InputLayer') throw new ModelError(`${call.where}: a second input layer is not supported`);
  return [LAYERS[cls](b, call)];
}

/** Convert a Keras model config with its weights into a graph. Layer classes are checked before any weight is read. */
export function graphFromKeras(topology: unknown, weights: KerasWeightLookup, options: KerasGraphOptions): ModelGraph {
  const root = unwrap(topology, options.source);
  if (!MODEL_CLASSES.has(root.class_name as string)) throw new ModelError(`${options.source}: top-level class "${String(root.class_name)}" is not a model (expected Sequential or Functional)`);
  checkLayers(root, options.source);
  const b = new KerasGraphBuilder(weights, options);
  const [output] = convertModel(b, root, null);
  const input = b.inputInfo!;
  return {
    name: layerName(root) === '(unnamed)' ? 'model' : layerName(root),
    inputShape: input.shape,
    input: { name: input.name, layout: 'nhwc' },
    output,
    nodes: b.nodes,
    constants: b.constants,
    weightsHash: b.weightsHash(),
    source: options.source,
    producer: 'keras',
  };
}
