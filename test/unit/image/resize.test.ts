/**
 * Resampling details that the PIL parity fixtures do not isolate: Pillow's accumulated NEAREST
 * positions, the widening bilinear support when shrinking, why sharp's own kernels are not used,
 * and the caffe preprocessing arithmetic on known pixels.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { DEFAULT_PREPROCESS_OPTIONS, preprocess, resolvePreprocessOptions } from '../../../src/worker/image/preprocess.js';
import { bilinearCoefficients, bilinearTaps, nearestSourceIndices, resizeBilinearPil, resizeNearestPil } from '../../../src/worker/image/resize.js';

const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'images');

describe('NEAREST source indices', () => {
  it('samples pixel centres: trunc((x + 0.5) * in / out)', () => {
    expect(Array.from(nearestSourceIndices(4, 2))).toEqual([1, 3]);
    expect(Array.from(nearestSourceIndices(3, 2))).toEqual([0, 2]); // 0.75, 2.25
    expect(Array.from(nearestSourceIndices(2, 5))).toEqual([0, 0, 1, 1, 1]); // 0.2, 0.6, 1.0, 1.4, 1.8
    expect(Array.from(nearestSourceIndices(224, 224))).toEqual(Array.from({ length: 224 }, (_, i) => i));
  });

  it('accumulates by addition like Pillow; the closed form differs on some sizes', () => {
    // Find sizes where repeated addition and the product disagree, to show the two are not
    // interchangeable; the parity fixtures pin down which one Pillow uses.
    let disagreements = 0;
    for (let inSize = 2; inSize < 700 && disagreements === 0; inSize++) {
      const acc = nearestSourceIndices(inSize, 224);
      for (let x = 0; x < 224; x++) if (acc[x] !== Math.trunc((x + 0.5) * (inSize / 224))) disagreements++;
    }
    expect(disagreements).toBeGreaterThan(0);
  });

  it('never indexes outside the source', () => {
    for (const [i, o] of [[1, 224], [225, 224], [1000, 3], [7, 7]]) {
      const idx = nearestSourceIndices(i, o);
      expect(Math.min(...idx)).toBeGreaterThanOrEqual(0);
      expect(Math.max(...idx)).toBeLessThan(i);
    }
  });
});

describe('BILINEAR coefficients', () => {
  it('uses two taps when enlarging and widens the support by the scale when shrinking', () => {
    expect(bilinearTaps(14, 224).ksize).toBe(3);
    const shrink = bilinearTaps(1000, 224); // scale 4.46: support 4.46, up to 11 taps
    expect(shrink.ksize).toBe(11);
    expect(Math.max(...shrink.count)).toBeGreaterThanOrEqual(9);
  });

  it('normalises weights to 1 (and to 2^22 in fixed point, up to rounding)', () => {
    const { ksize, count, weights } = bilinearTaps(333, 224);
    const fixed = bilinearCoefficients(333, 224);
    for (let o = 0; o < 224; o++) {
      let sum = 0;
      let sumFixed = 0;
      for (let t = 0; t < count[o]; t++) {
        sum += weights[o * ksize + t];
        sumFixed += fixed.weights[o * ksize + t];
      }
      expect(Math.abs(sum - 1)).toBeLessThan(1e-12);
      expect(Math.abs(sumFixed - 2 ** 22)).toBeLessThanOrEqual(count[o]);
    }
  });

  it('keeps a constant image constant, at every size', () => {
    const data = new Uint8Array(37 * 23 * 3).fill(77);
    for (const [w, h] of [[224, 224], [5, 3], [37, 100]]) {
      const out = resizeBilinearPil({ data, width: 37, height: 23 }, w, h);
      expect(out.data.every((v) => v === 77)).toBe(true);
    }
  });
});

describe("sharp's kernels are not PIL's (why resize.ts exists)", () => {
  it('sharp nearest/linear differ from Pillow on the 333x217 pattern; ours do not', async () => {
    const input = join(FIXTURES, 'parity', 'rgb-333x217.png');
    const src = await sharp(input).raw().toBuffer({ resolveWithObject: true });
    const image = { data: src.data, width: src.info.width, height: src.info.height };
    for (const [mode, kernel, ours] of [
      ['nearest', 'nearest', resizeNearestPil],
      ['bilinear', 'linear', resizeBilinearPil],
    ] as const) {
      const expected = await sharp(join(FIXTURES, 'reference', `rgb-333x217.${mode}.png`)).raw().toBuffer();
      const viaSharp = await sharp(input).resize(224, 224, { fit: 'fill', kernel }).raw().toBuffer();
      let differing = 0;
      for (let i = 0; i < expected.length; i++) if (expected[i] !== viaSharp[i]) differing++;
      expect(differing / expected.length).toBeGreaterThan(0.2); // measured: 31% (nearest), 64% (linear)
      expect(Buffer.compare(Buffer.from(ours(image, 224, 224).data), expected)).toBe(0);
    }
  });
});

describe('preprocess (Keras caffe mode)', () => {
  it('swaps RGB to BGR and subtracts the BGR mean in float32, no scaling', () => {
    const image = { data: Uint8Array.from([255, 128, 0]), width: 1, height: 1 };
    const out = preprocess(image, { width: 1, height: 1 });
    // NumPy's `x[..., c] -= mean` on float32 rounds the mean to float32 first, then subtracts.
    const numpy = (v: number, mean: number): number => Math.fround(v - Math.fround(mean));
    expect(Array.from(out.data)).toEqual([numpy(0, 103.939), numpy(128, 116.779), numpy(255, 123.68)]);
    // ...which is not the same as rounding the exact difference: 11.221000671 vs 11.220999718.
    expect(out.data[1]).not.toBe(Math.fround(128 - 116.779));
  });

  it('resizes to the model input with the chosen mode and writes into a caller buffer', () => {
    const data = new Uint8Array(50 * 31 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 255;
    const into = new Float32Array(224 * 224 * 3);
    const out = preprocess({ data, width: 50, height: 31 }, { resize: 'bilinear' }, into);
    expect(out.data).toBe(into);
    expect([out.width, out.height]).toEqual([224, 224]);
    const nearest = preprocess({ data, width: 50, height: 31 });
    expect(Buffer.compare(Buffer.from(nearest.data.buffer), Buffer.from(into.buffer))).not.toBe(0);
    expect(() => preprocess({ data, width: 50, height: 31 }, {}, new Float32Array(10))).toThrow(/expected 150528/);
  });

  it('reads the mode and size from one options object, validated', () => {
    expect(DEFAULT_PREPROCESS_OPTIONS).toMatchObject({ width: 224, height: 224, resize: 'nearest', mode: 'caffe', centerCrop: false });
    expect(() => resolvePreprocessOptions({ mode: 'keras' as 'caffe' })).toThrow(/caffe, tf, torch, raw/);
    expect(() => resolvePreprocessOptions({ width: 0 })).toThrow(/width/);
    expect(() => resolvePreprocessOptions({ resize: 'bicubic' as 'nearest' })).toThrow(/resize/);
  });

  it('accepts a DecodedImage straight from decodeImage', async () => {
    const { decodeImage } = await import('../../../src/worker/image/decode.js');
    const decoded = await decodeImage(readFileSync(join(FIXTURES, 'parity', 'rgb-97x401.png')));
    expect(preprocess(decoded).data.length).toBe(224 * 224 * 3);
  });
});
