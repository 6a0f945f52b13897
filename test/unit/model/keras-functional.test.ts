/**
 * Keras functional models (residual + BatchNorm, depthwise + squeeze-excitation + swish, a dense
 * block of concatenations) built with TF.js Layers, saved as a TF.js Layers model and as a Keras
 * full-model .h5, loaded as graphs and run on both engines. Reference: TF.js Layers itself
 * (`model.predict` for probabilities within 1e-4; its own layers, differentiated with `tf.grad`
 * at the target layer, for the CAMs within 1e-3).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CamMethod, ScoreMode } from '../../../src/shared/explain-options.js';
import type { Engine, PreprocessedImage } from '../../../src/worker/engine/engine.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import type { ModelGraph } from '../../../src/worker/model/graph/ir.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';
import { loadModel } from '../../../src/worker/model/source.js';
import { writeKerasModelHdf5 } from '../../../scripts/weights/write-keras-hdf5.js';
import { KERAS_FIXTURES, buildKerasFixture, kerasLayerWeights, kerasModelConfigOf, referenceForward, saveKerasH5, saveTfjs, seedWeights, type KerasFixture } from './helpers/keras-functional.js';

const METHODS: CamMethod[] = ['gradcam', 'hirescam', 'layercam'];
const SCORES: ScoreMode[] = ['logit', 'prob'];
const BATCH = 3;

interface Reference {
  probabilities: number[][];
  /** `${method}/${score}` → per image, the max-normalised map for its top-1 class. */
  cams: Map<string, number[][]>;
  top1: number[];
}

function images(fixture: KerasFixture): PreprocessedImage[] {
  const [h, w, c] = fixture.model.inputs[0].shape.slice(1) as number[];
  const rand = mulberry32(5);
  return Array.from({ length: BATCH }, () => ({ data: Float32Array.from({ length: h * w * c }, () => (fixture.inputScale === 255 ? rand() * 255 : rand() * 2 - 1)), height: h, width: w }));
}

/** Maps from the TF.js Layers model: activation A and dS/dA with plain-array formulas (design notes §4). */
function reference(fixture: KerasFixture, batch: PreprocessedImage[]): Reference {
  const { model, target } = fixture;
  const [h, w, c] = model.inputs[0].shape.slice(1) as number[];
  const x = tf.tensor4d(Float32Array.from(batch.flatMap((i) => Array.from(i.data))), [BATCH, h, w, c]);
  const probabilities = (model.predict(x) as tf.Tensor2D).arraySync();
  const top1 = probabilities.map((p) => p.indexOf(Math.max(...p)));
  const { activation } = referenceForward(model, x, target, null);
  const a = activation.arraySync();
  const cams = new Map<string, number[][]>();
  for (const score of SCORES) {
    const mask = tf.oneHot(top1, probabilities[0].length).toFloat();
    const g = (
      tf.grad((delta: tf.Tensor) => {
        const { logits } = referenceForward(model, x, target, delta);
        return tf.sum(tf.mul(score === 'prob' ? tf.softmax(logits) : logits, mask));
      })(tf.zerosLike(activation)) as tf.Tensor4D
    ).arraySync();
    for (const method of METHODS) {
      cams.set(
        `${method}/${score}`,
        a.map((ai, n) => camOf(method, ai, g[n])),
      );
    }
  }
  return { probabilities, cams, top1 };
}

function camOf(method: CamMethod, a: number[][][], g: number[][][]): number[] {
  const [h, w, c] = [a.length, a[0].length, a[0][0].length];
  const weights = Array.from({ length: c }, (_, k) => {
    let sum = 0;
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) sum += g[i][j][k];
    return sum / (h * w);
  });
  const map: number[] = [];
  for (let i = 0; i < h; i++) {
    for (let j = 0; j < w; j++) {
      let v = 0;
      for (let k = 0; k < c; k++) {
        if (method === 'gradcam') v += weights[k] * a[i][j][k];
        else if (method === 'hirescam') v += g[i][j][k] * a[i][j][k];
        else v += Math.max(g[i][j][k], 0) * a[i][j][k];
      }
      map.push(Math.max(v, 0));
    }
  }
  const max = Math.max(...map);
  return map.map((v) => (max > 0 ? v / max : 0));
}

