/**
 * Keras HDF5 files → `ModelSpec` (sequential chains) or graph (`readKerasModel`: any topology,
 * or a `keras.applications` layout by name for weights-only files), read in Node with h5wasm.
 *
 * The file is followed the way Keras' `load_weights` follows it: the `layer_names` attribute
 * (on the root, or on `model_weights/` in full-model files) lists the layers in order, and each
 * layer group's `weight_names` attribute lists its datasets in order (kernel, then bias). Dataset
 * names differ between Keras versions (`block1_conv1_W_1:0`, `block1_conv1/kernel:0`); following
 * `weight_names` rather than guessing names handles both.
 *
 * Memory: h5wasm's Node build reads the host file system directly (Emscripten NODERAWFS), so the
 * file is never copied into memory or a virtual FS. Datasets are read in row slices through one
 * reused wasm buffer straight into their Float32Array, so the wasm heap (which never shrinks) stays
 * near 20 MB instead of growing to the size of fc1's kernel (411 MB). Measured on VGG16: 4.4 s,
 * peak RSS 1.2 GB for 553 MB of weights (docs/model-loading.md).
 */
import { open } from 'node:fs/promises';
import type H5wasm from 'h5wasm/node';
import type { Dataset, Group, File as H5File } from 'h5wasm/node';
import { ModelError, NotFoundError } from '../../shared/errors.js';
import type { Architecture, LayerShapeInfo, LayerWeights } from './architecture.js';
import { buildModelSpec, describeLayers, product, sameShape } from './architecture.js';
import type { ModelInput } from './graph/from-sequential.js';
import { graphFromKeras, kerasWeightLookup, type KerasWeightLookup } from './graph/from-keras.js';
import type { KerasTopology } from './keras-config.js';
import { parseKerasTopology } from './keras-config.js';
import type { KerasArchitecture } from '../../shared/model-options.js';
import { applicationTopology, positionalLayerAliases } from './applications/index.js';
import type { ModelSpec } from './spec.js';
import { vgg16Architecture } from './vgg16.js';

export interface ReadKerasHdf5Options {
  /**
   * Architecture the weights belong to. Default: the file's own `model_config` for full-model
   * files, else VGG16 (weights-only files carry no architecture).
   */
  architecture?: Architecture;
  /** Provenance recorded in the spec. Default: the path. */
  source?: string;
  /** Largest slice read from a dataset at once, in bytes. Default 16 MiB. */
  sliceBytes?: number;
}

const HDF5_SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);
const DEFAULT_SLICE_BYTES = 16 * 1024 * 1024;
const H5T_FLOAT = 1;

interface H5wasmRuntime {
  lib: typeof H5wasm;
  module: Awaited<(typeof H5wasm)['ready']>;
}
let h5wasmPromise: Promise<H5wasmRuntime> | null = null;

/** h5wasm loads a 3 MB wasm module; do it once, on first use. */
async function loadH5wasm(): Promise<H5wasmRuntime> {
  h5wasmPromise ??= (async () => {
    const { default: lib } = await import('h5wasm/node');
    return { lib, module: await lib.ready };
  })();
  return h5wasmPromise;
}

interface FileLayer {
  name: string;
  group: Group;
  datasets: Array<{ name: string; dataset: Dataset; shape: number[] }>;
}

/** What a weights file holds, matched against the architecture, without reading any weight data. */
export interface Hdf5Inspection {
  architecture: Architecture;
  /** Whether weights sit under `model_weights/` (a `model.save()` file). */
  fullModel: boolean;
  layers: Array<{ name: string; fileLayer: string; datasets: Array<{ name: string; shape: number[] }>; params: number }>;
  params: number;
}

/**
 * Check a weights file against the architecture (names, counts, shapes) from its metadata only:
 * milliseconds even for VGG16's 553 MB. Throws the same `ModelError`s as `readKerasHdf5`.
 */
