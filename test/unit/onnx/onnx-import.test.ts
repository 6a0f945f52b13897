/**
 * The ONNX importer: layouts, fixed batch, external data, canonical forms (auto_pad, opset-dependent
 * inputs), target names, and the errors a user sees for files it cannot run, before any image.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { ModelError } from '../../../src/shared/errors.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { GraphBuilder } from '../../../src/worker/engine/onnx/graph-builder.js';
import { createTfjsEngine } from '../../../src/worker/engine/tfjs/engine.js';
import type { ModelGraph } from '../../../src/worker/model/graph/ir.js';
import { importOnnx } from '../../../src/worker/model/graph/onnx-import.js';
import { TensorDataType } from '../../../src/worker/model/graph/onnx-proto.js';
import { SUPPORTED_OPS } from '../../../src/worker/model/graph/ops.js';
import { BATCH, foldShapeNode } from '../../../src/worker/model/graph/shape-folding.js';
import { graphFacts, resolveTarget, splitAtTarget } from '../../../src/worker/model/graph/walker.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';
import { loadModel } from '../../../src/worker/model/source.js';
import { randomImages } from './helpers/images.js';

const DIR = join(import.meta.dirname, '../../fixtures/onnx');

function seeded(n: number, seed: number, scale = 0.3): Float32Array {
  const rand = mulberry32(seed);
  return Float32Array.from({ length: n }, () => (rand() * 2 - 1) * scale);
}

/** A tf2onnx-style file: NHWC input, SAME_UPPER strided conv, GAP, Gemm, Softmax output. */
/** Three random HWC images of `side`², and the logits ONNX Runtime gives for them running `file` itself (NCHW). */
async function fileLogitsAtBatch3(file: string, side: number, seed: number): Promise<{ images: Array<{ data: Float32Array; height: number; width: number }>; logits: Float32Array }> {
  const images = Array.from({ length: 3 }, (_, i) => {
    const rand = mulberry32(seed + i);
    return { data: Float32Array.from({ length: side * side * 3 }, () => rand() * 2 - 1), height: side, width: side };
  });
  const raw = await ort.InferenceSession.create(readFileSync(file));
  const plane = side * side;
  const nchw = new Float32Array(3 * 3 * plane);
  images.forEach((img, n) => img.data.forEach((v, i) => (nchw[n * 3 * plane + (i % 3) * plane + Math.floor(i / 3)] = v)));
  try {
    return { images, logits: (await raw.run({ input: new ort.Tensor('float32', nchw, [3, 3, side, side]) })).logits.data as Float32Array };
  } finally {
    await raw.release();
  }
}

function tf2onnxStyle(): Uint8Array {
  const g = new GraphBuilder();
  const x = g.input('image', TensorDataType.FLOAT, ['unk', 9, 9, 3]);
  const nchw = g.op('Transpose', [x], { attrs: { perm: { ints: [0, 3, 1, 2] } } });
  const conv = g.op('Conv', [nchw, g.floatInitializer('w', seeded(4 * 3 * 3 * 3, 1), [4, 3, 3, 3]), g.floatInitializer('b', seeded(4, 2), [4])], {
    name: 'conv',
    attrs: { auto_pad: { string: 'SAME_UPPER' }, strides: { ints: [2, 2] } },
  });
  const relu = g.op('Relu', [conv], { name: 'relu' });
  const pooled = g.op('ReduceMean', [relu], { attrs: { axes: { ints: [2, 3] }, keepdims: { int: 0 } } });
  const logits = g.op('Gemm', [pooled, g.floatInitializer('fc', seeded(4 * 5, 3), [4, 5])], { name: 'fc' });
  g.output(g.op('Softmax', [logits], { attrs: { axis: { int: 1 } } }), 'probs', TensorDataType.FLOAT, ['unk', 5]);
  return g.toBytes({ graphName: 'tiny', producerVersion: 'test' });
}