async function checkEngine(engine: Engine, fixture: KerasFixture, batch: PreprocessedImage[], ref: Reference): Promise<void> {
  expect(engine.info.layer).toBe(fixture.target);
  for (const method of METHODS) {
    for (const score of SCORES) {
      const results = await engine.explain({ images: batch, targets: { kind: 'top1' }, topK: 1, method, score });
      results.forEach((r, n) => {
        let worstP = 0;
        r.probabilities.forEach((p, k) => (worstP = Math.max(worstP, Math.abs(p - ref.probabilities[n][k]))));
        expect(worstP, `${fixture.name} probabilities, image ${n}`).toBeLessThan(1e-4);
        expect(r.cams[0].classIndex).toBe(ref.top1[n]);
        const want = ref.cams.get(`${method}/${score}`)![n];
        expect(r.cams[0].grid.length).toBe(want.length);
        let worst = 0;
        r.cams[0].grid.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - want[k]))));
        expect(worst, `${fixture.name} ${method}/${score} image ${n}`).toBeLessThan(1e-3);
      });
    }
  }
}

describe.each(Object.keys(KERAS_FIXTURES) as Array<keyof typeof KERAS_FIXTURES>)('Keras functional model "%s" (TF.js Layers reference)', (name) => {
  let dir: string;
  let fixture: KerasFixture;
  let batch: PreprocessedImage[];
  let ref: Reference;
  const graphs: Record<'tfjs' | 'h5', ModelGraph> = {} as Record<'tfjs' | 'h5', ModelGraph>;
  const engines: Engine[] = [];

  beforeAll(async () => {
    await tf.setBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), `gca-keras-${name}-`));
    fixture = buildKerasFixture(name);
    batch = images(fixture);
    ref = reference(fixture, batch);
    graphs.tfjs = (await loadModel(await saveTfjs(fixture.model, join(dir, 'tfjs')))) as ModelGraph;
    graphs.h5 = (await loadModel(await saveKerasH5(fixture.model, join(dir, `${name}.h5`)))) as ModelGraph;
  });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.dispose()));
    fixture?.model.dispose();
    await rm(dir, { recursive: true, force: true });
  });

  it('loads as a graph from both files, with the same weights and Keras layer names as values', () => {
    for (const graph of Object.values(graphs)) {
      expect('nodes' in graph).toBe(true);
      expect(graph.producer).toBe('keras');
      expect(graph.nodes.some((n) => n.outputs.includes(fixture.target))).toBe(true);
    }
    expect(graphs.h5.weightsHash).toBe(graphs.tfjs.weightsHash);
    expect(graphs.h5.nodes.map((n) => n.op)).toEqual(graphs.tfjs.nodes.map((n) => n.op));
  });

  for (const format of ['tfjs', 'h5'] as const) {
    it(`${format}: TF.js engine matches TF.js Layers (probabilities 1e-4, CAMs 1e-3)`, async () => {
      const engine = await createTfjsEngine({ spec: graphs[format], backend: 'cpu' });
      engines.push(engine);
      await checkEngine(engine, fixture, batch, ref);
    });
  }

  it('h5: ONNX engine matches TF.js Layers (probabilities 1e-4, CAMs 1e-3)', async () => {
    const engine = await createOnnxEngine({ spec: graphs.h5, cache: null, runtime: { intraOpThreads: 1 } });
    engines.push(engine);
    await checkEngine(engine, fixture, batch, ref);
  });
});