export async function inspectKerasHdf5(path: string, options: Pick<ReadKerasHdf5Options, 'architecture'> = {}): Promise<Hdf5Inspection> {
  return withHdf5File(path, (_runtime, opened) => {
    const { architecture, fullModel, plan } = planRead(opened, path, options.architecture);
    const layers = plan.map(({ info, fileLayer }) => ({
      name: info.name,
      fileLayer: fileLayer.name,
      datasets: fileLayer.datasets.map((d) => ({ name: d.name, shape: d.shape })),
      params: info.params,
    }));
    return { architecture, fullModel, layers, params: layers.reduce((n, l) => n + l.params, 0) };
  });
}

/** Read a Keras HDF5 weights file (or full-model file) of a sequential model from a local path. */
export async function readKerasHdf5(path: string, options: ReadKerasHdf5Options = {}): Promise<ModelSpec> {
  return withHdf5File(path, (runtime, opened) => {
    const topology = topologyOf(opened, path, options.architecture);
    if (topology.kind !== 'sequential') throw new ModelError(`${path}: model "${topology.name}" is not a sequential chain; load it with readKerasModel`);
    return readSequential(runtime, opened, path, topology.architecture, options);
  });
}

export interface ReadKerasModelOptions extends Omit<ReadKerasHdf5Options, 'architecture'> {
  /**
   * The topology of a weights-only file (which carries none): a sequential `Architecture` or a
   * Keras model config (`keras.applications` layouts, see `applications/`). Default: the file's
   * own `model_config` for full-model files, else VGG16.
   */
  topology?: KerasTopology;
  /**
   * A `keras.applications` layout by name for a weights-only file, its class count taken from the
   * file's `predictions` layer. Ignored for full-model files, which carry their own topology.
   */
  architecture?: KerasArchitecture;
  /** `[height, width]` of the `architecture` layout. Default 224x224. */
  inputSize?: [number, number];
}

/**
 * Read any Keras HDF5 model: a sequential spec for chains of the sequential layer set (VGG-shaped
 * nets keep their exact path), a graph for everything else (`graph/from-keras.ts`). Weights of
 * graph models are read layer by layer as the converter asks for them, after every layer class
 * has been checked.
 */
export async function readKerasModel(path: string, options: ReadKerasModelOptions = {}): Promise<ModelInput> {
  return withHdf5File(path, (runtime, opened) => {
    const { root, fullModel } = weightsRoot(opened, path);
    const named = options.architecture && !fullModel ? applicationTopology(options.architecture, { classes: predictionsClasses(root, path), inputShape: options.inputSize && [...options.inputSize, 3] }) : undefined;
    const topology = options.topology ?? named ?? topologyOf(opened, path, undefined);
    if (topology.kind === 'sequential') return readSequential(runtime, opened, path, topology.architecture, options);
    const sliceBytes = options.sliceBytes ?? DEFAULT_SLICE_BYTES;
    const entries = hdf5Call(path, 'read the layer list', () => listWeightedLayers(root, path)).flatMap((layer) =>
      layer.datasets.map((d) => ({
        path: d.name,
        group: layer.name,
        shape: d.shape,
        read: () => hdf5Call(path, `read ${layer.name}/${d.name}`, () => readFloat32(runtime, d.dataset, d.shape, sliceBytes, `${path}: layer "${layer.name}"`)),
      })),
    );
    const byName = kerasWeightLookup(entries);
    // A named layout may call a layer what the file calls by another session-numbered name.
    const aliases = named && topology === named ? positionalLayerAliases(named.model, stringList(root, 'layer_names', path)) : new Map<string, string>();
    const lookup: KerasWeightLookup = (layer) => byName(layer) ?? (aliases.has(layer) ? byName(aliases.get(layer)!) : undefined);
    return graphFromKeras(topology.model, lookup, { source: options.source ?? path, kerasVersion: stringAttr(opened, 'keras_version') ?? stringAttr(root, 'keras_version') });
  });
}

