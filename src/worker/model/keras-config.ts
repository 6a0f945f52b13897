/**
 * Keras model JSON (the `modelTopology` of a TF.js Layers model.json, or the `model_config`
 * attribute of a Keras full-model .h5) → `Architecture`. Accepts Sequential models and Functional
 * models whose layers form a single chain, including a nested model used as a layer (the usual
 * fine-tuned VGG: a VGG16 base followed by a new head). Anything else is refused by name.
 */
import { ModelError } from '../../shared/errors.js';
import type { Architecture, LayerConfig } from './architecture.js';
import type { Activation, Padding } from './spec.js';

export type Json = Record<string, unknown>;

export const SUPPORTED_KERAS_LAYERS = [
  'InputLayer',
  'Conv2D',
  'MaxPooling2D',
  'Flatten',
  'Dense',
  'Dropout',
  'GlobalAveragePooling2D',
  'Activation',
] as const;

const ACTIVATIONS: readonly Activation[] = ['linear', 'relu', 'softmax', 'sigmoid'];
export const MODEL_CLASSES: ReadonlySet<string> = new Set(['Sequential', 'Functional', 'Model']);

/**
 * What a Keras model config describes: a chain of the layers above (`sequential`, kept as the
 * `Architecture` the Keras-exact VGG16 path and its weight checks are built on), or any other
 * topology (`graph`: converted by `graph/from-keras.ts`, which supports many more layers).
 */
export type KerasTopology = { kind: 'sequential'; architecture: Architecture } | { kind: 'graph'; model: Json; name: string };

export function parseKerasTopology(topology: unknown, source: string): KerasTopology {
  const root = unwrap(topology, source);
  try {
    return { kind: 'sequential', architecture: parseKerasModelConfig(root, source) };
  } catch (err) {
    // Not a chain of the sequential layer set: the graph converter takes it, with its own errors.
    if (!(err instanceof ModelError)) throw err;
    return { kind: 'graph', model: root, name: modelName(root) };
  }
}

/**
 * Parse a Keras model config. `topology` may be `{class_name, config}` or a wrapper holding it in
 * `model_config` (what tensorflowjs_converter writes for Keras models).
 */
export function parseKerasModelConfig(topology: unknown, source: string): Architecture {
  const root = unwrap(topology, source);
  const state: ParseState = { inputShape: null, layers: [], source };
  appendModel(root, state);
  if (!state.inputShape) {
    throw new ModelError(`${source}: the model declares no input shape (no InputLayer and no batch_input_shape on its first layer)`);
  }
  const name = typeof asObject(root.config)?.name === 'string' ? (asObject(root.config)!.name as string) : 'model';
  return { name, inputShape: state.inputShape, layers: state.layers };
}

interface ParseState {
  inputShape: [number, number, number] | null;
  layers: LayerConfig[];
  source: string;
}

export function unwrap(topology: unknown, source: string): Json {
  let value = asObject(topology);
  if (value && 'model_config' in value) value = asObject(value.model_config);
  if (!value || typeof value.class_name !== 'string') {
    throw new ModelError(`${source}: not a Keras model config (expected {"class_name": ..., "config": ...})`);
  }
  return value;
}

/** Appends a (possibly nested) model's layers in execution order. */
function appendModel(model: Json, state: ParseState): void {
  const className = model.class_name as string;
  if (!MODEL_CLASSES.has(className)) {
    throw new ModelError(`${state.source}: top-level class "${className}" is not a model (expected Sequential or Functional)`);
  }
  for (const layer of orderedLayers(model, state.source)) appendLayer(layer, state);
}

/** The layers of a model in execution order; Functional models must be a single chain. */
function orderedLayers(model: Json, source: string): Json[] {
  const config = model.config;
  // Old TF.js Sequential models store the layer list directly as `config`.
  const layers = Array.isArray(config) ? config : asObject(config)?.layers;
  if (!Array.isArray(layers)) throw new ModelError(`${source}: model "${modelName(model)}" has no layer list`);
  const list = layers.map((l, i) => {
    const obj = asObject(l);
    if (!obj || typeof obj.class_name !== 'string') throw new ModelError(`${source}: layer #${i} of "${modelName(model)}" is malformed`);
    return obj;
  });
  if (model.class_name === 'Sequential') return list;
  return chainOrder(model, list, source);
}

