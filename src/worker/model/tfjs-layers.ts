/**
 * TF.js Layers model (model.json + binary shards, as `tensorflowjs_converter` or `model.save`
 * write them) → `ModelSpec`, without a TF.js backend: the topology is Keras JSON and the shards
 * are little-endian weight bytes concatenated in manifest order, so plain parsing suffices and
 * loading does not depend on which backend the engine later picks.
 */
import { ModelError } from '../../shared/errors.js';
import type { Architecture, LayerShapeInfo, LayerWeights } from './architecture.js';
import { buildModelSpec, describeLayers, product, sameShape } from './architecture.js';
import type { ModelInput } from './graph/from-sequential.js';
import { graphFromKeras, kerasWeightLookup } from './graph/from-keras.js';
import { parseKerasModelConfig, parseKerasTopology } from './keras-config.js';
import type { ModelSpec } from './spec.js';

/** Reads one shard, given its path exactly as written in the manifest (relative to model.json). */
export type ShardReader = (relativePath: string) => Promise<Uint8Array>;

export interface ReadTfjsLayersOptions {
  /** Provenance recorded in the spec (model.json's path or URL). */
  source: string;
  /** Override the topology in model.json (rarely needed). */
  architecture?: Architecture;
}

interface ManifestWeight {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}

interface ManifestGroup {
  paths: string[];
  weights: ManifestWeight[];
}

/** A decoded weight, in manifest order. */
interface DecodedWeight {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** Bytes per stored element for each accepted storage dtype. */
const STORAGE_BYTES: Record<string, number> = { float32: 4, uint8: 1, uint16: 2, float16: 2 };

export async function readTfjsLayersModel(modelJson: string | object, readShard: ShardReader, options: ReadTfjsLayersOptions): Promise<ModelSpec> {
  const { json, source } = parseModelJson(modelJson, options.source);
  const architecture = options.architecture ?? parseKerasModelConfig(json.modelTopology, source);
  return buildModelSpec(architecture, assignWeights(architecture, await decodeAll(json, readShard, source), source), { source });
}

/**
 * Any TF.js Layers model: a sequential spec for chains of the sequential layer set, a graph for
 * every other topology (`graph/from-keras.ts`), weights matched by layer and variable name.
 */
export async function readTfjsModel(modelJson: string | object, readShard: ShardReader, options: Omit<ReadTfjsLayersOptions, 'architecture'>): Promise<ModelInput> {
  const { json, source } = parseModelJson(modelJson, options.source);
  const topology = parseKerasTopology(json.modelTopology, source);
  if (topology.kind === 'sequential') return readTfjsLayersModel(json, readShard, options);
  const decoded = await decodeAll(json, readShard, source);
  const lookup = kerasWeightLookup(decoded.map((w) => ({ path: w.name, group: '', shape: w.shape, read: () => w.values })));
  const kerasVersion = (json.modelTopology as { keras_version?: unknown }).keras_version;
  return graphFromKeras(json.modelTopology, lookup, { source, kerasVersion: typeof kerasVersion === 'string' ? kerasVersion : undefined });
}

function parseModelJson(modelJson: string | object, source: string): { json: Record<string, unknown>; source: string } {
  const json = typeof modelJson === 'string' ? parseJson(modelJson, source) : (modelJson as Record<string, unknown>);
  if (json.format !== undefined && json.format !== 'layers-model') {
    throw new ModelError(`${source}: format "${String(json.format)}" is not a TF.js Layers model (graph models have no layer topology; convert with --output_format=tfjs_layers_model)`);
  }
  if (!json.modelTopology) throw new ModelError(`${source}: model.json has no modelTopology`);
  return { json, source };
}

async function decodeAll(json: Record<string, unknown>, readShard: ShardReader, source: string): Promise<DecodedWeight[]> {
  const decoded: DecodedWeight[] = [];
  for (const group of parseManifest(json.weightsManifest, source)) decoded.push(...(await decodeGroup(group, readShard, source)));
  return decoded;
}

function parseJson(text: string, source: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text);
    if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error('not a JSON object');
    return value as Record<string, unknown>;
  } catch (err) {
    throw new ModelError(`${source}: model.json is not valid JSON (${(err as Error).message}); truncated download?`, { cause: err });
  }
}

function parseManifest(value: unknown, source: string): ManifestGroup[] {
  if (!Array.isArray(value)) throw new ModelError(`${source}: model.json has no weightsManifest array`);
  return value.map((group, g) => {
    const paths = (group as ManifestGroup | null)?.paths;
    const weights = (group as ManifestGroup | null)?.weights;
    if (!Array.isArray(paths) || !Array.isArray(weights) || !paths.every((p) => typeof p === 'string')) {
      throw new ModelError(`${source}: weightsManifest[${g}] needs "paths" and "weights" arrays`);
    }
    for (const w of weights) {
      if (typeof w?.name !== 'string' || !Array.isArray(w.shape) || !w.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new ModelError(`${source}: weightsManifest[${g}] has a malformed entry ${JSON.stringify(w)}`);
      }
    }
    return { paths, weights };
  });
}

function storageDtype(weight: ManifestWeight, source: string): string {
  const storage = weight.quantization?.dtype ?? weight.dtype;
  if (weight.dtype !== 'float32') throw new ModelError(`${source}: weight "${weight.name}" has dtype ${weight.dtype}; only float32 weights are supported`);
  if (!(storage in STORAGE_BYTES)) throw new ModelError(`${source}: weight "${weight.name}" is quantised as ${storage}; supported: uint8, uint16, float16`);
  return storage;
}