describe('importOnnx', () => {
  it('reads a PyTorch ResNet-style file: NHWC input told from its shape, fixed batch made dynamic, target named by the pooled tensor', async () => {
    const graph = (await loadModel(join(DIR, 'resnet.onnx'))) as ModelGraph;
    expect(graph.input).toEqual({ name: 'input', layout: 'nhwc' });
    expect(graph.inputShape).toEqual([32, 32, 3]);
    expect(graph.producer).toBe('pytorch');
    expect(graph.weightsHash).toMatch(/^[0-9a-f]{64}$/);
    expect(resolveTarget(graph)).toBe('/layer2/Relu_1_output_0');
    // The node name selects its output; earlier targets keep a differentiable head.
    expect(resolveTarget(graph, '/layer2/Relu_1')).toBe('/layer2/Relu_1_output_0');
    expect(splitAtTarget(graph, '/layer1/Relu_1_output_0').head.map((n) => n.op)).toContain('Conv');
  });

  it('reads external data beside the model and fails clearly when it is missing', async () => {
    const graph = (await loadModel(join(DIR, 'mobilenet.onnx'))) as ModelGraph;
    expect(graph.input.layout).toBe('nchw');
    expect(Object.values(graph.constants).some((c) => c.dtype === 'float32' && c.data.length > 100)).toBe(true);
    await expect(importOnnx(readFileSync(join(DIR, 'mobilenet.onnx')), { source: 'x.onnx' })).rejects.toThrow(/external file \(mobilenet\.onnx\.data\)/);
  });

  it('resolves auto_pad and matches ONNX Runtime on the file itself (tf2onnx-style NHWC, ReduceMean head, softmax output)', async () => {
    const bytes = tf2onnxStyle();
    const graph = await importOnnx(bytes, { source: 'tiny.onnx' });
    const conv = graph.nodes.find((n) => n.op === 'Conv')!;
    expect(conv.attrs.pads).toEqual({ ints: [1, 1, 1, 1] });
    expect(conv.attrs.auto_pad).toBeUndefined();
    expect(resolveTarget(graph)).toBe('relu');
    const images = randomImages(2, 9, 9, 5).map((img) => ({ ...img, data: img.data.map((v) => v / 100) }));
    const session = await ort.InferenceSession.create(bytes);
    const batch = new Float32Array(2 * 9 * 9 * 3);
    images.forEach((img, i) => batch.set(img.data, i * img.data.length));
    const want = (await session.run({ image: new ort.Tensor('float32', batch, [2, 9, 9, 3]) })).probs.data as Float32Array;
    await session.release();
    for (const engine of [await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } }), await createTfjsEngine({ spec: graph, backend: 'cpu' })]) {
      const probs = await engine.predict(images);
      probs.forEach((p, i) => p.forEach((v, k) => expect(Math.abs(v - want[i * 5 + k]), `${engine.info.engine} ${Array.from(p)} vs ${Array.from(want)}`).toBeLessThan(1e-5)));
      await engine.dispose();
    }
  });

  it('reads Resize with constant scales (nearest/asymmetric/floor, linear/half_pixel) and matches ONNX Runtime on the file on both engines', async () => {
    const modes: Array<Record<string, { string: string }>> = [{ mode: { string: 'nearest' }, coordinate_transformation_mode: { string: 'asymmetric' }, nearest_mode: { string: 'floor' } }, { mode: { string: 'linear' }, coordinate_transformation_mode: { string: 'half_pixel' } }];
    for (const attrs of modes) {
      const g = new GraphBuilder();
      const x = g.input('image', TensorDataType.FLOAT, ['n', 3, 5, 6]);
      const conv = g.op('Conv', [x, g.floatInitializer('w', seeded(4 * 3, 1), [4, 3, 1, 1])], { name: 'conv' });
      const up = g.op('Resize', [conv, '', g.floatInitializer('scales', Float32Array.of(1, 1, 2, 3), [4])], { name: 'up', attrs });
      const relu = g.op('Relu', [g.op('Conv', [up, g.floatInitializer('w2', seeded(4 * 4 * 9, 2), [4, 4, 3, 3])], { name: 'conv2', attrs: { pads: { ints: [1, 1, 1, 1] } } })], { name: 'relu' });
      const pooled = g.op('ReduceMean', [relu], { attrs: { axes: { ints: [2, 3] }, keepdims: { int: 0 } } });
      g.output(g.op('Softmax', [g.op('Gemm', [pooled, g.floatInitializer('fc', seeded(4 * 3, 3), [4, 3])], { name: 'fc' })], { attrs: { axis: { int: 1 } } }), 'probs', TensorDataType.FLOAT, ['n', 3]);
      const bytes = g.toBytes({ graphName: 'resize', producerVersion: 'test' });
      const graph = await importOnnx(bytes, { source: 'resize.onnx' });
      expect(graph.nodes.find((n) => n.op === 'Resize')!.attrs.scales).toEqual({ floats: [1, 1, 2, 3] });
      const images = randomImages(2, 5, 6, 3);
      const batch = new Float32Array(2 * 3 * 5 * 6);
      images.forEach((img, i) => img.data.forEach((v, k) => (batch[i * 90 + (k % 3) * 30 + Math.floor(k / 3)] = v)));
      const session = await ort.InferenceSession.create(bytes);
      const want = (await session.run({ image: new ort.Tensor('float32', batch, [2, 3, 5, 6]) })).probs.data as Float32Array;
      await session.release();
      for (const engine of [await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } }), await createTfjsEngine({ spec: graph, backend: 'cpu' })]) {
        const probs = await engine.predict(images);
        probs.forEach((p, i) => p.forEach((v, k) => expect(Math.abs(v - want[i * 3 + k]), `${attrs.mode.string} ${engine.info.engine}`).toBeLessThan(1e-5)));
        await engine.dispose();
      }
    }
  });

  it('refuses an unsupported op before any image, naming the node, its op type and the supported list', async () => {
    const g = new GraphBuilder();
    const x = g.input('x', TensorDataType.FLOAT, ['n', 3, 8, 8]);
    const y = g.op('LRN', [x], { name: 'norm', attrs: { size: { int: 3 } } });
    g.output(y, 'y', TensorDataType.FLOAT, ['n', 3, 8, 8]);
    const bytes = g.toBytes({ graphName: 'bad', producerVersion: 'test' });
    const error = await importOnnx(bytes, { source: 'bad.onnx' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ModelError);
    expect((error as Error).message).toMatch(/node "norm_node" has op type LRN, which gradcam-audit cannot run; supported ops: .*Conv.*/);
    expect((error as Error).message).toContain(SUPPORTED_OPS.join(', '));
  });

  it('refuses inputs that are not images and files that are not ONNX', async () => {
    const g = new GraphBuilder();
    const x = g.input('x', TensorDataType.FLOAT, ['n', 10]);
    g.output(g.op('Relu', [x]), 'y', TensorDataType.FLOAT, ['n', 10]);
    await expect(importOnnx(g.toBytes({ graphName: 'flat', producerVersion: 'test' }), { source: 'flat.onnx' })).rejects.toThrow(/input x has shape \[\?, 10\]; an image classifier's input is 4-D/);
    await expect(importOnnx(Uint8Array.from([1, 2, 3, 4, 5]), { source: 'junk.onnx' })).rejects.toThrow(ModelError);
  });
});