describe('Keras model configs', () => {
  let dir: string;
  beforeAll(async () => {
    await tf.setBackend('cpu');
    dir = await mkdtemp(join(tmpdir(), 'gca-keras-configs-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses an unsupported layer by name, class and the supported list, before reading weights', async () => {
    const input = tf.input({ shape: [8, 8, 3], name: 'image' });
    let x = tf.layers.conv2d({ filters: 4, kernelSize: 3, name: 'conv' }).apply(input) as tf.SymbolicTensor;
    x = tf.layers.prelu({ name: 'learned_relu' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.globalMaxPooling2d({ name: 'gmp' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 2, activation: 'softmax', name: 'predictions' }).apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: x });
    const path = await saveKerasH5(model, join(dir, 'prelu.h5'));
    await expect(loadModel(path)).rejects.toThrow(/layer "learned_relu" \(PReLU\) is not supported; supported layers: .*BatchNormalization.*Concatenate.*Cropping2D.*DepthwiseConv2D.*GlobalMaxPooling2D.*SeparableConv2D.*UpSampling2D/);
    await expect(loadModel(await saveTfjs(model, join(dir, 'prelu')))).rejects.toThrow(/layer "learned_relu" \(PReLU\) is not supported/);
    // A Lambda holds Python code: the error says to rebuild it from layers or to export to ONNX.
    const config = kerasModelConfigOf(model) as { config: { layers: Array<{ class_name: string; name: string; config: Record<string, unknown> }> } };
    const lambda = config.config.layers.find((l) => l.name === 'learned_relu')!;
    Object.assign(lambda, { class_name: 'Lambda', name: 'scale_by_two' });
    lambda.config = { name: 'scale_by_two', function: ['4wEAAAAA', null, null], function_type: 'lambda' };
    const lambdaPath = join(dir, 'lambda.h5');
    await writeKerasModelHdf5(lambdaPath, { modelConfig: config, layers: kerasLayerWeights(model) });
    await expect(loadModel(lambdaPath)).rejects.toThrow(/layer "scale_by_two" \(Lambda\) is not supported \(it holds Python code.*export the model to ONNX with tf2onnx.*pass the \.onnx file\)/);
    model.dispose();
  });

  it("UpSampling2D bilinear samples at half-pixel centres, as Keras' tf.image.resize (formula reference), on both engines", async () => {
    // TF.js Layers' own UpSampling2D samples without half-pixel centres, unlike Keras: the
    // reference is TF's resize formula written out. A 3x4 input upsampled 2x3, then a linear head.
    const input = tf.input({ shape: [3, 4, 2], name: 'image' });
    let x = tf.layers.upSampling2d({ size: [2, 3], interpolation: 'bilinear', name: 'up' }).apply(input) as tf.SymbolicTensor;
    x = tf.layers.conv2d({ filters: 3, kernelSize: 1, name: 'mix' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.globalAveragePooling2d({ name: 'pool' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 2, activation: 'softmax', name: 'predictions' }).apply(x) as tf.SymbolicTensor;
    const model = tf.model({ inputs: input, outputs: x });
    seedWeights(model, 4);
    const rand = mulberry32(8);
    const image = Float32Array.from({ length: 3 * 4 * 2 }, () => rand() * 2 - 1);
    // tf.image.resize bilinear: source coordinate (o + 0.5) / s - 0.5, neighbours clamped to the edge.
    const resize = (src: Float32Array, [h, w, c]: number[], [sh, sw]: number[]): Float32Array => {
      const out = new Float32Array(h * sh * w * sw * c);
      const axis = (o: number, s: number, n: number): [number, number, number] => {
        const f = Math.max((o + 0.5) / s - 0.5, 0);
        const lo = Math.min(Math.floor(f), n - 1);
        return [lo, Math.min(lo + 1, n - 1), f - lo];
      };
      for (let y = 0; y < h * sh; y++) {
        const [y0, y1, fy] = axis(y, sh, h);
        for (let xx = 0; xx < w * sw; xx++) {
          const [x0, x1, fx] = axis(xx, sw, w);
          for (let k = 0; k < c; k++) {
            const at = (yy: number, xq: number): number => src[(yy * w + xq) * c + k];
            const top = at(y0, x0) + (at(y0, x1) - at(y0, x0)) * fx;
            const bottom = at(y1, x0) + (at(y1, x1) - at(y1, x0)) * fx;
            out[(y * w * sw + xx) * c + k] = top + (bottom - top) * fy;
          }
        }
      }
      return out;
    };
    const up = resize(image, [3, 4, 2], [2, 3]);
    const [kernel, bias] = model.getLayer('mix').getWeights().map((t) => t.dataSync());
    const [dense, denseBias] = model.getLayer('predictions').getWeights().map((t) => t.dataSync());
    const pooled = [0, 1, 2].map((o) => {
      let sum = 0;
      for (let p = 0; p < 6 * 12; p++) sum += bias[o] + up[p * 2] * kernel[o] + up[p * 2 + 1] * kernel[3 + o];
      return sum / 72;
    });
    const logits = [0, 1].map((j) => denseBias[j] + pooled.reduce((s, v, i) => s + v * dense[i * 2 + j], 0));
    const want = logits.map((v) => Math.exp(v) / logits.reduce((s, u) => s + Math.exp(u), 0));
    // Grad-CAM at "mix" (the default target): the head is linear, so channel o's weight is
    // dense[o][top] / 72 and the map follows the resized samples through the 1x1 conv.
    const top = want[0] >= want[1] ? 0 : 1;
    const raw = Array.from({ length: 72 }, (_, p) => Math.max([0, 1, 2].reduce((sum, o) => sum + (dense[o * 2 + top] / 72) * (bias[o] + up[p * 2] * kernel[o] + up[p * 2 + 1] * kernel[3 + o]), 0), 0));
    const cam = raw.map((v) => v / Math.max(...raw));
    const graph = (await loadModel(await saveKerasH5(model, join(dir, 'bilinear.h5')))) as ModelGraph;
    const engines = [await createTfjsEngine({ spec: graph, backend: 'cpu' }), await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } })];
    try {
      for (const engine of engines) {
        const [r] = await engine.explain({ images: [{ data: image, height: 3, width: 4 }], targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });
        r.probabilities.forEach((p, k) => expect(Math.abs(p - want[k]), `${engine.info.engine} class ${k}`).toBeLessThan(1e-5));
        expect(r.cams[0].classIndex).toBe(top);
        expect(r.cams[0].grid.length).toBe(72);
        r.cams[0].grid.forEach((v, k) => expect(Math.abs(v - cam[k]), `${engine.info.engine} CAM at ${k}`).toBeLessThan(1e-4));
      }
    } finally {
      await Promise.all(engines.map((e) => e.dispose()));
      model.dispose();
    }
  });

  it('reads Keras 3 node data (keras_history in call args, batch_shape, unwrapped input_layers) as Keras 2 node lists', async () => {
    const { model } = buildKerasFixture('residual');
    const keras2 = kerasModelConfigOf(model) as { config: { layers: Array<{ class_name: string; config: Record<string, unknown>; inbound_nodes: unknown }>; input_layers: unknown[]; output_layers: unknown[] } };
    const keras3 = structuredClone(keras2);
    for (const layer of keras3.config.layers) {
      if (layer.class_name === 'InputLayer') {
        layer.config.batch_shape = layer.config.batch_input_shape;
        delete layer.config.batch_input_shape;
      }
      layer.inbound_nodes = (layer.inbound_nodes as Array<Array<[string, number, number]>>).map((node) => {
        const tensors = node.map(([name, n, t]) => ({ class_name: '__keras_tensor__', config: { shape: [null, 1], dtype: 'float32', keras_history: [name, n, t] } }));
        return { args: [tensors.length === 1 ? tensors[0] : tensors], kwargs: { training: false } };
      });
    }
    keras3.config.input_layers = keras3.config.input_layers[0] as unknown[];
    keras3.config.output_layers = keras3.config.output_layers[0] as unknown[];
    const layers = kerasLayerWeights(model);
    await writeKerasModelHdf5(join(dir, 'k2.h5'), { modelConfig: keras2, layers });
    await writeKerasModelHdf5(join(dir, 'k3.h5'), { modelConfig: keras3, layers, kerasVersion: '3.3.3' });
    const [g2, g3] = (await Promise.all([loadModel(join(dir, 'k2.h5')), loadModel(join(dir, 'k3.h5'))])) as ModelGraph[];
    expect(g3.nodes).toEqual(g2.nodes);
    expect(g3.weightsHash).toBe(g2.weightsHash);
    model.dispose();
  });

  it('inlines a nested model (a pretrained base under a new head) from both files and matches TF.js Layers', async () => {
    const base = buildKerasFixture('residual').model;
    const trunk = tf.model({ inputs: base.inputs, outputs: base.getLayer('b2_out').output as tf.SymbolicTensor, name: 'base' });
    const input = tf.input({ shape: [14, 14, 3], name: 'outer_input' });
    let x = trunk.apply(input) as tf.SymbolicTensor;
    x = tf.layers.globalAveragePooling2d({ name: 'head_pool' }).apply(x) as tf.SymbolicTensor;
    x = tf.layers.dense({ units: 3, activation: 'softmax', name: 'head' }).apply(x) as tf.SymbolicTensor;
    const outer = tf.model({ inputs: input, outputs: x, name: 'finetuned' });
    seedWeights(outer, 5);
    const rand = mulberry32(2);
    const images: PreprocessedImage[] = [0, 1].map(() => ({ data: Float32Array.from({ length: 14 * 14 * 3 }, () => rand() * 2 - 1), height: 14, width: 14 }));
    const want = (outer.predict(tf.tensor4d(Float32Array.from(images.flatMap((i) => Array.from(i.data))), [2, 14, 14, 3])) as tf.Tensor2D).arraySync();
    for (const path of [await saveTfjs(outer, join(dir, 'nested')), await saveKerasH5(outer, join(dir, 'nested.h5'))]) {
      const graph = (await loadModel(path)) as ModelGraph;
      const engine = await createTfjsEngine({ spec: graph, backend: 'cpu' });
      try {
        expect(engine.info.layer).toBe('b2_out');
        const results = await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });
        results.forEach((r, n) => r.probabilities.forEach((p, k) => expect(Math.abs(p - want[n][k])).toBeLessThan(1e-4)));
      } finally {
        await engine.dispose();
      }
    }
    outer.dispose();
  });
});
