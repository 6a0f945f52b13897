import { describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/shared/errors.js';
import { buildModelSpec } from '../../../src/worker/model/architecture.js';
import { randomWeights } from '../../../src/worker/model/random-weights.js';
import { resolveTargetLayer, splitAtTargetLayer } from '../../../src/worker/model/target-layer.js';
import { vggShapedArchitecture, vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { vgg16Architecture } from '../../../src/worker/model/vgg16.js';
import type { ModelSpec } from '../../../src/worker/model/spec.js';

/** VGG16 layer list with empty weight arrays: enough for layer resolution, no 553 MB allocation. */
function hollowVgg16(): ModelSpec {
  const arch = vgg16Architecture();
  const layers = arch.layers.map((l) =>
    l.type === 'conv2d' || l.type === 'dense' ? { ...l, kernel: new Float32Array(0), bias: new Float32Array(0) } : l,
  ) as ModelSpec['layers'];
  return { name: arch.name, inputShape: arch.inputShape, layers, weightsHash: '', source: 'test' };
}

describe('resolveTargetLayer', () => {
  it('uses block5_conv3 for VGG16 and splits into features and head there', () => {
    const spec = hollowVgg16();
    expect(resolveTargetLayer(spec)).toBe('block5_conv3');
    const split = splitAtTargetLayer(spec);
    expect(split.targetShape).toEqual([14, 14, 512]);
    expect(split.features.at(-1)?.name).toBe('block5_conv3');
    expect(split.features).toHaveLength(17);
    expect(split.head.map((l) => l.name)).toEqual(['block5_pool', 'flatten', 'fc1', 'fc2', 'predictions']);
  });

  it('uses the last conv layer of other nets', () => {
    const spec = vggShapedSpec({ blocks: [{ filters: 4, convs: 1 }, { filters: 6, convs: 2 }] });
    expect(resolveTargetLayer(spec)).toBe('block2_conv2');
    expect(splitAtTargetLayer(spec).targetShape).toEqual([16, 16, 6]);
  });

  it('explains after a separate Activation layer that follows the last conv', () => {
    const arch = vggShapedArchitecture({ blocks: [{ filters: 4, convs: 1 }], head: 'gap', poolLastBlock: false });
    arch.layers.splice(1, 0, { type: 'activation', name: 'last_relu', activation: 'relu' });
    const spec = buildModelSpec(arch, randomWeights(arch), { source: 'test' });
    expect(resolveTargetLayer(spec)).toBe('last_relu');
    expect(splitAtTargetLayer(spec).head.map((l) => l.type)).toEqual(['gap', 'dense', 'dense']);
  });

  it('accepts an explicit 4-D layer and lists the conv layers when the name is wrong', () => {
    const spec = vggShapedSpec();
    expect(splitAtTargetLayer(spec, 'block1_pool').targetShape).toEqual([16, 16, 8]);
    expect(() => resolveTargetLayer(spec, 'block9_conv1')).toThrow(ModelError);
    expect(() => resolveTargetLayer(spec, 'block9_conv1')).toThrow(
      /"block9_conv1" cannot be used \(no such layer\); conv layers of vgg-small: block1_conv1 \[32x32x8\], block1_conv2 \[32x32x8\], block2_conv1 \[16x16x16\], block2_conv2 \[16x16x16\]/,
    );
    expect(() => resolveTargetLayer(spec, 'fc1')).toThrow(/output \[32\] is not a 4-D feature map/);
  });

  it('refuses a model without convolutions', () => {
    const arch = vggShapedArchitecture({ blocks: [], inputShape: [2, 2, 1] });
    const spec = buildModelSpec(arch, randomWeights(arch), { source: 'test' });
    expect(() => resolveTargetLayer(spec)).toThrow(/no conv2d layer/);
  });
});
