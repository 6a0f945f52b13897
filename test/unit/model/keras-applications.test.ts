/**
 * `--architecture` layouts for Keras weights-only .h5 files. Independent checks: TF.js Layers
 * deserialises each layout's Keras JSON (its own layer implementations and weight shapes) and its
 * weight count equals the Keras documentation's at 224x224x3 with 1000 classes; the converter
 * finds every weight TF.js made by layer and variable name; a weights-only file written from the
 * TF.js model (Keras' `<layer>/<layer>/<variable>:0` layout) loads by name through
 * `--architecture` and computes what TF.js Layers' `predict` computes.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { KerasArchitecture } from '../../../src/shared/model-options.js';
import type { Engine, PreprocessedImage } from '../../../src/worker/engine/engine.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import { applicationTopology } from '../../../src/worker/model/applications/index.js';
import { graphFromKeras, kerasWeightLookup } from '../../../src/worker/model/graph/from-keras.js';
import type { ModelGraph } from '../../../src/worker/model/graph/ir.js';
import { resolveTarget, shapeOf } from '../../../src/worker/model/graph/walker.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';
import { loadModel } from '../../../src/worker/model/source.js';
// Registers Keras' Normalization with TF.js Layers (EfficientNet's input normalisation).
import { applicationModel, kerasLayerWeights, saveWeightsOnlyH5, seedWeights } from './helpers/keras-functional.js';
import { writeKerasModelHdf5 } from '../../../scripts/weights/write-keras-hdf5.js';

/**
 * `numeric`: the input size of the check against TF.js Layers' predict, or 0 to skip it (it checks
 * the converter, which the functional fixtures already hold to TF.js Layers layer by layer, so
 * MobileNetV2 and EfficientNetB0, whose layer kinds differ most, are enough; the parameter counts
 * and by-name loading check the layouts themselves).
 */
const LAYOUTS: Array<{ name: KerasArchitecture; params: number; target: string; targetShape: number[]; layers: string[]; numeric: number }> = [
  { name: 'resnet50', numeric: 0, params: 25_636_712, target: 'conv5_block3_out', targetShape: [1, 2048, 7, 7], layers: ['conv1_conv', 'conv2_block1_0_conv', 'conv3_block4_2_bn', 'conv4_block6_out', 'conv5_block3_3_conv', 'avg_pool', 'predictions'] },
  { name: 'densenet121', numeric: 0, params: 8_062_504, target: 'relu', targetShape: [1, 1024, 7, 7], layers: ['conv1/conv', 'conv1/bn', 'pool1', 'conv2_block1_1_conv', 'pool2_conv', 'conv4_block24_concat', 'conv5_block16_2_conv', 'bn', 'avg_pool', 'predictions'] },
  { name: 'efficientnetb0', numeric: 64, params: 5_330_571, target: 'top_activation', targetShape: [1, 1280, 7, 7], layers: ['rescaling', 'normalization', 'rescaling_1', 'stem_conv_pad', 'stem_conv', 'block1a_se_reshape', 'block2a_dwconv_pad', 'block2b_drop', 'block6d_add', 'block7a_project_bn', 'top_conv', 'top_dropout', 'predictions'] },
  { name: 'mobilenetv2', numeric: 64, params: 3_538_984, target: 'out_relu', targetShape: [1, 1280, 7, 7], layers: ['Conv1', 'bn_Conv1', 'expanded_conv_depthwise', 'block_1_pad', 'block_16_project_BN', 'Conv_1', 'predictions'] },
];