/** Walks a Functional graph back from its single output and checks it is a simple chain. */
function chainOrder(model: Json, layers: Json[], source: string): Json[] {
  const byName = new Map(layers.map((l) => [layerName(l), l]));
  const config = asObject(model.config) ?? {};
  const outputs = historyNames(config.output_layers);
  const inputs = historyNames(config.input_layers);
  if (outputs.length !== 1 || inputs.length !== 1) {
    throw new ModelError(`${source}: model "${modelName(model)}" has ${inputs.length} inputs and ${outputs.length} outputs; only single-input, single-output chains are supported`);
  }
  const chain: Json[] = [];
  let current: string | undefined = outputs[0];
  const seen = new Set<string>();
  while (current !== undefined) {
    const layer = byName.get(current);
    if (!layer || seen.has(current)) throw new ModelError(`${source}: model "${modelName(model)}" refers to unknown layer "${current}"`);
    seen.add(current);
    chain.push(layer);
    const inbound = [...new Set(historyNames(layer.inbound_nodes))];
    if (inbound.length > 1) {
      throw new ModelError(`${source}: layer "${current}" has ${inbound.length} inputs (${inbound.join(', ')}); only sequential chains are supported`);
    }
    current = inbound[0];
  }
  if (chain.length !== layers.length) {
    const unused = layers.map(layerName).filter((n) => !seen.has(n));
    throw new ModelError(`${source}: model "${modelName(model)}" is not a single chain; layers off the input→output path: ${unused.join(', ')}`);
  }
  return chain.reverse();
}

/**
 * Layer names referenced by Keras node data in either format: Keras 2 `[["name", 0, 0, {}], ...]`
 * (possibly nested one level per node) or Keras 3 `{"args": [{"config": {"keras_history":
 * ["name", 0, 0]}}]}`.
 */
function historyNames(value: unknown): string[] {
  const names: string[] = [];
  const visit = (v: unknown): void => {
    if (Array.isArray(v)) {
      if (typeof v[0] === 'string' && typeof v[1] === 'number') {
        names.push(v[0]);
        return;
      }
      v.forEach(visit);
      return;
    }
    const obj = asObject(v);
    if (!obj) return;
    if (Array.isArray(obj.keras_history)) {
      visit(obj.keras_history);
      return;
    }
    Object.values(obj).forEach(visit);
  };
  visit(value);
  return names;
}