/** Units of the file's `predictions` layer (keras.applications' classifier), or undefined when it has none. */
function predictionsClasses(root: Group, path: string): number | undefined {
  const layer = hdf5Call(path, 'read the layer list', () => listWeightedLayers(root, path)).find((l) => l.name === 'predictions');
  return layer?.datasets.find((d) => d.shape.length === 2)?.shape[1];
}

function readSequential(runtime: H5wasmRuntime, opened: H5File, path: string, architecture: Architecture, options: Pick<ReadKerasHdf5Options, 'sliceBytes' | 'source'>): ModelSpec {
  const { plan } = planRead(opened, path, architecture);
  const weights = new Map<string, LayerWeights>();
  for (const { info, fileLayer } of plan) {
    const arrays = fileLayer.datasets.map((d) =>
      hdf5Call(path, `read ${fileLayer.name}/${d.name}`, () => readFloat32(runtime, d.dataset, d.shape, options.sliceBytes ?? DEFAULT_SLICE_BYTES, `${path}: layer "${info.name}"`)),
    );
    weights.set(info.name, { arrays, shapes: fileLayer.datasets.map((d) => d.shape) });
  }
  return buildModelSpec(architecture, weights, { source: options.source ?? path });
}

/** Open the file with HDF5 errors turned into exceptions, run `fn`, always close and restore. */
async function withHdf5File<T>(path: string, fn: (runtime: H5wasmRuntime, file: H5File) => T): Promise<T> {
  await checkSignature(path);
  const runtime = await loadH5wasm();
  // Make HDF5 throw its error stack instead of printing it to stderr; restored afterwards. The
  // handler is process-wide, but everything between here and `finally` is synchronous, so
  // concurrent loads cannot interleave with it.
  runtime.module.activate_throwing_error_handler();
  let file: H5File | null = null;
  try {
    file = hdf5Call(path, 'open the file', () => new runtime.lib.File(path, 'r'));
    if (file.file_id < 0n) throw new ModelError(`${path}: HDF5 could not open the file (corrupt or truncated?)`);
    return fn(runtime, file);
  } finally {
    try {
      file?.close();
    } finally {
      runtime.module.deactivate_throwing_error_handler();
    }
  }
}

function weightsRoot(file: H5File, path: string): { fullModel: boolean; root: Group } {
  const fullModel = hdf5Call(path, 'list the root group', () => file.keys()).includes('model_weights');
  return { fullModel, root: fullModel ? (file.get('model_weights') as Group) : file };
}

/** The given architecture, else the file's own `model_config` (full-model files), else VGG16. */
function topologyOf(file: H5File, path: string, given: Architecture | undefined): KerasTopology {
  if (given) return { kind: 'sequential', architecture: given };
  const config = weightsRoot(file, path).fullModel ? modelConfigOf(file, path) : null;
  return config ? parseKerasTopology(config, path) : { kind: 'sequential', architecture: vgg16Architecture() };
}

function planRead(file: H5File, path: string, given: Architecture | undefined): { architecture: Architecture; fullModel: boolean; plan: ReturnType<typeof matchLayers> } {
  const { fullModel, root } = weightsRoot(file, path);
  const topology = topologyOf(file, path, given);
  if (topology.kind !== 'sequential') throw new ModelError(`${path}: model "${topology.name}" is not a sequential chain; its weights are matched layer by layer when it is loaded`);
  const fileLayers = hdf5Call(path, 'read the layer list', () => listWeightedLayers(root, path));
  return { architecture: topology.architecture, fullModel, plan: matchLayers(topology.architecture, fileLayers, path) };
}

