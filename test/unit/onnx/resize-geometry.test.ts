/**
 * Resize geometry (resize-geometry.ts) against ONNX Runtime: output sizes for sizes and scales, and
 * the source index of every output position for nearest/asymmetric/floor, which the TF.js engine
 * gathers. ONNX Runtime runs one Resize whose scales or sizes are graph inputs over many pairs.
 */
import * as ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../src/worker/engine/onnx/graph-builder.js';
import type { GraphNode } from '../../../src/worker/model/graph/ir.js';
import { TensorDataType } from '../../../src/worker/model/graph/onnx-proto.js';
import { nodeOutputShapes } from '../../../src/worker/model/graph/ops.js';
import { nearestFloorSources, resizeGeometry } from '../../../src/worker/model/graph/resize-geometry.js';

const NEAREST = { mode: { string: 'nearest' }, coordinate_transformation_mode: { string: 'asymmetric' }, nearest_mode: { string: 'floor' } };

const resize = (attrs: GraphNode['attrs']): GraphNode => ({ name: 'up', op: 'Resize', inputs: ['x'], outputs: ['y'], attrs: { ...NEAREST, ...attrs } });

/** A session resizing a [1, 1, 1, w] row, its target given by graph input `scales` or `sizes`. */
async function rowResize(by: 'scales' | 'sizes'): Promise<ort.InferenceSession> {
  const g = new GraphBuilder();
  const x = g.input('x', TensorDataType.FLOAT, [1, 1, 1, 'w']);
  const target = g.input(by, by === 'scales' ? TensorDataType.FLOAT : TensorDataType.INT64, [4]);
  g.output(g.op('Resize', by === 'scales' ? [x, '', target] : [x, '', '', target], { name: 'up', attrs: NEAREST }), 'y', TensorDataType.FLOAT, [1, 1, 1, 'o']);
  return ort.InferenceSession.create(g.toBytes({ graphName: 'row', producerVersion: 'test' }), { intraOpNumThreads: 1 });
}

describe('resize geometry', () => {
  const sessions: Partial<Record<'scales' | 'sizes', ort.InferenceSession>> = {};
  beforeAll(async () => {
    sessions.scales = await rowResize('scales');
    sessions.sizes = await rowResize('sizes');
  });
  afterAll(async () => {
    await sessions.scales?.release();
    await sessions.sizes?.release();
  });

  it('gives sizes exactly: every x in 1..64 to every d in 1..256 (as scales d / x, 7 → 61 came out 60)', () => {
    const wrong: string[] = [];
    for (let x = 1; x <= 64; x++) {
      for (let d = 1; d <= 256; d++) {
        const [shape] = nodeOutputShapes(resize({ sizes: { ints: [d, 2 * d] } }), [[1, 3, x, x + 1]], { constants: {} });
        if (shape.join() !== [1, 3, d, 2 * d].join()) wrong.push(`${x}->${d}: ${shape.join('x')}`);
      }
    }
    expect(wrong).toEqual([]);
  });

  it('matches ONNX Runtime: output length and nearest source index for scales f32(d / x) and for sizes d, x in 1..32, d in 1..128', async () => {
    const wrong: string[] = [];
    for (let x = 1; x <= 32; x++) {
      // Each input value is its own index, so the output lists the source index of every position.
      const row = new ort.Tensor('float32', Float32Array.from({ length: x }, (_, i) => i), [1, 1, 1, x]);
      for (let d = 1; d <= 128; d++) {
        const scale = Math.fround(d / x);
        const cases: Array<['scales' | 'sizes', ort.Tensor, GraphNode]> = [
          ['scales', new ort.Tensor('float32', Float32Array.of(1, 1, 1, scale), [4]), resize({ scales: { floats: [1, 1, 1, scale] } })],
          ['sizes', new ort.Tensor('int64', BigInt64Array.of(1n, 1n, 1n, BigInt(d)), [4]), resize({ sizes: { ints: [1, d] } })],
        ];
        for (const [by, target, node] of cases) {
          const y = (await sessions[by]!.run({ x: row, [by]: target })).y;
          const size = resizeGeometry(node, [1, 1, 1, x]).size[1];
          const sources = Array.from(nearestFloorSources(node, [1, 1, 1, x])[1]);
          if (size !== y.dims[3] || sources.join() !== Array.from(y.data as Float32Array).join()) wrong.push(`${by} ${x}->${d}: ${y.dims[3]} [${Array.from(y.data as Float32Array).join()}] vs ${size} [${sources.join()}]`);
        }
      }
    }
    expect(wrong.slice(0, 5)).toEqual([]);
  });
});