describe('run-time reshape targets (dynamic-batch exports)', () => {
  it('folds x.view(x.size(0), -1) (Shape → Gather → Unsqueeze → Concat → Reshape) and both engines match ONNX Runtime on the file', async () => {
    const file = join(DIR, 'view-head.onnx');
    const graph = (await loadModel(file)) as ModelGraph;
    expect(graph.nodes.map((n) => n.op)).not.toContain('Shape');
    expect(graph.nodes.map((n) => n.op)).not.toContain('Gather');
    expect(graph.nodes.find((n) => n.op === 'Reshape')?.attrs.shape).toEqual({ ints: [0, -1] });
    // The file itself, NCHW, at batch 3.
    const { images, logits } = await fileLogitsAtBatch3(file, 16, 20);
    const onnx = await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } });
    const tfjs = await createTfjsEngine({ spec: graph, backend: 'cpu' });
    try {
      const request = { images, targets: { kind: 'top1' as const }, topK: 1, method: 'gradcam' as const, score: 'logit' as const };
      const [a, b] = [await onnx.explain(request), await tfjs.explain(request)];
      a.forEach((r, n) => r.logits!.forEach((v, k) => expect(Math.abs(v - logits[n * 5 + k])).toBeLessThan(1e-5)));
      a.forEach((r, n) => r.cams[0].grid.forEach((v, k) => expect(Math.abs(v - b[n].cams[0].grid[k])).toBeLessThan(1e-4)));
      expect(a.map((r) => r.cams[0].classIndex)).toEqual(b.map((r) => r.cams[0].classIndex));
    } finally {
      await onnx.dispose();
      await tfjs.dispose();
    }
  });

  it('refuses shape arithmetic on the run-time batch, naming the node', () => {
    const constants = { s: { dtype: 'int64' as const, dims: [2], data: [BATCH, 12] }, two: { dtype: 'int64' as const, dims: [1], data: [2] } };
    const mul = { name: 'double_batch', op: 'Mul', inputs: ['s', 'two'], outputs: ['y'], attrs: {} };
    expect(() => foldShapeNode(mul, constants, new Map())).toThrow(/node "double_batch" \(Mul\) computes with the batch size at run time/);
    // Without the batch, the same arithmetic folds (C·H·W of a flatten written out).
    const chw = { ...constants, s: { dtype: 'int64' as const, dims: [2], data: [6, 12] } };
    expect(foldShapeNode(mul, chw, new Map())).toEqual([{ dtype: 'int64', dims: [2], data: [12, 24] }]);
  });

  it('folds only int64 casts of a shape, and gives a constant its own first axis', () => {
    const constants = { s: { dtype: 'int64' as const, dims: [2], data: [6, 12] }, w: { dtype: 'float32' as const, dims: [3, 4], data: new Float32Array(12) } };
    const cast = (to: number) => ({ name: 'to_scale', op: 'Cast', inputs: ['s'], outputs: ['y'], attrs: { to: { int: to } } });
    expect(foldShapeNode(cast(7), constants, new Map())).toEqual([{ dtype: 'int64', dims: [2], data: [6, 12] }]);
    // A float cast (a dynamic interpolate's scales) would come out labelled int64.
    expect(() => foldShapeNode(cast(1), constants, new Map())).toThrow(/node "to_scale" \(Cast\): casts a shape to ONNX element type 1/);
    const shapeOf = (input: string) => ({ name: `shape_${input}`, op: 'Shape', inputs: [input], outputs: ['y'], attrs: {} });
    const shapes = new Map([['w', [3, 4]], ['x', [1, 8, 5, 5]]]);
    expect(foldShapeNode(shapeOf('w'), constants, shapes)).toEqual([{ dtype: 'int64', dims: [2], data: [3, 4] }]);
    expect(foldShapeNode(shapeOf('x'), constants, shapes)).toEqual([{ dtype: 'int64', dims: [4], data: [BATCH, 8, 5, 5] }]);
  });
});