/** Cheap checks before HDF5 sees the file, so the common failures get plain messages. */
async function checkSignature(path: string): Promise<void> {
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`weights file not found: ${path}`, { cause: err });
    throw new ModelError(`cannot read weights file ${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    if (bytesRead === 0) throw new ModelError(`${path} is empty (0 bytes); expected a Keras HDF5 weights file`);
    // The signature may also sit at 512, 1024, ... when a user block precedes it; h5py never writes one for Keras.
    if (bytesRead < 8 || !head.equals(HDF5_SIGNATURE)) throw new ModelError(`${path} is not an HDF5 file (no HDF5 signature at the start)`);
  } finally {
    await handle.close();
  }
}

/**
 * Run an h5wasm call and turn HDF5's thrown error stack into one readable line: the innermost
 * message, e.g. "truncated file: eof = 4326, ..., stored_eof = 6180".
 */
function hdf5Call<T>(path: string, what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof ModelError || err instanceof NotFoundError) throw err;
    const text = err instanceof Error ? err.message : String(err);
    const lines = text.split('\n').filter((l) => /#\d+:/.test(l));
    const innermost = lines.length > 0 ? lines[lines.length - 1]!.replace(/^.*\(\): /, '') : text.split('\n')[0]!;
    const hint = /truncated|eof/i.test(innermost) ? ' (the file is truncated: download it again)' : '';
    throw new ModelError(`${path}: cannot ${what}: ${innermost.trim()}${hint}`, { cause: err });
  }
}

/** The parsed `model_config` attribute (JSON), or null when the file has none. */
function modelConfigOf(file: Group, path: string): unknown {
  if (!file.attrs['model_config']) return null;
  const text = stringAttr(file, 'model_config');
  if (text === undefined) throw new ModelError(`${path}: attribute model_config is not a JSON string`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelError(`${path}: attribute model_config is not valid JSON`, { cause: err });
  }
}

/** A scalar string attribute (h5py writes fixed- or variable-length strings, or bytes). */
function stringAttr(group: Group, name: string): string | undefined {
  const value = group.attrs[name]?.value;
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value).toString('utf8');
  if (Array.isArray(value) && typeof value[0] === 'string') return value[0];
  return undefined;
}

function stringList(group: Group, attribute: string, where: string): string[] {
  const attr = group.attrs[attribute];
  if (!attr) throw new ModelError(`${where}: attribute "${attribute}" is missing; this is not a Keras weights file`);
  const value = attr.value;
  const list = value === null ? [] : Array.isArray(value) ? value : [value];
  return list.map((v) => {
    if (typeof v === 'string') return v;
    if (v instanceof Uint8Array) return Buffer.from(v).toString('utf8');
    throw new ModelError(`${where}: attribute "${attribute}" holds ${typeof v}, expected strings`);
  });
}

/** The file's layers that carry weights, in `layer_names` order, with dataset shapes. */
function listWeightedLayers(root: Group, path: string): FileLayer[] {
  // Keras 3 `.weights.h5` files store `layers/<name>/vars/0` with no layer_names attribute.
  if (!root.attrs['layer_names'] && root.keys().includes('layers') && root.keys().includes('vars')) {
    throw new ModelError(`${path}: this is a Keras 3 .weights.h5 file, which is not supported; save with Keras 2 / tf.keras (save_weights('x.h5')) or convert to TF.js Layers`);
  }
  const layers: FileLayer[] = [];
  for (const name of stringList(root, 'layer_names', path)) {
    const group = root.get(name);
    if (!group || !('keys' in group)) throw new ModelError(`${path}: layer "${name}" is listed in layer_names but its group is missing`);
    const weightNames = stringList(group as Group, 'weight_names', `${path}: layer "${name}"`);
    if (weightNames.length === 0) continue;
    const datasets = weightNames.map((weightName) => {
      const entity = (group as Group).get(weightName);
      if (!entity || !('shape' in entity)) {
        throw new ModelError(`${path}: layer "${name}": dataset "${weightName}" named in weight_names is missing`);
      }
      const dataset = entity as Dataset;
      return { name: weightName, dataset, shape: dataset.shape ?? [] };
    });
    layers.push({ name, group: group as Group, datasets });
  }
  return layers;
}

/**
 * Pair architecture layers with file layers: by name when every weighted layer of the
 * architecture is in the file (the usual case, and robust to extra layers), else by position, as
 * Keras' `load_weights(by_name=False)` does. Shapes are checked here, before any data is read, so
 * a mismatch in a 553 MB file fails in milliseconds and names the layer.
 */
function matchLayers(arch: Architecture, fileLayers: FileLayer[], path: string): Array<{ info: LayerShapeInfo; fileLayer: FileLayer }> {
  const weighted = describeLayers(arch).filter((l) => l.weightShapes.length > 0);
  const byName = new Map(fileLayers.map((l) => [l.name, l]));
  const allNamed = weighted.every((l) => byName.has(l.name));
  if (!allNamed && weighted.length !== fileLayers.length) {
    const missing = weighted.find((l) => !byName.has(l.name))!;
    throw new ModelError(
      `${path}: no weights for layer "${missing.name}" of ${arch.name}; the file has ${fileLayers.length} weighted layers (${fileLayers.map((l) => l.name).join(', ')}) where ${arch.name} needs ${weighted.length}`,
    );
  }
  return weighted.map((info, i) => {
    const fileLayer = allNamed ? byName.get(info.name)! : fileLayers[i]!;
    const label = fileLayer.name === info.name ? `layer "${info.name}"` : `layer "${info.name}" (file layer "${fileLayer.name}")`;
    if (fileLayer.datasets.length !== info.weightShapes.length) {
      throw new ModelError(`${path}: ${label} has ${fileLayer.datasets.length} weight arrays in the file, expected ${info.weightShapes.length} (kernel${info.weightShapes.length > 1 ? ', bias' : ''})`);
    }
    fileLayer.datasets.forEach((d, j) => {
      const expected = info.weightShapes[j]!;
      if (!sameShape(d.shape, expected)) {
        throw new ModelError(`${path}: ${label}: ${d.name} has shape [${d.shape.join(', ')}] but ${arch.name} needs [${expected.join(', ')}]`);
      }
    });
    return { info, fileLayer };
  });
}

/**
 * A float dataset as float32, read in slices along its first axis straight from one reused wasm
 * buffer into the output (h5wasm's own `slice()` allocates two JS copies per call, which left
 * ~700 MB of garbage behind on VGG16).
 */
function readFloat32(runtime: H5wasmRuntime, dataset: Dataset, shape: number[], sliceBytes: number, where: string): Float32Array {
  const meta = dataset.metadata;
  if (meta.type !== H5T_FLOAT || (meta.size !== 4 && meta.size !== 8) || !meta.littleEndian) {
    throw new ModelError(`${where}: dataset ${dataset.path} has dtype ${JSON.stringify(dataset.dtype)}; expected little-endian float32 or float64`);
  }
  const total = product(shape);
  const out = new Float32Array(total);
  if (total === 0) return out;
  if (shape.length === 0) {
    out[0] = Number(dataset.value);
    return out;
  }
  const rows = shape[0]!;
  const rowValues = total / rows;
  const rowsPerSlice = Math.max(1, Math.min(rows, Math.floor(sliceBytes / (rowValues * meta.size))));
  const module = runtime.module;
  const pointer = module._malloc(rowsPerSlice * rowValues * meta.size);
  if (pointer === 0) throw new ModelError(`${where}: out of wasm memory reading ${dataset.path}`);
  try {
    for (let start = 0; start < rows; start += rowsPerSlice) {
      const count = Math.min(rowsPerSlice, rows - start);
      const status = module.get_dataset_data(
        dataset.file_id,
        dataset.path,
        [BigInt(count), ...shape.slice(1).map(BigInt)],
        [BigInt(start), ...shape.slice(1).map(() => 0n)],
        shape.map(() => 1n),
        BigInt(pointer),
      );
      if (status < 0) throw new ModelError(`${where}: HDF5 failed to read rows ${start}..${start + count} of ${dataset.path}`);
      // Read HEAPU8.buffer after the call: the wasm memory may have grown and been replaced.
      const values = count * rowValues;
      const view = meta.size === 4 ? new Float32Array(module.HEAPU8.buffer, pointer, values) : new Float64Array(module.HEAPU8.buffer, pointer, values);
      out.set(view, start * rowValues);
    }
  } finally {
    module._free(pointer);
  }
  return out;
}
