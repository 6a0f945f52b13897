/**
 * The shared graph walk on sequential Keras models: default target, explicit names, the split into
 * trunk and head, and the errors users see.
 */
import { describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/shared/errors.js';
import { buildModelSpec } from '../../../src/worker/model/architecture.js';
import { graphFromSequential } from '../../../src/worker/model/graph/from-sequential.js';
import { graphFacts, resolveTarget, splitAtTarget, topologicalOrder } from '../../../src/worker/model/graph/walker.js';
import { randomWeights } from '../../../src/worker/model/random-weights.js';
import { vggShapedArchitecture, vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { vgg16Architecture } from '../../../src/worker/model/vgg16.js';
import type { ModelSpec } from '../../../src/worker/model/spec.js';

/** VGG16 layer list with zero-filled weights of the right size for convs only: no 553 MB allocation. */
function hollowVgg16(): ModelSpec {
  const arch = vgg16Architecture();
  const layers = arch.layers.map((l) => (l.type === 'conv2d' || l.type === 'dense' ? { ...l, kernel: new Float32Array(0), bias: new Float32Array(0) } : l)) as ModelSpec['layers'];
  return { name: arch.name, inputShape: arch.inputShape, layers, weightsHash: '', source: 'test' };
}

describe('graph walker on sequential models', () => {
  it('uses block5_conv3 for VGG16 and splits into trunk and head there', () => {
    const graph = graphFromSequential(hollowVgg16());
    expect(resolveTarget(graph)).toBe('block5_conv3');
    const split = splitAtTarget(graph);
    expect(split.targetShape).toEqual([512, 14, 14]);
    expect(split.trunk.at(-1)?.outputs[0]).toBe('block5_conv3');
    expect(split.head.map((n) => n.op)).toEqual(['MaxPool', 'Transpose', 'Flatten', 'Gemm', 'Relu', 'Gemm', 'Relu', 'Gemm']);
    expect(split.output).toMatchObject({ logits: 'predictions/linear', activation: 'softmax', numClasses: 1000, node: { op: 'Softmax' } });
    expect(split.headInputs).toEqual([]);
  });

  it('uses the last conv layer of other nets, walking back through the pool before flatten', () => {
    const graph = graphFromSequential(vggShapedSpec({ blocks: [{ filters: 4, convs: 1 }, { filters: 6, convs: 2 }] }));
    expect(resolveTarget(graph)).toBe('block2_conv2');
    expect(splitAtTarget(graph).targetShape).toEqual([6, 16, 16]);
  });

  it('explains after a separate Activation layer that follows the last conv', () => {
    const arch = vggShapedArchitecture({ blocks: [{ filters: 4, convs: 1 }], head: 'gap', poolLastBlock: false });
    arch.layers.splice(1, 0, { type: 'activation', name: 'last_relu', activation: 'relu' });
    const graph = graphFromSequential(buildModelSpec(arch, randomWeights(arch), { source: 'test' }));
    expect(resolveTarget(graph)).toBe('last_relu');
    expect(splitAtTarget(graph).head.map((n) => n.op)).toEqual(['GlobalAveragePool', 'Flatten', 'Gemm', 'Relu', 'Gemm']);
  });

  it('accepts a Keras layer, node or tensor name and lists the feature maps when the name is wrong', () => {
    const graph = graphFromSequential(vggShapedSpec());
    expect(splitAtTarget(graph, 'block1_pool').targetShape).toEqual([8, 16, 16]);
    expect(resolveTarget(graph, 'block2_conv1/Conv')).toBe('block2_conv1/conv');
    expect(resolveTarget(graph, 'block2_conv1/conv')).toBe('block2_conv1/conv');
    expect(() => resolveTarget(graph, 'block9_conv1')).toThrow(ModelError);
    expect(() => resolveTarget(graph, 'block9_conv1')).toThrow(/"block9_conv1" cannot be used \(no such layer, node or tensor\); feature maps of vgg-small: .*block1_conv1 \[8x32x32\].*block2_conv2 \[16x16x16\]/);
    expect(() => resolveTarget(graph, 'fc1')).toThrow(/output \[32\] is not a 4-D feature map/);
  });

  it('refuses a model without convolutions', () => {
    const arch = vggShapedArchitecture({ blocks: [], inputShape: [2, 2, 1] });
    const graph = graphFromSequential(buildModelSpec(arch, randomWeights(arch), { source: 'test' }));
    expect(() => resolveTarget(graph)).toThrow(/pools its input directly/);
  });

  it('orders nodes topologically and infers shapes with the batch axis', () => {
    const graph = graphFromSequential(vggShapedSpec());
    const shuffled = [...graph.nodes].reverse();
    const order = topologicalOrder(shuffled, [graph.input.name, ...Object.keys(graph.constants)]);
    expect(order.map((n) => n.name)).toEqual(graph.nodes.map((n) => n.name));
    expect(graphFacts(graph).shapes.get('block1_pool')).toEqual([1, 8, 16, 16]);
    expect(graphFacts(graph).shapes.get('predictions')).toEqual([1, 10]);
    expect(() => topologicalOrder([{ name: 'a', op: 'Relu', inputs: ['b'], outputs: ['c'], attrs: {} }], [])).toThrow(/node "a" \(Relu\) reads b/);
  });
});
