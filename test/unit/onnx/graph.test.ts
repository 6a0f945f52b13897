/**
 * The ONNX encoding and the compile-time layout conversions, checked by hand on tiny arrays, and
 * the graph's interface as ONNX Runtime sees it.
 */
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { GRAPH_IO, compileGraph } from '../../../src/worker/engine/onnx/compile-graph.js';
import { hwioToOihw } from '../../../src/worker/model/graph/from-sequential.js';
import { GraphBuilder, OPSET } from '../../../src/worker/engine/onnx/graph-builder.js';
import { TensorDataType, decodeModel } from '../../../src/worker/model/graph/onnx-proto.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';

describe('ONNX protobuf encoding', () => {
  it('round-trips a graph and ONNX Runtime executes it', async () => {
    const g = new GraphBuilder();
    const x = g.input('x', TensorDataType.FLOAT, ['n', 2]);
    const w = g.floatInitializer('w', Float32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const y = g.op('MatMul', [x, w]);
    g.output(g.op('Relu', [g.op('Sub', [y, g.float([10], [])])]), 'y', TensorDataType.FLOAT, ['n', 3]);
    const bytes = g.toBytes({ graphName: 'tiny', producerVersion: 'test' });

    const model = decodeModel(bytes) as { opsetImport: Array<{ version: number }>; graph: { initializer: Array<{ name: string; dims: number[]; rawData: number[] }>; node: unknown[] } };
    expect(model.opsetImport[0].version).toBe(OPSET);
    const init = model.graph.initializer.find((t) => t.name === 'w')!;
    expect(init.dims).toEqual([2, 3]);
    expect(Array.from(new Float32Array(Uint8Array.from(init.rawData).buffer))).toEqual([1, 2, 3, 4, 5, 6]);

    const session = await ort.InferenceSession.create(bytes);
    // Rows [1,1] and [3,2] times W = [[1,2,3],[4,5,6]]: [5,7,9] and [11,16,21]; minus 10, ReLU.
    const out = await session.run({ x: new ort.Tensor('float32', Float32Array.from([1, 1, 3, 2]), [2, 2]) });
    expect(Array.from(out.y.data as Float32Array)).toEqual([0, 0, 0, 1, 6, 11]);
    await session.release();
  });

  it('deduplicates constants and keeps names unique', () => {
    const g = new GraphBuilder();
    expect(g.int64([1, 2])).toBe(g.int64([1, 2]));
    expect(g.int64([1, 2])).not.toBe(g.int64([1, 2], [2, 1]));
    const a = g.op('Relu', ['x'], { name: 'r' });
    const b = g.op('Relu', ['x'], { name: 'r' });
    expect(a).not.toBe(b);
  });
});

describe('layout conversions', () => {
  it('HWIO → OIHW', () => {
    // kh=1, kw=2, in=2, out=3: value encodes (y, x, i, o) as 1000y + 100x + 10i + o.
    const hwio = new Float32Array(12);
    for (let x = 0; x < 2; x++) for (let i = 0; i < 2; i++) for (let o = 0; o < 3; o++) hwio[(x * 2 + i) * 3 + o] = 100 * x + 10 * i + o;
    const oihw = hwioToOihw(hwio, 1, 2, 2, 3);
    // OIHW index ((o*in + i)*kh + y)*kw + x
    for (let o = 0; o < 3; o++) for (let i = 0; i < 2; i++) for (let x = 0; x < 2; x++) expect(oihw[(o * 2 + i) * 2 + x]).toBe(100 * x + 10 * i + o);
  });
});

describe('compiled graph interface', () => {
  it('exposes images/targets/score inputs and one CAM output', async () => {
    const spec = vggShapedSpec({ seed: 4 });
    const compiled = compileGraph(spec, { layer: 'block2_conv2', kind: 'explain', method: 'gradcam++' });
    expect(compiled.method).toBe('gradcam++');
    expect([compiled.camHeight, compiled.camWidth, compiled.numClasses]).toEqual([16, 16, 10]);
    const session = await ort.InferenceSession.create(compiled.bytes);
    expect([...session.inputNames].sort()).toEqual([GRAPH_IO.images, GRAPH_IO.scoreIsProb, GRAPH_IO.targets].sort());
    expect(session.outputNames).toContain(GRAPH_IO.cam);
    expect(session.outputNames).toContain(GRAPH_IO.activation);
    await session.release();
    const forward = compileGraph(spec, { layer: 'block2_conv2', kind: 'forward' });
    const fs = await ort.InferenceSession.create(forward.bytes);
    expect([...fs.inputNames]).toEqual([GRAPH_IO.images]);
    expect([...fs.outputNames].sort()).toEqual([GRAPH_IO.activation, GRAPH_IO.logits, GRAPH_IO.probabilities]);
    await fs.release();
  });
});
