/**
 * `--onnx-precision fp16`: the float16 encoder against IEEE 754 rounding, the compiled graph's
 * types, and the fp16 engine against PyTorch's float32 autograd references (test/fixtures/onnx) at
 * the tolerances the doctor applies (FP16_PARITY). On the CPU provider ONNX Runtime computes float16
 * nodes through casts, so every node's output is rounded to float16 as on a GPU; the speed of fp16
 * is a GPU matter (bench:gpu).
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FP16_PARITY, FP32_PARITY, parityTolerance } from '../../../src/worker/doctor/engine-checks.js';
import { compileGraph } from '../../../src/worker/engine/onnx/compile-graph.js';
import { createOnnxEngine, type OnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { float16Bits, float16Value } from '../../../src/worker/model/graph/float16.js';
import { parseOnnxFlags } from '../../../src/worker/engine/onnx/options.js';
import type { ModelGraph } from '../../../src/worker/model/graph/ir.js';
import { decodeModel, TensorDataType } from '../../../src/worker/model/graph/onnx-proto.js';
import { loadModel } from '../../../src/worker/model/source.js';
import { ONNX_FIXTURES_DIR as DIR, REFERENCE_METHODS as METHODS, normalised, pytorchReference as reference, referenceImages as images } from './helpers/pytorch-reference.js';

describe('float16Bits', () => {
  // Exhaustive loops collect mismatches and assert once: one expect() per value would dominate the time.
  it('round-trips every float16 value', () => {
    const wrong: string[] = [];
    for (let bits = 0; bits < 0x10000; bits++) {
      const v = float16Value(bits);
      const back = float16Bits(v);
      if (Number.isNaN(v) ? !Number.isNaN(float16Value(back)) : back !== bits) wrong.push(`0x${bits.toString(16)}`);
    }
    expect(wrong).toEqual([]);
  });

  it('rounds to nearest, ties to even, between every pair of neighbours', () => {
    const f32 = new Float32Array(1);
    const u32 = new Uint32Array(f32.buffer);
    const nudge = (x: number, ulps: number): number => {
      f32[0] = x;
      u32[0] += ulps;
      return f32[0];
    };
    const wrong: string[] = [];
    // Positive finite halves below the largest; the negative side is the sign bit on the same path.
    for (let bits = 0; bits < 0x7bff; bits++) {
      const lo = float16Value(bits);
      const hi = float16Value(bits + 1);
      const mid = (lo + hi) / 2; // 12 significant bits: exact in float32
      const even = bits % 2 === 0 ? bits : bits + 1;
      const ok =
        Math.fround(mid) === mid &&
        float16Bits(mid) === even &&
        float16Bits(-mid) === (0x8000 | even) &&
        float16Bits(nudge(mid, -1)) === bits &&
        float16Bits(nudge(mid, 1)) === bits + 1;
      if (!ok) wrong.push(`0x${bits.toString(16)}`);
    }
    expect(wrong).toEqual([]);
  });

  it('saturates to infinity past the largest half and flushes below the smallest subnormal', () => {
    expect(float16Bits(65504)).toBe(0x7bff);
    expect(float16Bits(65519.99)).toBe(0x7bff);
    expect(float16Bits(65520)).toBe(0x7c00); // the midpoint to the next (missing) value rounds to even: inf
    expect(float16Bits(1e9)).toBe(0x7c00);
    expect(float16Bits(-Infinity)).toBe(0xfc00);
    expect(float16Bits(2 ** -25)).toBe(0); // half the smallest subnormal: tie to even (zero)
    expect(float16Bits(2 ** -25 * 1.0001)).toBe(1);
    expect(float16Bits(1e-10)).toBe(0);
    expect(float16Bits(-0)).toBe(0x8000);
    expect(float16Bits(1)).toBe(0x3c00);
    expect(float16Bits(0.1)).toBe(0x2e66);
  });
});

describe('flags', () => {
  it('--onnx-precision takes fp32 or fp16 and names itself otherwise', () => {
    expect(parseOnnxFlags({ onnxPrecision: 'fp16' }).precision).toBe('fp16');
    expect(() => parseOnnxFlags({ onnxPrecision: 'int8' })).toThrow(/--onnx-precision.*fp32 or fp16.*int8/);
  });

  it('the doctor applies the float16 tolerance to fp16 backends only', () => {
    expect(parityTolerance({ precision: 'fp16' })).toBe(FP16_PARITY);
    expect(parityTolerance({ precision: 'fp32' })).toBe(FP32_PARITY);
    expect(parityTolerance({})).toBe(FP32_PARITY);
  });
});


describe.each(Object.keys(reference.models))('%s with a float16 trunk', (name) => {
  let graph: ModelGraph;
  const engines: OnnxEngine[] = [];
  beforeAll(async () => {
    graph = (await loadModel(join(DIR, reference.models[name].file))) as ModelGraph;
  });
  afterAll(async () => {
    await Promise.all(engines.map((e) => e.dispose()));
  });

  it('stores the trunk weights as float16 and keeps the graph interface float32', () => {
    const layer = reference.models[name].target;
    const full = compileGraph(graph, { layer, kind: 'explain', method: 'gradcam' });
    const half = compileGraph(graph, { layer, kind: 'explain', method: 'gradcam', precision: 'fp16' });
    expect(half.precision).toBe('fp16');
    interface Value { name?: string; type?: { tensorType?: { elemType?: number } } }
    const decoded = (decodeModel(half.bytes) as { graph: { initializer?: Array<{ dataType?: number }>; input?: Value[]; output?: Value[] } }).graph;
    const types = new Set((decoded.initializer ?? []).map((t) => t.dataType));
    expect(types.has(TensorDataType.FLOAT16)).toBe(true);
    // Interface unchanged: float32 images in, float32 probabilities and CAMs out.
    const io = [...(decoded.input ?? []), ...(decoded.output ?? [])].filter((v) => ['images', 'probabilities', 'cam'].includes(v.name ?? ''));
    expect(io.map((v) => v.type?.tensorType?.elemType)).toEqual([TensorDataType.FLOAT, TensorDataType.FLOAT, TensorDataType.FLOAT]);
    // The trunk holds most weights, so the graph shrinks towards half.
    expect(half.bytes.length).toBeLessThan(full.bytes.length * 0.8);
  });

  it('matches PyTorch autograd within the fp16 tolerances, every gradient method', async () => {
    const engine = await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: 1, precision: 'fp16', checkPlacement: false } });
    engines.push(engine);
    expect(engine.info.backend).toBe('onnx-cpu-fp16');
    const ref = reference.models[name];
    let worstLogit = 0;
    for (const method of METHODS) {
      const results = await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method, score: 'prob' });
      results.forEach((r, i) => {
        const want = ref.results[i];
        r.logits?.forEach((z, k) => (worstLogit = Math.max(worstLogit, Math.abs(z - want.logits[k]))));
        r.probabilities.forEach((p, k) => {
          expect(Math.abs(p - want.probabilities[k]), `${name} p[${k}]`).toBeLessThan(FP16_PARITY.probability);
        });
        expect(r.cams[0].classIndex).toBe(want.top1);
        const expected = normalised(want.cams[`${method}/prob/${want.top1}`]);
        let worst = 0;
        r.cams[0].grid.forEach((v, k) => (worst = Math.max(worst, Math.abs(v - expected[k]))));
        expect(worst, `${name} ${method} image ${i}`).toBeLessThan(FP16_PARITY.cam);
      });
    }
    // Float16 really ran: the float32 engine's logits match PyTorch to ~1e-7 on these fixtures,
    // float16's by 7e-6 (mobilenet) to 3e-4 (convnext).
    expect(worstLogit).toBeGreaterThan(1e-6);
  });
});

describe('a float16 ONNX file (scripts/onnx-fixtures/make_half.py)', () => {
  it('loads with its weights widened exactly, and explains within the fp16 tolerances', async () => {
    const half = (await loadModel(join(DIR, 'resnet-fp16.onnx'))) as ModelGraph;
    const full = (await loadModel(join(DIR, 'resnet.onnx'))) as ModelGraph;
    const floats = Object.entries(full.constants).filter(([, c]) => c.dtype === 'float32');
    expect(floats.length).toBeGreaterThan(0);
    for (const [name, c] of floats) {
      const h = half.constants[name];
      expect(h?.dtype, name).toBe('float32');
      const got = h!.data as Float32Array;
      (c.data as Float32Array).forEach((v, i) => expect(got[i]).toBe(Math.fround(float16Value(float16Bits(v)))));
    }
    const engine = await createOnnxEngine({ spec: half, cache: null, runtime: { intraOpThreads: 1, checkPlacement: false } });
    try {
      const ref = reference.models.resnet;
      const results = await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'prob' });
      results.forEach((r, i) => {
        r.probabilities.forEach((p, k) => expect(Math.abs(p - ref.results[i].probabilities[k])).toBeLessThan(FP16_PARITY.probability));
        const expected = normalised(ref.results[i].cams[`gradcam/prob/${ref.results[i].top1}`]);
        r.cams[0].grid.forEach((v, k) => expect(Math.abs(v - expected[k])).toBeLessThan(FP16_PARITY.cam));
      });
    } finally {
      await engine.dispose();
    }
  });
});