describe.each(LAYOUTS)('keras.applications layout $name', ({ name, params, target, targetShape, layers, numeric: size }) => {
  let dir: string;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), `gca-app-${name}-`));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it(`has Keras' layer names and ${params.toLocaleString('en')} weights at 224x224 (as TF.js Layers counts them)`, async () => {
    const model = await applicationModel(name, [224, 224, 3], 1000);
    try {
      expect(model.countParams()).toBe(params);
      const names = model.layers.map((l) => l.name);
      for (const layer of layers) expect(names).toContain(layer);
      // Our converter takes every weight TF.js made, by layer and variable name, and finds the Keras target.
      const topology = applicationTopology(name);
      if (topology.kind !== 'graph') throw new Error(`${name} is sequential`);
      const lookup = kerasWeightLookup(model.weights.map((w) => ({ path: w.originalName, group: '', shape: w.shape as number[], read: () => w.read().dataSync() as Float32Array })));
      const graph = graphFromKeras(topology.model, lookup, { source: name });
      expect(resolveTarget(graph)).toBe(target);
      expect(shapeOf(graph, target)).toEqual(targetShape);
      expect(shapeOf(graph, graph.output)).toEqual([1, 1000]);
    } finally {
      model.dispose();
    }
  });

  it.skipIf(size === 0)('loads a weights-only file by name at the model card size and matches TF.js Layers predict on both engines', async () => {
    const classes = 7;
    const model = await applicationModel(name, [size, size, 3], classes);
    const engines: Engine[] = [];
    try {
      seedWeights(model, 3);
      const path = await saveWeightsOnlyH5(model, join(dir, 'small.h5'));
      const graph = (await loadModel(path, {}, { kerasArchitecture: name, inputSize: [size, size] })) as ModelGraph;
      expect(shapeOf(graph, graph.output)).toEqual([1, classes]);
      const rand = mulberry32(9);
      const images: PreprocessedImage[] = [0, 1].map(() => ({ data: Float32Array.from({ length: size * size * 3 }, () => rand() * 2 - 1), height: size, width: size }));
      const x = tf.tensor4d(Float32Array.from(images.flatMap((i) => Array.from(i.data))), [2, size, size, 3]);
      const want = (model.predict(x) as tf.Tensor2D).arraySync();
      x.dispose();
      engines.push(await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } }));
      engines.push(await createTfjsEngine({ spec: graph, backend: 'cpu' }));
      // Random weights through the whole net must still leave a spread of probabilities to compare.
      expect(Math.max(...want.flat())).toBeLessThan(0.99);
      for (const engine of engines) {
        expect(engine.info.layer).toBe(target);
        const results = await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });
        results.forEach((r, n) => r.probabilities.forEach((p, k) => expect(Math.abs(p - want[n][k]), `${engine.info.engine} image ${n} class ${k}`).toBeLessThan(1e-4)));
      }
    } finally {
      await Promise.all(engines.map((e) => e.dispose()));
      model.dispose();
    }
  });
});

describe('weights-only layer names that differ from the layout', () => {
  it("reads EfficientNetB0's normalization layer by position when the file numbers it (normalization_2)", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gca-app-renamed-'));
    const size = 32;
    const model = await applicationModel('efficientnetb0', [size, size, 3], 5);
    try {
      seedWeights(model, 5);
      const layers = kerasLayerWeights(model).map((l) => (l.name === 'normalization' ? { ...l, name: 'normalization_2' } : l));
      expect(layers.find((l) => l.name === 'normalization_2')?.weights.length).toBeGreaterThan(0);
      const path = join(dir, 'renamed.h5');
      await writeKerasModelHdf5(path, { modelConfig: null, layers });
      const graph = (await loadModel(path, {}, { kerasArchitecture: 'efficientnetb0', inputSize: [size, size] })) as ModelGraph;
      const rand = mulberry32(13);
      const data = Float32Array.from({ length: size * size * 3 }, () => rand() * 255);
      const x = tf.tensor4d(data, [1, size, size, 3]);
      const want = (model.predict(x) as tf.Tensor2D).arraySync()[0];
      x.dispose();
      const engine = await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } });
      try {
        const [got] = await engine.predict([{ data, height: size, width: size }]);
        got.forEach((p, k) => expect(Math.abs(p - want[k]), `class ${k}`).toBeLessThan(1e-4));
      } finally {
        await engine.dispose();
      }
      // Without a layer at that position (one layer fewer) the name is still required, and said.
      await writeKerasModelHdf5(path, { modelConfig: null, layers: layers.filter((l) => l.name !== 'rescaling') });
      await expect(loadModel(path, {}, { kerasArchitecture: 'efficientnetb0', inputSize: [size, size] })).rejects.toThrow(/normalization/);
    } finally {
      model.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
