import { describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/shared/errors.js';
import {
  buildModelSpecFromOrdered,
  countParams,
  describeLayers,
  describeSpec,
  hashWeights,
} from '../../../src/worker/model/architecture.js';
import { mulberry32, randomModelSpec } from '../../../src/worker/model/random-weights.js';
import { vggShapedArchitecture, vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { VGG16_PARAMS, vgg16Architecture } from '../../../src/worker/model/vgg16.js';
import { naiveForward } from './helpers/naive-forward.js';

describe('VGG16 architecture (keras.applications.VGG16, include_top)', () => {
  const arch = vgg16Architecture();
  const infos = describeLayers(arch);
  const byName = new Map(infos.map((l) => [l.name, l]));

  it('has Keras layer names in execution order', () => {
    expect(infos.map((l) => l.name)).toEqual([
      'block1_conv1', 'block1_conv2', 'block1_pool',
      'block2_conv1', 'block2_conv2', 'block2_pool',
      'block3_conv1', 'block3_conv2', 'block3_conv3', 'block3_pool',
      'block4_conv1', 'block4_conv2', 'block4_conv3', 'block4_pool',
      'block5_conv1', 'block5_conv2', 'block5_conv3', 'block5_pool',
      'flatten', 'fc1', 'fc2', 'predictions',
    ]);
    expect(arch.inputShape).toEqual([224, 224, 3]);
  });

  it('has 138,357,544 parameters', () => {
    expect(countParams(arch)).toBe(138_357_544);
    expect(VGG16_PARAMS).toBe(138_357_544);
  });

  it('produces the Keras shapes at the layers Grad-CAM and the head depend on', () => {
    expect(byName.get('block5_conv3')?.outputShape).toEqual([14, 14, 512]);
    expect(byName.get('block5_pool')?.outputShape).toEqual([7, 7, 512]);
    expect(byName.get('fc1')?.inputShape).toEqual([25088]);
    expect(byName.get('fc1')?.weightShapes).toEqual([[25088, 4096], [4096]]);
    expect(byName.get('block1_conv1')?.weightShapes).toEqual([[3, 3, 3, 64], [64]]);
    expect(byName.get('block3_conv1')?.weightShapes).toEqual([[3, 3, 128, 256], [256]]);
    expect(byName.get('predictions')?.outputShape).toEqual([1000]);
  });
});

describe('buildModelSpecFromOrdered', () => {
  const arch = vggShapedArchitecture({ inputShape: [8, 8, 3], blocks: [{ filters: 4, convs: 1 }], denseUnits: [], classes: 3 });

  it('names the layer whose kernel does not fit', () => {
    const ordered = [new Float32Array(3 * 3 * 3 * 4), new Float32Array(4), new Float32Array(64 * 3 + 1), new Float32Array(3)];
    expect(() => buildModelSpecFromOrdered(arch, ordered, { source: 't' })).toThrow(ModelError);
    expect(() => buildModelSpecFromOrdered(arch, ordered, { source: 't' })).toThrow(/layer "predictions": kernel has 193 values but the architecture needs \[64, 3\]/);
  });

  it('rebuilds a spec from its weights in Keras get_weights() order', () => {
    const original = vggShapedSpec({ seed: 2 });
    const ordered = original.layers.flatMap((l) => (l.type === 'conv2d' || l.type === 'dense' ? [l.kernel, ...(l.bias ? [l.bias] : [])] : []));
    const rebuilt = buildModelSpecFromOrdered(vggShapedArchitecture(), ordered, { source: 'ordered' });
    expect(rebuilt.weightsHash).toBe(original.weightsHash);
    expect(rebuilt.layers.map((l) => l.name)).toEqual(original.layers.map((l) => l.name));
    expect(rebuilt.source).toBe('ordered');
  });

  it('rejects a wrong number of arrays', () => {
    expect(() => buildModelSpecFromOrdered(arch, [new Float32Array(108)], { source: 't' })).toThrow(/4 weight arrays but 1 were given/);
  });

  it('rejects an input too small for the pooling depth, naming the layer', () => {
    const tiny = vggShapedArchitecture({ inputShape: [2, 2, 3], blocks: [{ filters: 4, convs: 1 }, { filters: 4, convs: 1 }] });
    expect(() => describeLayers(tiny)).toThrow(/layer "block2_pool"/);
  });
});

describe('random VGG-shaped specs', () => {
  it('are deterministic per seed and differ between seeds', () => {
    const a = vggShapedSpec({ seed: 7 });
    const b = vggShapedSpec({ seed: 7 });
    const c = vggShapedSpec({ seed: 8 });
    expect(a.weightsHash).toBe(b.weightsHash);
    expect(a.weightsHash).not.toBe(c.weightsHash);
    expect(a.weightsHash).toBe(hashWeights(a.layers));
    expect(a.weightsHash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('mulberry32 is uniform in [0,1)', () => {
    const next = mulberry32(123);
    const values = Array.from({ length: 10_000 }, next);
    expect(Math.min(...values)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...values)).toBeLessThan(1);
    expect(values.reduce((a, b) => a + b, 0) / values.length).toBeCloseTo(0.5, 1);
  });

  it('supports a GAP head, dropout and an unpooled last block', () => {
    const spec = vggShapedSpec({ head: 'gap', dropout: 0.5, poolLastBlock: false, classes: 4 });
    const infos = describeSpec(spec);
    expect(infos.map((l) => l.type)).toEqual(['conv2d', 'conv2d', 'maxpool2d', 'conv2d', 'conv2d', 'gap', 'dense', 'dropout', 'dense']);
    expect(infos.find((l) => l.name === 'block2_conv2')?.outputShape).toEqual([16, 16, 16]);
    expect(infos.at(-1)?.outputShape).toEqual([4]);
  });

  it('keep activations alive and the softmax unsaturated on caffe-scale inputs', () => {
    const spec = randomModelSpec(vggShapedArchitecture({ inputShape: [16, 16, 3] }), { seed: 3, inputStd: 64 });
    const next = mulberry32(99);
    // Inputs like Keras caffe preprocessing: 0..255 minus a mean of about 115.
    const input = Float64Array.from({ length: 16 * 16 * 3 }, () => next() * 255 - 115);
    const { outputs, probabilities } = naiveForward(spec, input);
    for (const name of ['block1_conv1', 'block2_conv2', 'fc1']) {
      const out = outputs.get(name)!;
      const alive = out.filter((v) => v > 0).length / out.length;
      const rms = Math.sqrt(out.reduce((s, v) => s + v * v, 0) / out.length);
      expect(alive, `${name} alive fraction`).toBeGreaterThan(0.2);
      expect(rms, `${name} rms`).toBeGreaterThan(0.1);
      expect(rms, `${name} rms`).toBeLessThan(20);
    }
    expect(Math.max(...probabilities)).toBeLessThan(0.9);
    expect(probabilities.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 10);
  });
});
