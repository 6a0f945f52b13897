/**
 * Write a ModelSpec as a Keras HDF5 weights file with h5wasm, in either dataset naming style
 * found in the wild:
 * - `legacy`: `block1_conv1/block1_conv1_W_1:0` (the VGG16 file Keras downloads),
 * - `modern`: `block1_conv1/block1_conv1/kernel:0` (tf.keras 2.x `save_weights`).
 * `fullModel` nests the weights under `model_weights/` and stores `model_config`, as
 * `model.save('x.h5')` does. Strings are fixed-length ASCII, as h5py writes them for Keras.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import h5wasm from 'h5wasm/node';
import type { Group } from 'h5wasm/node';
import { architectureOf } from '../../src/worker/model/architecture.js';
import type { ModelSpec } from '../../src/worker/model/spec.js';
import { kerasModelConfig } from './keras-json.js';

export type Hdf5NamingStyle = 'legacy' | 'modern';

export interface WriteKerasHdf5Options {
  style: Hdf5NamingStyle;
  /** Full-model file (`model_weights/` + `model_config`). Default false. */
  fullModel?: boolean;
}

export async function writeKerasHdf5(path: string, spec: ModelSpec, options: WriteKerasHdf5Options): Promise<void> {
  await h5wasm.ready;
  await mkdir(dirname(path), { recursive: true });
  const file = new h5wasm.File(path, 'w');
  if (file.file_id < 0n) throw new Error(`h5wasm could not create ${path}`);
  try {
    let root: Group = file;
    if (options.fullModel) {
      stringAttribute(file, 'model_config', [JSON.stringify(kerasModelConfig(architectureOf(spec)))], true);
      root = file.create_group('model_weights');
    }
    stringAttribute(root, 'backend', ['tensorflow'], true);
    stringAttribute(root, 'keras_version', [options.style === 'legacy' ? '2.0.2' : '2.12.0'], true);
    const names = ['input_1', ...spec.layers.filter((l) => l.type !== 'input').map((l) => l.name)];
    stringAttribute(root, 'layer_names', names);
    const input = root.create_group('input_1');
    stringAttribute(input, 'weight_names', []);
    for (const layer of spec.layers) {
      if (layer.type === 'input') continue;
      const group = root.create_group(layer.name);
      if (layer.type !== 'conv2d' && layer.type !== 'dense') {
        stringAttribute(group, 'weight_names', []);
        continue;
      }
      const arrays: Array<[string, Float32Array, number[]]> = [[options.style === 'legacy' ? 'W' : 'kernel', layer.kernel, kernelShape(layer)]];
      if (layer.bias) arrays.push([options.style === 'legacy' ? 'b' : 'bias', layer.bias, [layer.bias.length]]);
      const weightNames: string[] = [];
      for (const [short, data, shape] of arrays) {
        if (options.style === 'legacy') {
          const name = `${layer.name}_${short}_1:0`;
          group.create_dataset({ name, data, shape, dtype: '<f' });
          weightNames.push(name);
        } else {
          const inner = (group.get(layer.name) as Group | null) ?? group.create_group(layer.name);
          inner.create_dataset({ name: `${short}:0`, data, shape, dtype: '<f' });
          weightNames.push(`${layer.name}/${short}:0`);
        }
      }
      stringAttribute(group, 'weight_names', weightNames);
    }
  } finally {
    file.close();
  }
}

function kernelShape(layer: Extract<ModelSpec['layers'][number], { kernel: Float32Array }>): number[] {
  if (layer.type === 'dense') return [layer.kernel.length / layer.units, layer.units];
  const [kh, kw] = layer.kernelSize;
  return [kh, kw, layer.kernel.length / (kh * kw * layer.filters), layer.filters];
}

/** Fixed-length string attribute (`scalar` for a single value, as h5py writes `attrs['x'] = 'y'`). */
function stringAttribute(group: Group, name: string, values: string[], scalar = false): void {
  const width = Math.max(1, ...values.map((v) => Buffer.byteLength(v)));
  if (scalar) group.create_attribute(name, values[0]!, [], `S${width}`);
  else group.create_attribute(name, values, [values.length], `S${width}`);
}

/**
 * One layer's weights as Keras stores them: variable name (`kernel`, `gamma`, ...; a nested
 * model's weights are named `<inner layer>/<variable>`), data, shape.
 */
export interface KerasLayerWeights {
  name: string;
  weights: Array<{ name: string; data: Float32Array; shape: number[] }>;
}

export interface WriteKerasModelHdf5Options {
  /** `model.save('x.h5')`: weights under `model_weights/` plus this `model_config`; null: a weights-only file (`save_weights`). */
  modelConfig: object | null;
  /** Every layer in model order, weightless ones included (Keras lists them all in `layer_names`). */
  layers: KerasLayerWeights[];
  /** Default `2.15.0`. */
  kerasVersion?: string;
}

/**
 * Any Keras model's weights in tf.keras 2.x layout: `<layer>/<layer>/<variable>:0` datasets,
 * `layer_names` on the weights root and `weight_names` per layer group, `model_config`,
 * `keras_version` and `backend` on the file for full-model files.
 */
export async function writeKerasModelHdf5(path: string, options: WriteKerasModelHdf5Options): Promise<void> {
  await h5wasm.ready;
  await mkdir(dirname(path), { recursive: true });
  const file = new h5wasm.File(path, 'w');
  if (file.file_id < 0n) throw new Error(`h5wasm could not create ${path}`);
  const version = options.kerasVersion ?? '2.15.0';
  try {
    let root: Group = file;
    if (options.modelConfig) {
      stringAttribute(file, 'model_config', [JSON.stringify(options.modelConfig)], true);
      stringAttribute(file, 'keras_version', [version], true);
      stringAttribute(file, 'backend', ['tensorflow'], true);
      root = file.create_group('model_weights');
    }
    stringAttribute(root, 'backend', ['tensorflow'], true);
    stringAttribute(root, 'keras_version', [version], true);
    stringAttribute(root, 'layer_names', options.layers.map((l) => l.name));
    // Layer names may hold slashes (DenseNet's `conv1/conv`): h5py makes the groups in between.
    const groupAt = (parent: Group, path: string[]): Group => path.reduce((g, part) => (g.get(part) as Group | null) ?? g.create_group(part), parent);
    for (const layer of options.layers) {
      const group = groupAt(root, layer.name.split('/'));
      const names: string[] = [];
      for (const w of layer.weights) {
        const name = `${w.name.includes('/') && !w.name.startsWith(`${layer.name}/`) ? w.name : `${layer.name}/${w.name.slice(w.name.lastIndexOf('/') + 1)}`}:0`;
        const parts = name.split('/');
        groupAt(group, parts.slice(0, -1)).create_dataset({ name: parts.at(-1)!, data: w.data, shape: w.shape, dtype: '<f' });
        names.push(name);
      }
      stringAttribute(group, 'weight_names', names);
    }
  } finally {
    file.close();
  }
}