function appendLayer(layer: Json, state: ParseState): void {
  const className = layer.class_name as string;
  const config = asObject(layer.config) ?? {};
  const name = layerName(layer);
  const where = `${state.source}: layer "${name}" (${className})`;
  const declared = config.batch_input_shape ?? config.batch_shape;
  if (declared !== undefined && state.inputShape === null && state.layers.length === 0) {
    state.inputShape = parseInputShape(declared, where);
  }
  if (MODEL_CLASSES.has(className)) {
    appendModel(layer, state);
    return;
  }
  requireChannelsLast(config, where);
  switch (className) {
    case 'InputLayer':
      if (declared === undefined) throw new ModelError(`${where} has no batch_input_shape`);
      return;
    case 'Conv2D': {
      const dilation = pair(config.dilation_rate ?? 1, `${where} dilation_rate`);
      if (dilation[0] !== 1 || dilation[1] !== 1) throw new ModelError(`${where}: dilation_rate ${dilation.join('x')} is not supported`);
      if ((config.groups ?? 1) !== 1) throw new ModelError(`${where}: grouped convolution is not supported`);
      state.layers.push({
        type: 'conv2d',
        name,
        filters: positiveInt(config.filters, `${where} filters`),
        kernelSize: pair(config.kernel_size, `${where} kernel_size`),
        strides: pair(config.strides ?? 1, `${where} strides`),
        padding: padding(config.padding, where),
        activation: activation(config.activation, where),
        useBias: config.use_bias !== false,
      });
      return;
    }
    case 'MaxPooling2D': {
      const poolSize = pair(config.pool_size ?? 2, `${where} pool_size`);
      state.layers.push({
        type: 'maxpool2d',
        name,
        poolSize,
        // Keras: strides=None means strides = pool_size.
        strides: config.strides == null ? poolSize : pair(config.strides, `${where} strides`),
        padding: padding(config.padding, where),
      });
      return;
    }
    case 'Flatten':
      state.layers.push({ type: 'flatten', name });
      return;
    case 'GlobalAveragePooling2D':
      if (config.keepdims === true) throw new ModelError(`${where}: keepdims=true is not supported`);
      state.layers.push({ type: 'gap', name });
      return;
    case 'Dense':
      state.layers.push({
        type: 'dense',
        name,
        units: positiveInt(config.units, `${where} units`),
        activation: activation(config.activation, where),
        useBias: config.use_bias !== false,
      });
      return;
    case 'Dropout':
      state.layers.push({ type: 'dropout', name, rate: typeof config.rate === 'number' ? config.rate : 0 });
      return;
    case 'Activation':
      state.layers.push({ type: 'activation', name, activation: activation(config.activation, where) });
      return;
    default:
      throw new ModelError(
        `${state.source}: layer "${name}" has class ${className}, which is not supported (supported: ${SUPPORTED_KERAS_LAYERS.join(', ')})`,
      );
  }
}

export function parseInputShape(value: unknown, where: string): [number, number, number] {
  if (!Array.isArray(value) || value.length !== 4) {
    throw new ModelError(`${where}: input shape ${JSON.stringify(value)} is not (batch, height, width, channels)`);
  }
  const [, h, w, c] = value as unknown[];
  if (![h, w, c].every((d) => typeof d === 'number' && Number.isInteger(d) && d > 0)) {
    throw new ModelError(`${where}: input shape ${JSON.stringify(value)} must have a fixed height, width and channel count`);
  }
  return [h as number, w as number, c as number];
}

export function requireChannelsLast(config: Json, where: string): void {
  const format = config.data_format;
  if (format !== undefined && format !== null && format !== 'channels_last') {
    throw new ModelError(`${where}: data_format "${String(format)}" is not supported; only channels_last`);
  }
}

function activation(value: unknown, where: string): Activation {
  // Keras 3 may serialise activations as {"class_name": "function", "config": "relu", ...}.
  const name = typeof value === 'string' ? value : value == null ? 'linear' : asObject(value)?.config;
  if (typeof name === 'string' && (ACTIVATIONS as readonly string[]).includes(name)) return name as Activation;
  throw new ModelError(`${where}: activation ${JSON.stringify(value)} is not supported (supported: ${ACTIVATIONS.join(', ')})`);
}

export function padding(value: unknown, where: string): Padding {
  if (value === undefined || value === 'valid') return 'valid';
  if (value === 'same') return 'same';
  throw new ModelError(`${where}: padding ${JSON.stringify(value)} is not supported (same, valid)`);
}

export function pair(value: unknown, what: string): [number, number] {
  const list = typeof value === 'number' ? [value, value] : value;
  if (!Array.isArray(list) || list.length !== 2 || !list.every((v) => Number.isInteger(v) && (v as number) > 0)) {
    throw new ModelError(`${what} ${JSON.stringify(value)} is not a pair of positive integers`);
  }
  return [list[0] as number, list[1] as number];
}

export function positiveInt(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
    throw new ModelError(`${what} ${JSON.stringify(value)} is not a positive integer`);
  }
  return value;
}

export function layerName(layer: Json): string {
  const config = asObject(layer.config);
  const name = config?.name ?? layer.name;
  return typeof name === 'string' ? name : '(unnamed)';
}

function modelName(model: Json): string {
  return layerName(model);
}

export function asObject(value: unknown): Json | null {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : null;
}