/**
 * Decode one weight group. Its shards form one byte stream; each weight is copied out of it
 * (spanning shard boundaries where needed) without concatenating the shards first, so a full
 * VGG16 does not need a second 553 MB buffer.
 */
async function decodeGroup(group: ManifestGroup, readShard: ShardReader, source: string): Promise<DecodedWeight[]> {
  const shards: Uint8Array[] = [];
  for (const path of group.paths) shards.push(await readShard(path));
  const available = shards.reduce((n, s) => n + s.byteLength, 0);
  const needed = group.weights.reduce((n, w) => n + product(w.shape) * STORAGE_BYTES[storageDtype(w, source)]!, 0);
  if (available !== needed) {
    // Name the first weight that does not fit: that is the layer whose data is missing.
    let offset = 0;
    const cut = group.weights.find((w) => (offset += product(w.shape) * STORAGE_BYTES[storageDtype(w, source)]!) > available);
    const what = cut ? `weight "${cut.name}" extends past the end of the data` : 'the shards hold more bytes than the manifest describes';
    throw new ModelError(`${source}: shards ${group.paths.join(', ')} hold ${available} bytes but the manifest needs ${needed}: ${what} (truncated or mismatched shard?)`);
  }
  const reader = new ShardStream(shards);
  return group.weights.map((w) => {
    const storage = storageDtype(w, source);
    const count = product(w.shape);
    const raw = reader.take(count * STORAGE_BYTES[storage]!);
    return { name: w.name, shape: w.shape, values: dequantize(raw, storage, w, source) };
  });
}

/** Sequential reader over a list of byte arrays. */
class ShardStream {
  private shard = 0;
  private offset = 0;
  constructor(private readonly shards: Uint8Array[]) {}

  /** Copies the next `length` bytes into a fresh, 4-byte-aligned buffer. */
  take(length: number): Uint8Array {
    const out = new Uint8Array(new ArrayBuffer(Math.ceil(length / 4) * 4), 0, length);
    let written = 0;
    while (written < length) {
      const current = this.shards[this.shard]!;
      const n = Math.min(length - written, current.byteLength - this.offset);
      out.set(current.subarray(this.offset, this.offset + n), written);
      written += n;
      this.offset += n;
      if (this.offset === current.byteLength) {
        this.shard++;
        this.offset = 0;
      }
    }
    return out;
  }
}

function dequantize(raw: Uint8Array, storage: string, weight: ManifestWeight, source: string): Float32Array {
  const count = product(weight.shape);
  if (storage === 'float32') return new Float32Array(raw.buffer, 0, count);
  if (storage === 'float16') {
    const halves = new Uint16Array(raw.buffer, 0, count);
    return Float32Array.from(halves, halfToFloat);
  }
  const { scale, min } = weight.quantization ?? {};
  if (typeof scale !== 'number' || typeof min !== 'number') {
    throw new ModelError(`${source}: weight "${weight.name}" is quantised as ${storage} but has no scale/min`);
  }
  const q = storage === 'uint8' ? raw.subarray(0, count) : new Uint16Array(raw.buffer, 0, count);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) out[i] = q[i]! * scale + min;
  return out;
}

/** IEEE 754 half → float. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa === 0 ? sign * Infinity : Number.NaN;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

/**
 * Find each layer's weights by name (`fc1/kernel`, also with a nested-model prefix such as
 * `vgg16/fc1/kernel`); if names do not line up but the count does, fall back to manifest order,
 * as Keras does for unnamed weights. Shapes are checked either way.
 */
function assignWeights(arch: Architecture, decoded: DecodedWeight[], source: string): Map<string, LayerWeights> {
  const weighted = describeLayers(arch).filter((l) => l.weightShapes.length > 0);
  const byName = (layer: string, suffix: string): DecodedWeight | undefined =>
    decoded.find((w) => stripIndex(w.name) === `${layer}/${suffix}` || stripIndex(w.name).endsWith(`/${layer}/${suffix}`));
  const named = weighted.map((info) => {
    const kernel = byName(info.name, 'kernel');
    const bias = info.weightShapes.length > 1 ? byName(info.name, 'bias') : undefined;
    return kernel && (info.weightShapes.length === 1 || bias) ? [kernel, ...(bias ? [bias] : [])] : null;
  });
  const expectedCount = weighted.reduce((n, l) => n + l.weightShapes.length, 0);
  const useOrder = named.some((n) => n === null);
  if (useOrder && decoded.length !== expectedCount) {
    const missing = weighted[named.findIndex((n) => n === null)]!;
    throw new ModelError(`${source}: no weights named "${missing.name}/kernel" for layer "${missing.name}", and the manifest has ${decoded.length} weights where ${arch.name} needs ${expectedCount}`);
  }
  const map = new Map<string, LayerWeights>();
  let next = 0;
  weighted.forEach((info, i) => {
    const found = useOrder ? decoded.slice(next, next + info.weightShapes.length) : named[i]!;
    next += info.weightShapes.length;
    checkShapes(info, found, source);
    map.set(info.name, { arrays: found.map((w) => w.values), shapes: found.map((w) => w.shape) });
  });
  return map;
}

function checkShapes(info: LayerShapeInfo, found: DecodedWeight[], source: string): void {
  info.weightShapes.forEach((shape, j) => {
    const weight = found[j]!;
    if (!sameShape(weight.shape, shape)) {
      throw new ModelError(`${source}: layer "${info.name}": weight "${weight.name}" has shape [${weight.shape.join(', ')}] but the topology needs [${shape.join(', ')}]`);
    }
  });
}

/** Keras variable names sometimes keep the TF output index (`kernel:0`). */
function stripIndex(name: string): string {
  return name.replace(/:\d+$/, '');
}