describe('Resize given sizes (F.interpolate(x, size=...))', () => {
  it('keeps the sizes (7 → 61 bilinear, 27 → 117 nearest; as scales d / x both lose a row) and both engines match ONNX Runtime on the file', async () => {
    const file = join(DIR, 'resize-sizes.onnx');
    const graph = (await loadModel(file)) as ModelGraph;
    const resizes = graph.nodes.filter((n) => n.op === 'Resize');
    expect(resizes.map((n) => n.attrs.sizes)).toEqual([{ ints: [61, 61] }, { ints: [117, 117] }]);
    const shapes = graphFacts(graph).shapes;
    expect(resizes.map((n) => shapes.get(n.outputs[0]))).toEqual([
      [1, 6, 61, 61],
      [1, 8, 117, 117],
    ]);
    // The file itself, NCHW, at batch 3.
    const { images, logits } = await fileLogitsAtBatch3(file, 14, 40);
    const onnx = await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1 } });
    const tfjs = await createTfjsEngine({ spec: graph, backend: 'cpu' });
    try {
      const request = { images, targets: { kind: 'top1' as const }, topK: 1, method: 'gradcam' as const, score: 'logit' as const };
      const [a, b] = [await onnx.explain(request), await tfjs.explain(request)];
      for (const [results, engine] of [[a, 'onnx'], [b, 'tfjs']] as const) {
        results.forEach((r, n) => r.logits!.forEach((v, k) => expect(Math.abs(v - logits[n * 5 + k]), `${engine} image ${n} class ${k}`).toBeLessThan(1e-5)));
        expect(results.map((r) => [r.cams[0].height, r.cams[0].width])).toEqual([[117, 117], [117, 117], [117, 117]]);
      }
      a.forEach((r, n) => r.cams[0].grid.forEach((v, k) => expect(Math.abs(v - b[n].cams[0].grid[k])).toBeLessThan(1e-4)));
    } finally {
      await onnx.dispose();
      await tfjs.dispose();
    }
  });
});
