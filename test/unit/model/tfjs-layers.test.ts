import { readFile, readdir, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/shared/errors.js';
import { parseKerasModelConfig } from '../../../src/worker/model/keras-config.js';
import { loadModelSpec } from '../../../src/worker/model/source.js';
import { halfToFloat, readTfjsLayersModel } from '../../../src/worker/model/tfjs-layers.js';
import { vggShapedArchitecture, vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { vgg16Architecture } from '../../../src/worker/model/vgg16.js';
import { kerasModelConfig } from '../../../scripts/weights/keras-json.js';
import { writeKerasHdf5 } from '../../../scripts/weights/write-keras-hdf5.js';
import { writeTfjsLayers } from '../../../scripts/weights/write-tfjs-layers.js';
import { expectSameSpec, withTempDir } from './helpers/specs.js';

const OPTIONS = { inputShape: [16, 16, 3] as [number, number, number], blocks: [{ filters: 4, convs: 2 }, { filters: 8, convs: 1 }], denseUnits: [16], classes: 5 };
const spec = vggShapedSpec({ ...OPTIONS, seed: 21 });

describe('TF.js Layers loader', () => {
  it('loads model.json + many small shards (weights spanning shard boundaries) bit for bit', async () => {
    await withTempDir(async (dir) => {
      const path = await writeTfjsLayers(dir, spec, { shardBytes: 1000 });
      expect((await readdir(dir)).filter((f) => f.endsWith('.bin')).length).toBeGreaterThan(10);
      const loaded = await loadModelSpec(path, {}, { cacheDir: join(dir, 'cache') });
      expectSameSpec(loaded, spec);
      expect(loaded.source).toBe(path);
    });
  });

  it('gives the same weights hash as the same weights in HDF5', async () => {
    await withTempDir(async (dir) => {
      const json = await writeTfjsLayers(join(dir, 'tfjs'), spec);
      await writeKerasHdf5(join(dir, 'w.h5'), spec, { style: 'legacy', fullModel: true });
      const a = await loadModelSpec(json);
      const b = await loadModelSpec(join(dir, 'w.h5'));
      expect(a.weightsHash).toBe(b.weightsHash);
    });
  });

  it('reads the converter layout (topology wrapped in model_config), a GAP head and dropout', async () => {
    await withTempDir(async (dir) => {
      const variant = vggShapedSpec({ ...OPTIONS, head: 'gap', dropout: 0.3, poolLastBlock: false, seed: 4 });
      expectSameSpec(await loadModelSpec(await writeTfjsLayers(dir, variant, { converterWrapper: true })), variant);
    });
  });

  it('dequantises uint8, uint16 and float16 weights', async () => {
    const reference = spec.layers.find((l) => l.name === 'fc1');
    if (reference?.type !== 'dense') throw new Error('fixture');
    for (const [quantization, tolerance] of [['uint8', 0], ['uint16', 0], ['float16', 0]] as const) {
      await withTempDir(async (dir) => {
        const loaded = await loadModelSpec(await writeTfjsLayers(dir, spec, { quantization }));
        const fc1 = loaded.layers.find((l) => l.name === 'fc1');
        if (fc1?.type !== 'dense') throw new Error('fc1 missing');
        let min = Infinity;
        let max = -Infinity;
        for (const v of reference.kernel) [min, max] = [Math.min(min, v), Math.max(max, v)];
        // Affine quantisation errs by at most half a step; float16 by 2^-11 relative.
        const step = quantization === 'float16' ? 0 : (max - min) / (quantization === 'uint8' ? 255 : 65535);
        let worst = 0;
        reference.kernel.forEach((v, i) => {
          const bound = quantization === 'float16' ? Math.abs(v) * 2 ** -11 + 1e-7 : step / 2 + 1e-7;
          worst = Math.max(worst, Math.abs(fc1.kernel[i]! - v) - bound);
        });
        expect(worst, quantization).toBeLessThanOrEqual(tolerance);
        expect(loaded.weightsHash).not.toBe(spec.weightsHash);
      });
    }
  });

  it('decodes half floats exactly', () => {
    expect([0x3c00, 0xc000, 0x0001, 0x7bff, 0x7c00, 0x3555].map(halfToFloat)).toEqual([1, -2, 2 ** -24, 65504, Infinity, 0.333251953125]);
  });

  it('names the weight and layer when a shard is truncated', async () => {
    await withTempDir(async (dir) => {
      const path = await writeTfjsLayers(dir, spec, { shardBytes: 4096 });
      const shards = (await readdir(dir)).filter((f) => f.endsWith('.bin')).sort();
      await truncate(join(dir, shards.at(-1)!), 10);
      await expect(loadModelSpec(path)).rejects.toThrow(/weight "fc1\/kernel" extends past the end of the data \(truncated or mismatched shard\?\)/);
    });
  });

  it('names the layer when a weight shape disagrees with the topology', async () => {
    await withTempDir(async (dir) => {
      const path = await writeTfjsLayers(dir, spec);
      const json = JSON.parse(await readFile(path, 'utf8')) as { modelTopology: { config: { layers: Array<{ config: Record<string, unknown> }> } } };
      json.modelTopology.config.layers[4]!.config.filters = 6; // block2_conv1: 8 → 6 filters
      await writeFile(path, JSON.stringify(json));
      const err = await loadModelSpec(path).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelError);
      expect((err as Error).message).toMatch(/layer "block2_conv1": weight "block2_conv1\/kernel" has shape \[3, 3, 4, 8\] but the topology needs \[3, 3, 4, 6\]/);
    });
  });

  it('rejects an unsupported layer by name and class, and graph models by format', async () => {
    const topology = kerasModelConfig(vggShapedArchitecture(OPTIONS)) as { config: { layers: Array<Record<string, unknown>> } };
    topology.config.layers.splice(2, 0, { class_name: 'BatchNormalization', config: { name: 'bn1', axis: -1 } });
    const json = { format: 'layers-model', modelTopology: topology, weightsManifest: [] };
    await expect(readTfjsLayersModel(json, () => Promise.reject(new Error('unused')), { source: 'm.json' })).rejects.toThrow(
      /m\.json: layer "bn1" has class BatchNormalization, which is not supported \(supported: InputLayer, Conv2D, MaxPooling2D, Flatten, Dense, Dropout, GlobalAveragePooling2D, Activation\)/,
    );
    await expect(readTfjsLayersModel({ format: 'graph-model' }, () => Promise.reject(new Error('unused')), { source: 'g.json' })).rejects.toThrow(/not a TF.js Layers model/);
    await expect(readTfjsLayersModel('{"modelTopology": ', () => Promise.reject(new Error('unused')), { source: 't.json' })).rejects.toThrow(/not valid JSON/);
  });
});

describe('Keras topology parser', () => {
  /** A Sequential config rewritten as a Functional chain in Keras 2 or Keras 3 node syntax. */
  function functional(keras3: boolean): Record<string, unknown> {
    const seq = kerasModelConfig(vggShapedArchitecture(OPTIONS)) as { config: { layers: Array<{ class_name: string; config: { name: string } }> } };
    const layers = seq.config.layers.map((layer, i) => {
      const previous = seq.config.layers[i - 1]?.config.name;
      const inbound = previous === undefined ? [] : keras3
        ? [{ args: [{ class_name: '__keras_tensor__', config: { shape: [null], keras_history: [previous, 0, 0] } }], kwargs: {} }]
        : [[[previous, 0, 0, {}]]];
      return { ...layer, name: layer.config.name, inbound_nodes: inbound };
    });
    // Shuffle the list: the graph, not the list order, defines execution order.
    const shuffled = [layers[0]!, ...layers.slice(1).reverse()];
    return {
      class_name: keras3 ? 'Functional' : 'Model',
      config: { name: 'func', layers: shuffled, input_layers: [['input_1', 0, 0]], output_layers: [['predictions', 0, 0]] },
    };
  }

  it('orders Functional chains by their graph, in Keras 2 and Keras 3 node formats', () => {
    const expected = vggShapedArchitecture(OPTIONS).layers;
    expect(parseKerasModelConfig(functional(false), 'k2').layers).toEqual(expected);
    expect(parseKerasModelConfig(functional(true), 'k3').layers).toEqual(expected);
  });

  it('refuses branching graphs, naming the layer with two inputs', () => {
    const model = functional(false) as { config: { layers: Array<{ name: string; inbound_nodes: unknown }> } };
    model.config.layers.find((l) => l.name === 'fc1')!.inbound_nodes = [[['flatten', 0, 0, {}], ['block2_conv1', 0, 0, {}]]];
    expect(() => parseKerasModelConfig(model, 'b')).toThrow(/layer "fc1" has 2 inputs \(flatten, block2_conv1\)/);
  });

  it('expands a nested base model (fine-tuned VGG16 with a new head)', () => {
    const base = kerasModelConfig(vgg16Architecture()) as { class_name: string; config: { name: string; layers: Array<Record<string, unknown>> } };
    base.config.layers = base.config.layers.slice(0, 19); // up to block5_pool, as include_top=False
    const model = {
      class_name: 'Sequential',
      config: {
        name: 'finetuned',
        layers: [
          base,
          { class_name: 'GlobalAveragePooling2D', config: { name: 'gap' } },
          { class_name: 'Dense', config: { name: 'head', units: 3, activation: 'softmax' } },
        ],
      },
    };
    const arch = parseKerasModelConfig(model, 'f');
    expect(arch.inputShape).toEqual([224, 224, 3]);
    expect(arch.layers.map((l) => l.name).slice(-4)).toEqual(['block5_conv3', 'block5_pool', 'gap', 'head']);
    expect(arch.layers).toHaveLength(20);
  });

  it('reads Keras 3 activations and input shapes, and rejects what the engines cannot run', () => {
    const layer = (cls: string, config: Record<string, unknown>): Record<string, unknown> => ({
      class_name: 'Sequential',
      config: { name: 's', layers: [{ class_name: 'InputLayer', config: { name: 'in', batch_shape: [null, 8, 8, 3] } }, { class_name: cls, config: { name: 'x', ...config } }] },
    });
    const conv = { filters: 2, kernel_size: [3, 3], padding: 'same' };
    expect(parseKerasModelConfig(layer('Conv2D', { ...conv, activation: { class_name: 'function', config: 'relu' } }), 'k').layers[0]).toMatchObject({ activation: 'relu', strides: [1, 1] });
    expect(() => parseKerasModelConfig(layer('Conv2D', { ...conv, activation: 'tanh' }), 'k')).toThrow(/layer "x" \(Conv2D\): activation "tanh" is not supported/);
    expect(() => parseKerasModelConfig(layer('Conv2D', { ...conv, dilation_rate: [2, 2] }), 'k')).toThrow(/dilation_rate 2x2/);
    expect(() => parseKerasModelConfig(layer('Conv2D', { ...conv, data_format: 'channels_first' }), 'k')).toThrow(/channels_first/);
    expect(parseKerasModelConfig(layer('MaxPooling2D', { pool_size: [3, 3], strides: null }), 'k').layers[0]).toMatchObject({ strides: [3, 3], padding: 'valid' });
    const dynamic = { class_name: 'Sequential', config: { name: 's', layers: [{ class_name: 'InputLayer', config: { name: 'in', batch_input_shape: [null, null, null, 3] } }] } };
    expect(() => parseKerasModelConfig(dynamic, 'k')).toThrow(/must have a fixed height, width and channel count/);
  });
});
