/**
 * Rendering: CAM upsampling against Pillow's float BILINEAR, colours against matplotlib itself
 * (both from scripts/reference/pil_render.py), blending arithmetic on known pixels, and encoded
 * outputs that decode back to the expected size, format and values.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { Colormap } from '../../../src/shared/explain-options.js';
import { COLORMAPS } from '../../../src/shared/explain-options.js';
import { applyColormap, colormapIndex, colormapTable } from '../../../src/worker/image/colormap.js';
import { InvalidInputError, isRetryable } from '../../../src/shared/errors.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';
import {
  asRenderError,
  blendCamFused,
  blendColormapped,
  blendRgb,
  DEFAULT_RENDER_OPTIONS,
  ENCODER_MAX_SIDE,
  heatmapSize,
  JPEG_OPTIMISE_CODING,
  OVERLAY_JS_MAX_PIXELS,
  overlayComposer,
  overlayPixels,
  overlayPixelsReference,
  overlaySize,
  renderHeatmap,
  level8,
  renderOverlay,
  RENDER_ERROR_CODE,
  resolveRenderOptions,
} from '../../../src/worker/image/render.js';
import { resizeGridBilinear } from '../../../src/worker/image/upsample.js';

interface RenderReference {
  pillow: string;
  matplotlib: string;
  grid: { width: number; height: number; values: number[] };
  upsample: Array<{ width: number; height: number; sum: number; min: number; max: number; samples: Array<{ x: number; y: number; v: number }> }>;
  colormap: { values: number[]; maps: Record<Colormap, Array<[number, number, number]>> };
}
const ref = JSON.parse(
  readFileSync(join(import.meta.dirname, '..', '..', 'fixtures', 'images', 'reference', 'render.json'), 'utf8'),
) as RenderReference;
const cam = { grid: Float32Array.from(ref.grid.values), width: ref.grid.width, height: ref.grid.height };

function solid(width: number, height: number, rgb: [number, number, number]): { data: Uint8Array; width: number; height: number } {
  const data = new Uint8Array(width * height * 3);
  for (let i = 0; i < data.length; i += 3) data.set(rgb, i);
  return { data, width, height };
}

describe(`CAM upsampling vs Pillow ${ref.pillow} BILINEAR on mode F`, () => {
  for (const r of ref.upsample) {
    it(`14x14 → ${r.width}x${r.height} (${r.width < 14 ? 'shrinking' : 'enlarging'})`, () => {
      const out = resizeGridBilinear(cam.grid, cam.width, cam.height, r.width, r.height);
      expect(out.length).toBe(r.width * r.height);
      for (const s of r.samples) expect(Math.abs(out[s.y * r.width + s.x] - s.v)).toBeLessThan(1e-6);
      let sum = 0;
      let min = Infinity;
      let max = -Infinity;
      for (const v of out) {
        sum += v;
        min = Math.min(min, v);
        max = Math.max(max, v);
      }
      expect(Math.abs(sum - r.sum) / r.sum).toBeLessThan(1e-6);
      expect(Math.abs(min - r.min)).toBeLessThan(1e-6);
      expect(Math.abs(max - r.max)).toBeLessThan(1e-6);
    });
  }

  it('is independent of the reference on a case computable by hand: 2x1 → 4x1', () => {
    // Half-pixel centres: output x samples source position (x + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25.
    const out = resizeGridBilinear(Float32Array.from([0, 1]), 2, 1, 4, 1);
    expect(Array.from(out)).toEqual([0, 0.25, 0.75, 1]);
  });

  it('returns a copy at identical size', () => {
    const out = resizeGridBilinear(cam.grid, 14, 14, 14, 14);
    expect(out).toEqual(cam.grid);
    expect(out).not.toBe(cam.grid);
  });
});

describe(`colormaps vs matplotlib ${ref.matplotlib}`, () => {
  for (const name of COLORMAPS) {
    it(`${name}: cmap(v, bytes=True) for values at and around the bin edges`, () => {
      expect(colormapTable(name).length).toBe(256 * 3);
      const colours = applyColormap(Float32Array.from(ref.colormap.values.map(Math.fround)), name);
      ref.colormap.values.forEach((v, i) => {
        // Float32 rounding can move a value sitting 1e-7 below a bin edge onto it; skip only those.
        if (Math.floor(Math.fround(v) * 256) !== Math.floor(v * 256)) return;
        expect([colours[3 * i], colours[3 * i + 1], colours[3 * i + 2]], `v=${v}`).toEqual(ref.colormap.maps[name][i]);
      });
    });
  }

  it('quantises like matplotlib and clamps out-of-range values and NaN', () => {
    expect([colormapIndex(0), colormapIndex(1 / 256), colormapIndex(0.5), colormapIndex(1)]).toEqual([0, 1, 128, 255]);
    expect([colormapIndex(-3), colormapIndex(7), colormapIndex(Number.NaN)]).toEqual([0, 255, 0]);
  });

  it('knows the endpoints of viridis and jet', () => {
    expect(Array.from(colormapTable('viridis').subarray(0, 3))).toEqual([68, 1, 84]);
    expect(Array.from(colormapTable('viridis').subarray(765))).toEqual([253, 231, 36]);
    expect(Array.from(colormapTable('jet').subarray(0, 3))).toEqual([0, 0, 127]);
  });
});

describe('alpha blending', () => {
  it('computes round((1 - a) * image + a * colour) per byte', () => {
    const image = Uint8Array.from([100, 10, 0, 255]);
    const colour = Uint8Array.from([200, 255, 255, 0]);
    expect(Array.from(blendRgb(image, colour, 0.5))).toEqual([150, 133, 128, 128]); // 132.5 and 127.5 round up
    expect(Array.from(blendRgb(image, colour, 0.25))).toEqual([125, 71, 64, 191]);
    expect(Array.from(blendRgb(image, colour, 0))).toEqual(Array.from(image));
    expect(Array.from(blendRgb(image, colour, 1))).toEqual(Array.from(colour));
  });

  it('fused colour-and-blend equals colour-then-blend (exactly for dyadic alphas, within 1 otherwise)', () => {
    const n = 5000;
    const image = new Uint8Array(n * 3);
    const values = new Float32Array(n);
    let seed = 12345;
    const rand = (): number => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
    for (let i = 0; i < image.length; i++) image[i] = Math.floor(rand() * 256);
    for (let i = 0; i < n; i++) values[i] = rand() * 1.2 - 0.1; // includes out-of-range values
    for (const name of COLORMAPS) {
      const colours = applyColormap(values, name);
      for (const alpha of [0, 0.25, 0.5, 0.75, 1]) {
        expect(Buffer.compare(Buffer.from(blendColormapped(image, values, colormapTable(name), alpha)), Buffer.from(blendRgb(image, colours, alpha)))).toBe(0);
      }
      const fused = blendColormapped(image, values, colormapTable(name), 0.3);
      const reference = blendRgb(image, colours, 0.3);
      for (let i = 0; i < fused.length; i++) expect(Math.abs(fused[i] - reference[i])).toBeLessThanOrEqual(1);
    }
  });

  it('blends a uniform CAM into a uniform image exactly (reference formula)', async () => {
    const image = solid(20, 10, [10, 20, 30]);
    const top = colormapTable('viridis').subarray(765); // value 1 → (253, 231, 36)
    const hot = await overlayPixelsReference(image, { grid: new Float32Array(4).fill(1), width: 2, height: 2 }, { alpha: 0.5 });
    expect([hot.width, hot.height]).toEqual([20, 10]);
    for (let i = 0; i < hot.data.length; i += 3) {
      expect([hot.data[i], hot.data[i + 1], hot.data[i + 2]]).toEqual([Math.round((10 + top[0]) / 2), Math.round((20 + top[1]) / 2), Math.round((30 + top[2]) / 2)]);
    }
    const cold = await overlayPixelsReference(image, { grid: new Float32Array(4), width: 2, height: 2 }, { alpha: 0.3, colormap: 'gray' });
    expect(Array.from(cold.data.subarray(0, 3))).toEqual([7, 14, 21]); // 0.7 * image + 0.3 * black
  });

  it('puts the CAM where Pillow puts it: sampled overlay pixels match the reference upsampling', async () => {
    const r = ref.upsample[0]; // 333x217
    const image = solid(r.width, r.height, [40, 80, 120]);
    const out = await overlayPixelsReference(image, cam, { colormap: 'inferno', alpha: 0.6 });
    const lut = colormapTable('inferno');
    for (const s of r.samples) {
      if (Math.abs(s.v * 256 - Math.round(s.v * 256)) < 1e-3) continue; // too close to a bin edge to be decisive
      const c = colormapIndex(s.v) * 3;
      const i = (s.y * r.width + s.x) * 3;
      const expected = [40, 80, 120].map((v, k) => Math.round(0.4 * v + 0.6 * lut[c + k]));
      expect(Array.from(out.data.subarray(i, i + 3)), `(${s.x},${s.y}) v=${s.v}`).toEqual(expected);
    }
  });
});

describe('the overlay composed in libvips', () => {
  // Tolerance: one level per channel against the reference formula. libvips composites with an
  // 8-bit alpha (0.5 is 128/255), which moves a value by at most half a level before rounding; the
  // CAM is upsampled in 16 bits, and values that could change colormap bin are recomputed exactly.
  const cases = [
    { w: 333, h: 217, alpha: 0.5, colormap: 'viridis', maxSide: undefined },
    { w: 97, h: 401, alpha: 0.6, colormap: 'inferno', maxSide: undefined },
    { w: 640, h: 480, alpha: 0.37, colormap: 'jet', maxSide: 300 },
    { w: 15, h: 14, alpha: 0.5, colormap: 'gray', maxSide: undefined },
    { w: 10, h: 7, alpha: 0.5, colormap: 'viridis', maxSide: undefined }, // a map larger than its image
  ] as const;
  for (const c of cases) {
    it(`is within one level of the reference: ${c.w}x${c.h}, alpha ${c.alpha}, ${c.colormap}${c.maxSide ? `, maxSide ${c.maxSide}` : ''}`, async () => {
      const rand = mulberry32(c.w * 7919 + c.h);
      const image = { data: Uint8Array.from({ length: c.w * c.h * 3 }, () => Math.floor(rand() * 256)), width: c.w, height: c.h };
      const opts = { alpha: c.alpha, colormap: c.colormap, maxSide: c.maxSide };
      const [expected, got] = await Promise.all([overlayPixelsReference(image, cam, opts), overlayPixels(image, cam, opts, 'libvips')]);
      expect([got.width, got.height]).toEqual([expected.width, expected.height]);
      let max = 0;
      for (let i = 0; i < got.data.length; i++) max = Math.max(max, Math.abs(got.data[i] - expected.data[i]));
      expect(max).toBeLessThanOrEqual(1);
    });
  }

  it('clamps the overlay to the encoder: a 65535x1 image gets a 65500x1 JPEG, a 20000x10 one a 16383-wide WebP', async () => {
    const flat = { grid: new Float32Array(196).fill(0.5), width: 14, height: 14 };
    const jpeg = await renderOverlay(solid(65_535, 1, [90, 90, 90]), flat, { format: 'jpeg' });
    expect([jpeg.width, jpeg.height]).toEqual([65_500, 1]);
    expect((await sharp(jpeg.data).metadata()).width).toBe(65_500);
    const webp = await renderOverlay(solid(20_000, 10, [90, 90, 90]), flat, { format: 'webp' });
    expect((await sharp(webp.data).metadata()).width).toBe(ENCODER_MAX_SIDE.webp);
  });

  it('turns a render failure into a permanent error with a code, never a retryable one', async () => {
    const failing = asRenderError('jpeg overlay', () => sharp(Buffer.from('not pixels')).jpeg().toBuffer());
    await expect(failing).rejects.toBeInstanceOf(InvalidInputError);
    await expect(failing).rejects.toMatchObject({ code: RENDER_ERROR_CODE, message: expect.stringMatching(/^cannot render the jpeg overlay: /) });
    expect(isRetryable(await failing.catch((e: unknown) => e))).toBe(false);
  });
});

describe('the overlay composed by the fused JS pass (small overlays)', () => {
  // Tolerance: none. The pass sums the vertical taps in doubles in the reference's order and rounds
  // to float32 as the reference stores, then blends with the reference's own tables: byte for byte.
  const cases = [
    { w: 333, h: 217, alpha: 0.5, colormap: 'viridis', maxSide: undefined },
    { w: 97, h: 401, alpha: 0.6, colormap: 'inferno', maxSide: undefined },
    { w: 640, h: 480, alpha: 0.37, colormap: 'jet', maxSide: 300 },
    { w: 320, h: 240, alpha: 0.5, colormap: 'jet', maxSide: undefined },
    { w: 15, h: 14, alpha: 0.5, colormap: 'gray', maxSide: undefined },
    { w: 14, h: 100, alpha: 0.5, colormap: 'viridis', maxSide: undefined }, // one axis at map size
    { w: 10, h: 7, alpha: 0.5, colormap: 'viridis', maxSide: undefined }, // a map larger than its image
    { w: 40, h: 3, alpha: 0.8, colormap: 'inferno', maxSide: undefined }, // shrinking rows: many taps
  ] as const;
  for (const c of cases) {
    it(`equals the reference exactly: ${c.w}x${c.h}, alpha ${c.alpha}, ${c.colormap}${c.maxSide ? `, maxSide ${c.maxSide}` : ''}`, async () => {
      const rand = mulberry32(c.w * 7919 + c.h);
      const image = { data: Uint8Array.from({ length: c.w * c.h * 3 }, () => Math.floor(rand() * 256)), width: c.w, height: c.h };
      const opts = { alpha: c.alpha, colormap: c.colormap as Colormap, maxSide: c.maxSide };
      const [expected, got] = await Promise.all([overlayPixelsReference(image, cam, opts), overlayPixels(image, cam, opts, 'js')]);
      expect([got.width, got.height]).toEqual([expected.width, expected.height]);
      expect(Buffer.compare(Buffer.from(got.data), Buffer.from(expected.data))).toBe(0);
    });
  }

  it('writes over the image only when the caller gives its pixels up (reuseImage), with the same overlay', async () => {
    const rand = mulberry32(321);
    const pixels = Uint8Array.from({ length: 320 * 240 * 3 }, () => Math.floor(rand() * 256));
    const kept = { data: pixels.slice(), width: 320, height: 240 };
    const given = { data: pixels.slice(), width: 320, height: 240 };
    const [a, b] = [await renderOverlay(kept, cam, { format: 'png' }), await renderOverlay(given, cam, { format: 'png', reuseImage: true })];
    expect(Buffer.compare(a.data, b.data)).toBe(0);
    expect(Buffer.compare(Buffer.from(kept.data), Buffer.from(pixels))).toBe(0); // untouched by default
    const overlay = await overlayPixels({ data: pixels.slice(), width: 320, height: 240 }, cam);
    expect(Buffer.compare(Buffer.from(given.data), Buffer.from(overlay.data))).toBe(0); // the overlay, in place
    expect(() => resolveRenderOptions({ reuseImage: 'yes' as unknown as boolean })).toThrow(/reuseImage/);
  });

  it('blends the same bytes whether the pixels sit on word boundaries or not, in place or not', () => {
    // The pass reads and writes four pixels as three 32-bit words where both buffers are aligned, a
    // byte at a time otherwise and at each row's ends: every alignment and row width gives the
    // same overlay.
    const table = colormapTable('viridis');
    for (const [w, h] of [[64, 9], [61, 7], [3, 5]] as const) {
      const rand = mulberry32(w * 31 + h);
      const pixels = Uint8Array.from({ length: w * h * 3 }, () => Math.floor(rand() * 256));
      const aligned = blendCamFused(pixels, cam, w, h, table, 0.5);
      for (const shift of [1, 2, 3]) {
        const shifted = new Uint8Array(pixels.length + 4).subarray(shift, shift + pixels.length);
        shifted.set(pixels);
        expect(Buffer.compare(Buffer.from(blendCamFused(shifted, cam, w, h, table, 0.5)), Buffer.from(aligned))).toBe(0);
        blendCamFused(shifted, cam, w, h, table, 0.5, shifted);
        expect(Buffer.compare(Buffer.from(shifted), Buffer.from(aligned))).toBe(0);
      }
      const inPlace = pixels.slice();
      blendCamFused(inPlace, cam, w, h, table, 0.5, inPlace);
      expect(Buffer.compare(Buffer.from(inPlace), Buffer.from(aligned))).toBe(0);
      // And the byte-at-a-time reference for the same map: the unfused colour-then-blend.
      const reference = blendColormapped(pixels, resizeGridBilinear(cam.grid, cam.width, cam.height, w, h), table, 0.5);
      expect(Buffer.compare(Buffer.from(aligned), Buffer.from(reference))).toBe(0);
    }
  });

  it('hits colormap bin edges exactly: a map of values on and next to every edge', async () => {
    // Every value k/256 and its float32 neighbours: sums on and next to each bin edge, where any
    // rounding other than the reference's changes the bin.
    const values: number[] = [];
    for (let k = 0; k <= 256; k++) {
      const v = Math.fround(k / 256);
      values.push(v, Math.min(1, Math.fround(v + 2 ** -24)), Math.max(0, Math.fround(v - 2 ** -24)));
    }
    const grid = Float32Array.from(values.slice(0, 28 * 27));
    const edges = { grid, width: 28, height: 27 };
    const image = solid(311, 173, [77, 140, 201]);
    for (const colormap of ['jet', 'gray'] as const) {
      const [expected, got] = await Promise.all([overlayPixelsReference(image, edges, { colormap }), overlayPixels(image, edges, { colormap }, 'js')]);
      expect(Buffer.compare(Buffer.from(got.data), Buffer.from(expected.data))).toBe(0);
    }
  });

  it('takes the reference path for a map with values outside [0,1] or NaN (the reference interpolates them unclamped)', async () => {
    const wild = { grid: Float32Array.from({ length: 196 }, (_, i) => (i % 17 === 0 ? Number.NaN : (i % 13) / 6 - 0.5)), width: 14, height: 14 };
    const image = solid(120, 90, [10, 200, 30]);
    const [expected, got] = await Promise.all([overlayPixelsReference(image, wild), overlayPixels(image, wild, {}, 'js')]);
    expect(Buffer.compare(Buffer.from(got.data), Buffer.from(expected.data))).toBe(0);
  });

  it('is chosen by one size rule: up to OVERLAY_JS_MAX_PIXELS in JS, larger in libvips', async () => {
    expect(overlayComposer(320, 240)).toBe('js');
    expect(overlayComposer(OVERLAY_JS_MAX_PIXELS, 1)).toBe('js');
    expect(overlayComposer(OVERLAY_JS_MAX_PIXELS + 1, 1)).toBe('libvips');
    expect(overlayComposer(1600, 1200)).toBe('js');
    expect(overlayComposer(2000, 1500)).toBe('libvips');
    // The default (no composer given) is the JS pass for a small overlay: exact, not just within a level.
    const image = solid(333, 217, [120, 60, 240]);
    const [expected, got] = await Promise.all([overlayPixelsReference(image, cam), overlayPixels(image, cam)]);
    expect(Buffer.compare(Buffer.from(got.data), Buffer.from(expected.data))).toBe(0);
  });
});

describe('encoded outputs', () => {
  it('caps the longer side at maxSide, keeping the aspect ratio, never enlarging', () => {
    expect(overlaySize(400, 200, 100)).toEqual({ width: 100, height: 50 });
    expect(overlaySize(217, 333, 100)).toEqual({ width: 65, height: 100 });
    expect(overlaySize(80, 60, 100)).toEqual({ width: 80, height: 60 });
    expect(overlaySize(3000, 1, 100)).toEqual({ width: 100, height: 1 });
    expect(overlaySize(80, 60)).toEqual({ width: 80, height: 60 });
  });

  for (const format of ['png', 'jpeg', 'webp'] as const) {
    it(`${format} overlay decodes to the expected size and format`, async () => {
      const image = solid(333, 217, [200, 200, 200]);
      const full = await renderOverlay(image, cam, { format });
      const meta = await sharp(full.data).metadata();
      expect([meta.format, meta.width, meta.height, meta.channels]).toEqual([format, 333, 217, 3]);
      expect([full.width, full.height]).toEqual([333, 217]);
      const capped = await renderOverlay(image, cam, { format, maxSide: 128 });
      const cappedMeta = await sharp(capped.data).metadata();
      expect([cappedMeta.width, cappedMeta.height]).toEqual([128, 83]);
      expect(capped.mimeType).toBe(`image/${format}`);
    });
  }

  it('JPEG overlay decodes to the same pixels as the same encode with optimised Huffman tables', async () => {
    const rand = mulberry32(4242);
    const image = { data: Uint8Array.from({ length: 160 * 120 * 3 }, () => Math.floor(rand() * 256)), width: 160, height: 120 };
    const encoded = await renderOverlay(image, cam, { format: 'jpeg' });
    const blended = await overlayPixels(image, cam, { format: 'jpeg' });
    const optimised = await sharp(blended.data, { raw: { width: 160, height: 120, channels: 3 } }).jpeg({ quality: DEFAULT_RENDER_OPTIONS.jpegQuality, optimiseCoding: true }).toBuffer();
    expect(JPEG_OPTIMISE_CODING).toBe(false);
    expect(encoded.data.length).toBeGreaterThan(optimised.length); // standard tables: the cheaper, larger encode
    const [a, b] = await Promise.all([sharp(encoded.data).raw().toBuffer(), sharp(optimised).raw().toBuffer()]);
    expect(Buffer.compare(a, b)).toBe(0);
  });

  it('PNG overlay round-trips the blended pixels losslessly', async () => {
    const image = solid(50, 30, [0, 128, 255]);
    const expected = await overlayPixels(image, cam, { format: 'png' });
    const encoded = await renderOverlay(image, cam, { format: 'png' });
    const decoded = await sharp(encoded.data).raw().toBuffer();
    expect(Buffer.compare(decoded, Buffer.from(expected.data))).toBe(0);
  });

  it('heatmap is an 8-bit gray PNG at CAM resolution with round(255 * v)', async () => {
    const heat = await renderHeatmap(cam);
    const meta = await sharp(heat.data).metadata();
    expect([meta.format, meta.width, meta.height, meta.channels, meta.space, meta.depth]).toEqual(['png', 14, 14, 1, 'b-w', 'uchar']);
    // sharp converts to sRGB on output unless told otherwise.
    const data = await sharp(heat.data).toColourspace('b-w').raw().toBuffer();
    expect(data.length).toBe(14 * 14);
    for (let i = 0; i < data.length; i++) expect(data[i]).toBe(Math.round(ref.grid.values[i] * 255));
  });

  it("heatmap at an image's aspect ratio is the bilinear upsample of the map (the overlay's), model-side capped", async () => {
    expect(heatmapSize(333, 217, 224)).toEqual({ width: 224, height: 146 });
    expect(heatmapSize(100, 60, 224)).toEqual({ width: 100, height: 60 }); // never larger than the image
    expect(heatmapSize(65_535, 1, 224)).toEqual({ width: 224, height: 1 });
    const heat = await renderHeatmap(cam, { size: { width: 42, height: 28 } });
    const data = await sharp(heat.data).toColourspace('b-w').raw().toBuffer();
    expect([heat.width, heat.height, data.length]).toEqual([42, 28, 42 * 28]);
    const up = resizeGridBilinear(cam.grid, 14, 14, 42, 28);
    for (let i = 0; i < data.length; i++) expect(data[i]).toBe(Math.round(Math.min(Math.max(up[i], 0), 1) * 255));
  });

  it('heatmap levels are those of the reference upsample at every shape: both axes, one axis, shrinking, out-of-range values', async () => {
    const rand = mulberry32(77);
    const wild = { grid: Float32Array.from({ length: 14 * 14 }, () => rand() * 1.4 - 0.2), width: 14, height: 14 };
    for (const [w, h] of [[224, 168], [168, 224], [224, 14], [14, 200], [10, 7], [3, 40], [1, 1]] as const) {
      const heat = await renderHeatmap(wild, { size: { width: w, height: h } });
      const data = await sharp(heat.data).toColourspace('b-w').raw().toBuffer();
      const up = resizeGridBilinear(wild.grid, 14, 14, w, h);
      const expected = Buffer.from(Array.from(up, (v) => (v > 0 ? Math.round(Math.min(v, 1) * 255) : 0)));
      expect([w, h, Buffer.compare(data, expected)]).toEqual([w, h, 0]);
    }
  });

  it('level8 rounds float32 values as Math.round(255 * v) does, at every rounding edge', () => {
    const reference = (v: number): number => (v > 0 ? Math.round(Math.min(v, 1) * 255) : 0);
    // Float32 neighbours of every k/255 and (k + 0.5)/255, where a rounding other than Math.round's
    // would change the level, plus random float32 values and the specials.
    const bits = new Uint32Array(1);
    const asFloat = new Float32Array(bits.buffer);
    const checked: number[] = [];
    for (let k = 0; k <= 255; k++) {
      for (const centre of [k / 255, (k + 0.5) / 255]) {
        asFloat[0] = centre;
        const at = bits[0];
        for (let d = -64; d <= 64; d++) {
          bits[0] = at + d;
          checked.push(asFloat[0]);
        }
      }
    }
    const rand = mulberry32(255);
    for (let i = 0; i < 100_000; i++) checked.push(Math.fround(rand()));
    checked.push(0, -0, 1, Math.fround(1 + 2 ** -23), -1, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 2 ** -149);
    const wrong = checked.filter((v) => level8(v) !== reference(v));
    expect(wrong).toEqual([]);
    expect(checked.length).toBeGreaterThan(165_000);
  });

  it('never writes NaN or out-of-range heatmap pixels', async () => {
    const heat = await renderHeatmap({ grid: Float32Array.from([Number.NaN, -1, 0.5, 2]), width: 2, height: 2 });
    expect(Array.from(await sharp(heat.data).toColourspace('b-w').raw().toBuffer())).toEqual([0, 0, 128, 255]);
  });

  it('validates options with messages naming the field', () => {
    expect(() => resolveRenderOptions({ alpha: 1.5 })).toThrow(/alpha/);
    expect(() => resolveRenderOptions({ maxSide: 0 })).toThrow(/maxSide/);
    expect(() => resolveRenderOptions({ colormap: 'rainbow' as Colormap })).toThrow(/unknown colormap rainbow/);
    expect(() => resolveRenderOptions({ jpegQuality: 0 })).toThrow(/jpegQuality/);
  });
});
