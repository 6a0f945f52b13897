/**
 * CAM rendering: the overlay (CAM upsampled onto the image, colour-mapped and alpha-blended) and
 * the raw heatmap (the CAM as an 8-bit gray PNG).
 *
 * The seed adds `0.5 * heatmap + image` and lets values saturate; we blend properly,
 * `out = (1 - alpha) * image + alpha * colour`, so the overlay keeps the image's brightness and
 * alpha means what it says.
 *
 * Two composers, chosen by output size in one place (`overlayComposer`). Up to
 * `OVERLAY_JS_MAX_PIXELS` the overlay is one fused pass in JS (`blendCamFused`: the vertical
 * upsample in the reference's own arithmetic, integer colormap and blend tables), equal to the
 * reference byte for byte.
 * Larger overlays are composed inside libvips (sharp's threadpool, off the event loop): the image is
 * resized there, the CAM is upsampled there (16-bit, bilinear with Pillow's pixel centres and
 * clamped edges), and the colour layer is alpha-composited there, fused with the encoder in one
 * pipeline; JavaScript only looks each upsampled value up in the colormap (one table read per
 * pixel). `overlayPixelsReference` keeps the exact formula in doubles (Pillow-checked upsample,
 * fused blend); the libvips overlay stays within one level of it (test/unit/image/render.test.ts):
 * libvips' alpha is 8-bit (0.5 becomes 128/255) and the map is 16-bit before the colormap.
 */
import sharp, { type Sharp } from 'sharp';
import { InvalidInputError } from '../../shared/errors.js';
import type { Colormap, OverlayFormat } from '../../shared/explain-options.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../shared/explain-options.js';
import { colormapIndex, colormapTable } from './colormap.js';
import { encodeGrayPng } from './png-gray.js';
import type { RgbImage } from './resize.js';
import { bilinearTaps } from './resize.js';
import { resizeGridBilinear } from './upsample.js';

/** A CAM grid in [0,1], row-major. `CamMap` from the engine is one. */
export interface CamGrid {
  grid: Float32Array;
  width: number;
  height: number;
}

export interface RenderOptions {
  /** Default `viridis`, as the seed. */
  colormap: Colormap;
  /** Heatmap opacity, 0..1. Default 0.5. */
  alpha: number;
  /** Overlay encoding. Default `jpeg`. */
  format: OverlayFormat;
  /** Cap on the overlay's longer side; the image is shrunk to fit. Default none (original size). */
  maxSide: number | undefined;
  /** JPEG quality 1..100. Default 90. */
  jpegQuality: number;
  /** WebP quality 1..100. Default 90. */
  webpQuality: number;
  /** PNG zlib level 0..9. Default 6: level 9 costs about twice the time for a few percent. */
  pngCompressionLevel: number;
  /**
   * The caller is done with the image's pixels: the fused JS pass may write the overlay over them
   * instead of into a new overlay-size buffer (one allocation less per image: 2.4 MB at 1024x768,
   * external memory that V8 answers with full collections). Default false.
   */
  reuseImage: boolean;
}

export const DEFAULT_RENDER_OPTIONS: Readonly<RenderOptions> = Object.freeze({
  colormap: DEFAULT_EXPLAIN_OPTIONS.colormap,
  alpha: DEFAULT_EXPLAIN_OPTIONS.alpha,
  format: DEFAULT_EXPLAIN_OPTIONS.overlayFormat,
  maxSide: undefined,
  jpegQuality: 90,
  webpQuality: 90,
  pngCompressionLevel: 6,
  reuseImage: false,
});

export interface EncodedImage {
  data: Buffer;
  format: OverlayFormat;
  mimeType: string;
  /** File extension without the dot: `jpg`, `png` or `webp`. */
  extension: string;
  width: number;
  height: number;
}

const MIME: Record<OverlayFormat, { mimeType: string; extension: string }> = {
  jpeg: { mimeType: 'image/jpeg', extension: 'jpg' },
  png: { mimeType: 'image/png', extension: 'png' },
  webp: { mimeType: 'image/webp', extension: 'webp' },
};

/**
 * Largest side each encoder writes (libjpeg: 65500; WebP: 16383; libpng's default user limit: one
 * million). The overlay is shrunk to fit, so a 65535x1 PNG gets a 65500x1 JPEG overlay instead of a
 * failure.
 */
export const ENCODER_MAX_SIDE: Readonly<Record<OverlayFormat, number>> = Object.freeze({ jpeg: 65_500, webp: 16_383, png: 1_000_000 });

/** Code of the permanent error raised when an overlay or heatmap cannot be rendered. */
export const RENDER_ERROR_CODE = 'RENDER_FAILED';

/**
 * Output size for an image of `width`x`height` under a `maxSide` cap and the encoder's own limit
 * (aspect kept, never enlarged).
 */
export function overlaySize(width: number, height: number, maxSide?: number, format?: OverlayFormat): { width: number; height: number } {
  const longer = Math.max(width, height);
  if (format !== undefined) maxSide = Math.min(maxSide ?? Infinity, ENCODER_MAX_SIDE[format]);
  if (maxSide === undefined || longer <= maxSide) return { width, height };
  const scale = maxSide / longer;
  return {
    width: width >= height ? maxSide : Math.max(1, Math.round(width * scale)),
    height: height > width ? maxSide : Math.max(1, Math.round(height * scale)),
  };
}

/**
 * `round((1 - alpha) * image + alpha * colour)` per byte, in doubles: the reference formula.
 * The overlay itself uses `blendColormapped`, which fuses colouring and blending.
 */
export function blendRgb(image: Uint8Array, colour: Uint8Array, alpha: number): Uint8Array {
  if (image.length !== colour.length) throw new RangeError(`blend: image has ${image.length} bytes, colour layer ${colour.length}`);
  const out = new Uint8Array(image.length);
  for (let i = 0; i < image.length; i++) out[i] = Math.round((1 - alpha) * image[i] + alpha * colour[i]);
  return out;
}

/** Fixed-point fraction bits for blending; 16 keeps every sum below 2^31. */
const BLEND_BITS = 16;
const BLEND_ONE = 1 << BLEND_BITS;

/**
 * Colour-map `values` (one per pixel) and blend over `image` in one pass, without an intermediate
 * colour layer: `round((1 - alpha) * image + alpha * lut[index(v)])` with both products rounded to
 * 16 fractional bits in 256/768-entry tables. Equals `blendRgb` whenever alpha is a multiple of
 * 1/256 (0.5, 0.25, ...); otherwise it may differ by one level exactly at .5 ties, where it rounds
 * the true value up while doubles can land either side.
 */
export function blendColormapped(image: Uint8Array, values: Float32Array, table: Uint8Array, alpha: number): Uint8Array {
  if (image.length !== values.length * 3) throw new RangeError(`blend: image has ${image.length} bytes, ${values.length} CAM values need ${values.length * 3}`);
  const lut = blendTable(table, alpha);
  const out = new Uint8Array(image.length);
  for (let p = 0, o = 0; p < values.length; p++, o += 3) {
    const t = colormapIndex(values[p]) * 768;
    blendPixel(out, image, o, lut, t);
  }
  return out;
}

/**
 * The blend of every (colormap entry, image byte) pair, `(keep[b] + add[j] + half) >> BLEND_BITS`
 * with `keep[b] = round((1 - alpha) * b * 2^16)` and `add[j] = round(alpha * table[j] * 2^16)`, at
 * `(j << 8) | b` for j = bin * 3 + channel: one load per output byte instead of two loads, an add
 * and a shift (about 20% less CPU for the overlay pass, docs/benchmarks.md). 192 KiB per colormap
 * and alpha, built once (about 0.3 ms) and kept: a run uses one of each.
 */
function blendTable(table: Uint8Array, alpha: number): Uint8Array {
  let byAlpha = BLEND_TABLES.get(table);
  if (!byAlpha) BLEND_TABLES.set(table, (byAlpha = new Map()));
  let lut = byAlpha.get(alpha);
  if (lut) return lut;
  const keep = new Int32Array(256);
  for (let v = 0; v < 256; v++) keep[v] = Math.round((1 - alpha) * v * BLEND_ONE);
  const half = BLEND_ONE >> 1;
  lut = new Uint8Array(table.length << 8);
  for (let j = 0; j < table.length; j++) {
    const add = Math.round(alpha * table[j] * BLEND_ONE) + half;
    for (let b = 0; b < 256; b++) lut[(j << 8) | b] = (keep[b] + add) >> BLEND_BITS;
  }
  // Alphas come from flags and options, a handful per process; bound the map all the same.
  if (byAlpha.size >= 8) byAlpha.clear();
  byAlpha.set(alpha, lut);
  return lut;
}

/**
 * `colormapIndex(v) * 768`, the bin's first entry in the blend table, for v already known to be
 * within [0,1] (no NaN): floor is truncation there, and the fused pass's loops skip the NaN test
 * (about 5% of the pass).
 */
function tableRowOf(v: number): number {
  return (v > 0 ? (v >= 1 ? 255 : (v * 256) | 0) : 0) * 768;
}

/** One RGB pixel through the blend table: `t` is the colormap bin times 768 (see `blendTable`). */
function blendPixel(out: Uint8Array, base: Uint8Array, o: number, lut: Uint8Array, t: number): void {
  out[o] = lut[t + base[o]];
  out[o + 1] = lut[t + 256 + base[o + 1]];
  out[o + 2] = lut[t + 512 + base[o + 2]];
}

const BLEND_TABLES = new WeakMap<Uint8Array, Map<number, Uint8Array>>();

/** Whether this machine stores the low byte of a word first: the word loop (`blendRow`) assumes it. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** 32-bit views of the pass's pixels, when both are word-aligned (else the byte loop does all). */
interface WordViews {
  base: Uint32Array;
  out: Uint32Array;
}

function wordViews(base: Uint8Array, out: Uint8Array): WordViews | null {
  if (!LITTLE_ENDIAN || base.byteOffset % 4 !== 0 || out.byteOffset % 4 !== 0) return null;
  return { base: new Uint32Array(base.buffer, base.byteOffset, base.length >> 2), out: new Uint32Array(out.buffer, out.byteOffset, out.length >> 2) };
}

/**
 * Blend one output row whose table rows are `rows[0 .. width-1]` (`tableRowOf` of each pixel's map
 * value), starting at byte `o` (pixel `o / 3`). Four pixels are twelve bytes, three whole words:
 * where a group of four starts on a word (pixel index a multiple of 4), it is read as three words
 * and written as three, the twelve table reads unchanged (about a quarter less CPU than a byte at
 * a time, docs/benchmarks.md); the row's ends go a byte at a time. `out` may be `base`: every word
 * is read before it is written, at the same index.
 */
function blendRow(base: Uint8Array, out: Uint8Array, o: number, rows: Int32Array, width: number, lut: Uint8Array, words: WordViews | null): number {
  let x = 0;
  if (words !== null) {
    const p = o / 3;
    const head = Math.min(width, (4 - (p & 3)) & 3);
    for (; x < head; x++, o += 3) blendPixel(out, base, o, lut, rows[x]);
    const b32 = words.base;
    const o32 = words.out;
    for (let k = o >> 2; x + 4 <= width; x += 4, k += 3, o += 12) {
      const ta = rows[x];
      const tb = rows[x + 1];
      const tc = rows[x + 2];
      const td = rows[x + 3];
      const a = b32[k];
      const b = b32[k + 1];
      const c = b32[k + 2];
      o32[k] = lut[ta + (a & 255)] | (lut[ta + 256 + ((a >>> 8) & 255)] << 8) | (lut[ta + 512 + ((a >>> 16) & 255)] << 16) | (lut[tb + (a >>> 24)] << 24);
      o32[k + 1] = lut[tb + 256 + (b & 255)] | (lut[tb + 512 + ((b >>> 8) & 255)] << 8) | (lut[tc + ((b >>> 16) & 255)] << 16) | (lut[tc + 256 + (b >>> 24)] << 24);
      o32[k + 2] = lut[tc + 512 + (c & 255)] | (lut[td + ((c >>> 8) & 255)] << 8) | (lut[td + 256 + ((c >>> 16) & 255)] << 16) | (lut[td + 512 + (c >>> 24)] << 24);
    }
  }
  for (; x < width; x++, o += 3) blendPixel(out, base, o, lut, rows[x]);
  return o;
}

/**
 * Upsample the CAM and colour-map and blend it over `base` (already at `width`x`height`) in one pass,
 * without a full-size float copy of the map: the CAM is resized horizontally first (Pillow's order,
 * float32, only `cam.height` rows); each output row is then the weighted sum of two or three of those
 * rows, in doubles and in the reference's tap order, rounded to float32 as its store does, so the
 * colormap bin (matplotlib's `floor(v*256)`) and the blend (`blendTable`, shared with
 * `blendColormapped`) equal `overlayPixelsReference` byte for byte by construction. An earlier
 * fixed-point version of this pass had to recompute the sums near a bin edge exactly (about 6% of
 * the pixels) and cost 5-30% more CPU (docs/benchmarks.md). A CAM with values outside [0,1] (or
 * NaN), which the reference interpolates unclamped, takes the reference path itself.
 *
 * Each row is two loops: the map values to table rows (floating point), then the bytes (`blendRow`);
 * apart, each loop stays simple enough for V8 to keep in registers (about 13% less CPU than one loop
 * doing both).
 */
export function blendCamFused(base: Uint8Array, cam: CamGrid, width: number, height: number, table: Uint8Array, alpha: number, into?: Uint8Array): Uint8Array {
  if (base.length !== width * height * 3) throw new RangeError(`blend: image has ${base.length} bytes, ${width}x${height} needs ${width * height * 3}`);
  for (let i = 0; i < cam.grid.length; i++) {
    const v = cam.grid[i];
    if (!(v >= 0 && v <= 1)) return blendColormapped(base, resizeGridBilinear(cam.grid, cam.width, cam.height, width, height), table, alpha);
  }
  // Horizontal pass (small): cam.height rows of `width` values, exactly the reference's intermediate.
  const rows = cam.width === width ? cam.grid : resizeGridBilinear(cam.grid, cam.width, cam.height, width, cam.height);
  const taps = cam.height === height ? null : bilinearTaps(cam.height, height);
  const lut = blendTable(table, alpha);
  // `into` may be `base` itself: every pixel is read before it is written, at the same index.
  const out = into ?? new Uint8Array(base.length);
  if (out.length !== base.length) throw new RangeError(`blend: destination has ${out.length} bytes, expected ${base.length}`);
  const words = wordViews(base, out);
  const bins = new Int32Array(width);
  for (let y = 0, o = 0; y < height; y++) {
    // This row's taps: rows `first .. first + n - 1` of the intermediate, weights summing to 1.
    let first = y;
    let n = 1;
    let w0 = 1;
    let w1 = 0;
    let w2 = 0;
    if (taps !== null) {
      first = taps.start[y];
      n = taps.count[y];
      if (n > 3) {
        // Shrinking by more than 2 (a map larger than a tiny overlay): the general sum, for this row.
        binsExact(bins, rows, first, n, taps.weights, y * taps.ksize, width);
        o = blendRow(base, out, o, bins, width, lut, words);
        continue;
      }
      const wb = y * taps.ksize;
      w0 = taps.weights[wb];
      if (n > 1) w1 = taps.weights[wb + 1];
      if (n > 2) w2 = taps.weights[wb + 2];
    }
    const r0 = first * width;
    if (n < 3) {
      // One or two taps (every row of an enlarged map): the second reads row `first` with weight 0
      // when there is one, and adding +0 to a non-negative sum changes no bit.
      const r1 = n > 1 ? r0 + width : r0;
      for (let x = 0; x < width; x++) {
        let e = rows[r0 + x] * w0;
        e += rows[r1 + x] * w1;
        bins[x] = tableRowOf(Math.fround(e));
      }
    } else {
      const r1 = r0 + width;
      const r2 = r1 + width;
      for (let x = 0; x < width; x++) {
        let e = rows[r0 + x] * w0;
        e += rows[r1 + x] * w1;
        e += rows[r2 + x] * w2;
        bins[x] = tableRowOf(Math.fround(e));
      }
    }
    o = blendRow(base, out, o, bins, width, lut, words);
  }
  return out;
}

/** One row's table rows computed exactly as the reference sums them (many vertical taps). */
function binsExact(bins: Int32Array, rows: Float32Array, first: number, n: number, weights: Float64Array, wBase: number, width: number): void {
  for (let x = 0; x < width; x++) {
    let e = 0;
    for (let t = 0; t < n; t++) e += rows[(first + t) * width + x] * weights[wBase + t];
    bins[x] = colormapIndex(Math.fround(e)) * 768;
  }
}

/**
 * The reference overlay, in doubles: the image (shrunk to `maxSide` by libvips if needed), blended
 * with the colour-mapped CAM upsampled to the same size by `resizeGridBilinear` (Pillow-exact).
 * Tests and benchmarks compare the libvips overlay with it.
 */
export async function overlayPixelsReference(image: RgbImage, cam: CamGrid, options: Partial<RenderOptions> = {}): Promise<RgbImage> {
  const opts = resolveRenderOptions(options);
  checkImage(image);
  checkCam(cam);
  const size = overlaySize(image.width, image.height, opts.maxSide, opts.format);
  let base = image.data;
  if (size.width !== image.width || size.height !== image.height) {
    base = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
      .resize(size.width, size.height, { fit: 'fill' })
      .raw()
      .toBuffer();
  }
  const upsampled = resizeGridBilinear(cam.grid, cam.width, cam.height, size.width, size.height);
  return { data: blendColormapped(base, upsampled, colormapTable(opts.colormap), opts.alpha), width: size.width, height: size.height };
}

/**
 * How an overlay is composed: `js` (the fused pass, `blendCamFused`, on the event loop) or
 * `libvips` (upsample and composite on sharp's threadpool). `overlayComposer` picks one by size.
 */
export type OverlayComposer = 'js' | 'libvips';

/**
 * Overlays up to this many pixels are composed by the fused JS pass, larger ones in libvips. Measured
 * by `npm run bench:render` (docs/benchmarks.md): from 320x240 to 1600x1200 the JS pass costs about
 * half the CPU of the libvips composition and no more event-loop time. Above 2 MP (unmeasured
 * sizes) libvips stays: one synchronous JS pass grows with the image and would hold the event loop
 * (lock renewals, S3 sockets) in one piece, while libvips' heavy steps run on the threadpool.
 */
export const OVERLAY_JS_MAX_PIXELS = 2_000_000;

/** The one rule choosing the overlay's composer for an output of `width`x`height`. */
export function overlayComposer(width: number, height: number): OverlayComposer {
  return width * height <= OVERLAY_JS_MAX_PIXELS ? 'js' : 'libvips';
}

/**
 * The overlay's raw RGB pixels, composed as `renderOverlay` composes them (by `overlayComposer`, or
 * by `composer` when given: tests and benchmarks compare both).
 */
export async function overlayPixels(image: RgbImage, cam: CamGrid, options: Partial<RenderOptions> = {}, composer?: OverlayComposer): Promise<RgbImage> {
  const opts = resolveRenderOptions(options);
  const composed = await composeOverlay(image, cam, opts, composer);
  if ('pixels' in composed) return composed.pixels;
  const data = await composed.pipeline.removeAlpha().raw().toBuffer();
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: composed.size.width, height: composed.size.height };
}

/**
 * JPEG overlays keep libjpeg's standard Huffman tables instead of computing optimal ones (sharp's
 * default): that extra pass changes only the entropy coding, never the quantised coefficients, so
 * the decoded pixels are identical (tested), for 15-19% more bytes and about half the encode CPU
 * (1024x768: 7.0 → 3.4 ms; 320x240: 1.28 → 0.93 ms; docs/benchmarks.md).
 */
export const JPEG_OPTIMISE_CODING = false;

/**
 * Overlay encoded as PNG, JPEG or WebP. Rendering is deterministic, so a failure here (an encoder
 * limit, a corrupt buffer) is permanent: an `InvalidInputError` with code `RENDER_FAILED`.
 */
export async function renderOverlay(image: RgbImage, cam: CamGrid, options: Partial<RenderOptions> = {}, composer?: OverlayComposer): Promise<EncodedImage> {
  const opts = resolveRenderOptions(options);
  return asRenderError(`${opts.format} overlay`, async () => {
    const composed = await composeOverlay(image, cam, opts, composer);
    const { size } = composed;
    const flat =
      'pixels' in composed ? sharp(composed.pixels.data, { raw: { width: size.width, height: size.height, channels: 3 } }) : composed.pipeline.removeAlpha();
    const encoded =
      opts.format === 'png'
        ? flat.png({ compressionLevel: opts.pngCompressionLevel })
        : opts.format === 'webp'
          ? flat.webp({ quality: opts.webpQuality })
          : flat.jpeg({ quality: opts.jpegQuality, optimiseCoding: JPEG_OPTIMISE_CODING });
    return { data: await encoded.toBuffer(), format: opts.format, ...MIME[opts.format], width: size.width, height: size.height };
  });
}

type ComposedOverlay = { pixels: RgbImage; size: { width: number; height: number } } | { pipeline: Sharp; size: { width: number; height: number } };

async function composeOverlay(image: RgbImage, cam: CamGrid, opts: RenderOptions, composer?: OverlayComposer): Promise<ComposedOverlay> {
  checkImage(image);
  checkCam(cam);
  const size = overlaySize(image.width, image.height, opts.maxSide, opts.format);
  if ((composer ?? overlayComposer(size.width, size.height)) === 'libvips') return overlayPipeline(image, cam, opts, size);
  const base = await baseImage(image, size);
  // A resized base is this function's own copy; the caller's pixels only when it says so.
  const reuse = base !== image.data || opts.reuseImage;
  const data = blendCamFused(base, cam, size.width, size.height, colormapTable(opts.colormap), opts.alpha, reuse ? base : undefined);
  return { pixels: { data, width: size.width, height: size.height }, size };
}

/** Run a render step; any failure becomes a permanent, named error. */
export async function asRenderError<T>(what: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof InvalidInputError || err instanceof RangeError) throw err;
    const message = (err instanceof Error ? err.message : String(err)).trim().replace(/\s*\n\s*/g, ' | ');
    throw new InvalidInputError(RENDER_ERROR_CODE, `cannot render the ${what}: ${message}`, { cause: err });
  }
}

/** The image (resized if needed) with the colour layer composited over it, ready to encode. */
async function overlayPipeline(
  image: RgbImage,
  cam: CamGrid,
  opts: RenderOptions,
  size: { width: number; height: number },
): Promise<{ pipeline: Sharp; size: { width: number; height: number } }> {
  const [layer, base] = await Promise.all([colourLayer(cam, size.width, size.height, opts.colormap, opts.alpha), baseImage(image, size)]);
  const pipeline = sharp(base, { raw: { width: size.width, height: size.height, channels: 3 } }).composite([
    { input: layer, raw: { width: size.width, height: size.height, channels: 4 }, blend: 'over' },
  ]);
  return { pipeline, size };
}

/**
 * The image at the overlay's size, as 8-bit RGB. Display only: libvips' lanczos3 looks better than,
 * and is several times faster than, a JS resize. Rounded to 8 bits before compositing (a separate
 * pipeline), as the reference does, so the two stay within one level.
 */
async function baseImage(image: RgbImage, size: { width: number; height: number }): Promise<Uint8Array> {
  if (size.width === image.width && size.height === image.height) return image.data;
  return sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } }).resize(size.width, size.height, { fit: 'fill' }).raw().toBuffer();
}

/**
 * The colour-mapped CAM at `width`x`height` as RGBA with a constant alpha: upsampled in libvips
 * (16-bit), then one colormap lookup per pixel. libvips interpolates with 12-bit weights, so a
 * 16-bit value can be off by up to `UPSAMPLE_ERROR_LEVELS`; where that could move it into the
 * neighbouring colormap bin, the value is recomputed exactly (Pillow's bilinear, in doubles), so the
 * colour is the reference colour. About a tenth of the pixels take that path, a handful of
 * multiply-adds each.
 */
async function colourLayer(cam: CamGrid, width: number, height: number, colormap: Colormap, alpha: number): Promise<Buffer> {
  const { values, stride, exact } = await upsampleCam16(cam, width, height);
  const lut = colormapLut16(colormap);
  const table = colormapTable(colormap);
  const a = Math.round(alpha * 255);
  const out = Buffer.allocUnsafe(width * height * 4);
  const taps = exact ? null : { x: bilinearTaps1d(cam.width, width), y: bilinearTaps1d(cam.height, height) };
  for (let y = 0, o = 0; y < height; y++) {
    for (let x = 0, i = y * stride; x < width; x++, i++, o += 4) {
      const u = values[i];
      let t: number;
      if (taps !== null && NEAR_BIN_EDGE[u] === 1) {
        t = colormapIndex(exactValue(cam, taps.x, taps.y, x, y)) * 3;
        out[o] = table[t];
        out[o + 1] = table[t + 1];
        out[o + 2] = table[t + 2];
      } else {
        t = u * 3;
        out[o] = lut[t];
        out[o + 1] = lut[t + 1];
        out[o + 2] = lut[t + 2];
      }
      out[o + 3] = a;
    }
  }
  return out;
}

/** Largest error of libvips' 16-bit bilinear (12-bit weights) on values in [0, 65535], plus rounding. */
const UPSAMPLE_ERROR_LEVELS = 64;

/** 1 for 16-bit levels within `UPSAMPLE_ERROR_LEVELS` of a colormap bin edge (`floor(v * 256)` changes). */
const NEAR_BIN_EDGE: Uint8Array = (() => {
  const near = new Uint8Array(65536);
  for (let k = 1; k < 256; k++) {
    const edge = (k / 256) * 65535;
    for (let u = Math.max(0, Math.floor(edge - UPSAMPLE_ERROR_LEVELS)); u <= Math.min(65535, Math.ceil(edge + UPSAMPLE_ERROR_LEVELS)); u++) near[u] = 1;
  }
  near[65535] = 1; // 1.0 is the last bin's own edge
  return near;
})();

interface Taps1d {
  i0: Int32Array;
  i1: Int32Array;
  w1: Float64Array;
}

/** Pillow's bilinear for enlarging, one axis: `x_in = (x + 0.5) / scale - 0.5`, edges clamped. */
function bilinearTaps1d(inSize: number, outSize: number): Taps1d {
  const i0 = new Int32Array(outSize);
  const i1 = new Int32Array(outSize);
  const w1 = new Float64Array(outSize);
  const scale = outSize / inSize;
  for (let x = 0; x < outSize; x++) {
    const pos = Math.min(Math.max((x + 0.5) / scale - 0.5, 0), inSize - 1);
    const f = Math.floor(pos);
    i0[x] = f;
    i1[x] = Math.min(f + 1, inSize - 1);
    w1[x] = pos - f;
  }
  return { i0, i1, w1 };
}

function exactValue(cam: CamGrid, tx: Taps1d, ty: Taps1d, x: number, y: number): number {
  const g = cam.grid;
  const w = cam.width;
  const r0 = ty.i0[y] * w;
  const r1 = ty.i1[y] * w;
  const a0 = tx.i0[x];
  const a1 = tx.i1[x];
  const wx = tx.w1[x];
  const top = clamp01(g[r0 + a0]) * (1 - wx) + clamp01(g[r0 + a1]) * wx;
  const bottom = clamp01(g[r1 + a0]) * (1 - wx) + clamp01(g[r1 + a1]) * wx;
  return top * (1 - ty.w1[y]) + bottom * ty.w1[y];
}

function clamp01(v: number): number {
  return v > 0 ? Math.min(v, 1) : 0;
}

/** Values in [0,1] as 16-bit levels (NaN and negatives 0). */
function toLevels16(values: ArrayLike<number>, into: Uint16Array, at: (i: number) => number): void {
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    into[at(i)] = v > 0 ? Math.round(Math.min(v, 1) * 65535) : 0;
  }
}

/**
 * Bilinear upsample of the CAM to `width`x`height`, as 16-bit levels, rows `stride` apart. Enlarging
 * (the usual case) runs in libvips: the grid, padded by one replicated cell on every side (Pillow
 * clamps at the edges), is mapped by an affine transform whose offsets put pixel centres where
 * Pillow puts them, `x_in = (x + 0.5) / scale - 0.5`. Shrinking (a map larger than a tiny overlay)
 * needs Pillow's area-averaging support, which `resizeGridBilinear` has; such outputs are small.
 */
async function upsampleCam16(cam: CamGrid, width: number, height: number): Promise<{ values: Uint16Array; stride: number; exact: boolean }> {
  if (width < cam.width || height < cam.height) {
    const values = new Uint16Array(width * height);
    toLevels16(resizeGridBilinear(cam.grid, cam.width, cam.height, width, height), values, (i) => i);
    return { values, stride: width, exact: true };
  }
  const pw = cam.width + 2;
  const ph = cam.height + 2;
  const padded = new Uint16Array(pw * ph);
  toLevels16(cam.grid, padded, (i) => (Math.floor(i / cam.width) + 1) * pw + (i % cam.width) + 1);
  for (let y = 1; y <= cam.height; y++) {
    padded[y * pw] = padded[y * pw + 1];
    padded[y * pw + pw - 1] = padded[y * pw + pw - 2];
  }
  padded.copyWithin(0, pw, 2 * pw);
  padded.copyWithin((ph - 1) * pw, (ph - 2) * pw, (ph - 1) * pw);
  const { data, info } = await sharp(padded, { raw: { width: pw, height: ph, channels: 1 } })
    .affine([width / cam.width, 0, 0, height / cam.height], { idx: -0.5, idy: -0.5, odx: -0.5, ody: -0.5, interpolator: sharp.interpolators.bilinear })
    .toColourspace('grey16')
    .raw({ depth: 'ushort' })
    .toBuffer({ resolveWithObject: true });
  if (info.width < width || info.height < height || info.channels !== 1) {
    throw new RangeError(`CAM upsample produced ${info.width}x${info.height}x${info.channels}, expected at least ${width}x${height}x1`);
  }
  // A Uint16Array view needs an even offset; sharp's buffers normally have one.
  const bytes = data.byteOffset % 2 === 0 ? data : Buffer.from(data);
  return { values: new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 2), stride: info.width, exact: false };
}

/** 16-bit level → colour: `colormapIndex(level / 65535)`'s RGB entry, packed, per colormap. */
const LUT16 = new Map<Colormap, Uint8Array>();
function colormapLut16(name: Colormap): Uint8Array {
  let lut = LUT16.get(name);
  if (!lut) {
    const table = colormapTable(name);
    lut = new Uint8Array(65536 * 3);
    for (let u = 0; u < 65536; u++) lut.set(table.subarray(colormapIndex(u / 65535) * 3, colormapIndex(u / 65535) * 3 + 3), u * 3);
    LUT16.set(name, lut);
  }
  return lut;
}

export interface HeatmapOptions {
  /**
   * zlib level of the heatmap's PNG (0..9). Default 1: rows are Sub-filtered (png-gray.ts), so
   * level 1 already writes a smaller file than libvips' unfiltered level 6 (7.0 against 7.5 KB for
   * a 224x168 map) for 0.4 instead of 1.75 ms of CPU (docs/benchmarks.md).
   */
  pngCompressionLevel: number;
  /**
   * Output size; default the CAM's own. The image core passes the image's aspect ratio at about
   * model resolution (`heatmapSize`), upsampled bilinearly as the overlay's map is.
   */
  size: { width: number; height: number } | undefined;
}

/**
 * The heatmap's size for an image: its aspect ratio, the longer side `side` (the model's input
 * side), never larger than the image itself.
 */
export function heatmapSize(imageWidth: number, imageHeight: number, side: number): { width: number; height: number } {
  const longer = Math.max(imageWidth, imageHeight);
  if (longer <= side) return { width: imageWidth, height: imageHeight };
  const scale = side / longer;
  return { width: Math.max(1, Math.round(imageWidth * scale)), height: Math.max(1, Math.round(imageHeight * scale)) };
}

/**
 * A float32 value as an 8-bit level, `round(255 * v)` with Math.round's rounding; NaN and negatives
 * 0, above 1 255. Every caller passes float32 values (the grid, or sums rounded to float32), for
 * which `v * 255` is exact and `v * 255 + 0.5` is too wherever it could reach the next integer, so
 * truncating it rounds as Math.round does (tested near every rounding edge); a third cheaper than
 * `Math.round(Math.min(v, 1) * 255)` in the heatmap's loop.
 */
export function level8(v: number): number {
  return v > 0 ? (v >= 1 ? 255 : (v * 255 + 0.5) | 0) : 0;
}

/**
 * The heatmap's 8-bit levels: `level8` of `resizeGridBilinear(grid, …, width, height)`, bit for bit,
 * without its full-size float copy. The horizontal pass is the grid's own rows (a `width`x14 map);
 * the vertical pass accumulates in doubles in the same tap order, rounds to float32 as the
 * reference's store does, and writes the level directly: 0.63 → 0.25 ms of CPU per 224x168 map,
 * then 0.17 ms with `level8` truncating instead of calling Math.round (docs/benchmarks.md).
 */
function heatmapLevels(cam: CamGrid, width: number, height: number): Uint8Array {
  const rows = cam.width === width ? cam.grid : resizeGridBilinear(cam.grid, cam.width, cam.height, width, cam.height);
  const gray = new Uint8Array(width * height);
  if (cam.height === height) {
    for (let i = 0; i < gray.length; i++) gray[i] = level8(rows[i]);
    return gray;
  }
  const { ksize, start, count, weights } = bilinearTaps(cam.height, height);
  for (let yy = 0; yy < height; yy++) {
    const base = yy * ksize;
    const n = count[yy];
    const firstRow = start[yy] * width;
    const outRow = yy * width;
    if (n === 2) {
      // Enlarging: two taps (the common case), unrolled in the same order.
      const w0 = weights[base];
      const w1 = weights[base + 1];
      for (let x = 0, i = firstRow; x < width; x++, i++) {
        // (0 + a) + b, as the general loop sums, is a + b exactly.
        gray[outRow + x] = level8(Math.fround(rows[i] * w0 + rows[i + width] * w1));
      }
      continue;
    }
    for (let x = 0; x < width; x++) {
      let s = 0;
      for (let t = 0, i = firstRow + x; t < n; t++, i += width) s += rows[i] * weights[base + t];
      gray[outRow + x] = level8(Math.fround(s));
    }
  }
  return gray;
}

/** See `HeatmapOptions.pngCompressionLevel`. */
export const HEATMAP_PNG_LEVEL = 1;

/**
 * The CAM as an 8-bit gray PNG: pixel = round(255 * value), at `size` (bilinear) or CAM resolution.
 * Encoded in JS (png-gray.ts), not by sharp: a sharp call's fixed cost was most of this small
 * encode, and the image core makes one sharp call fewer per image.
 */
export async function renderHeatmap(cam: CamGrid, options: Partial<HeatmapOptions> = {}): Promise<EncodedImage> {
  checkCam(cam);
  const level = options.pngCompressionLevel ?? HEATMAP_PNG_LEVEL;
  const size = options.size ?? { width: cam.width, height: cam.height };
  const gray = heatmapLevels(cam, size.width, size.height);
  const data = await asRenderError('heatmap', async () => encodeGrayPng(gray, size.width, size.height, { level, filter: 'sub' }));
  return { data, format: 'png', ...MIME.png, width: size.width, height: size.height };
}

export function resolveRenderOptions(options: Partial<RenderOptions>): RenderOptions {
  const opts: RenderOptions = { ...DEFAULT_RENDER_OPTIONS };
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined) (opts as unknown as Record<string, unknown>)[key] = value;
  }
  colormapTable(opts.colormap); // throws with the list of known maps
  if (!(opts.alpha >= 0 && opts.alpha <= 1)) throw new RangeError(`render option alpha must be within 0..1, got ${String(opts.alpha)}`);
  if (!(opts.format in MIME)) throw new RangeError(`render option format must be png, jpeg or webp, got ${String(opts.format)}`);
  if (opts.maxSide !== undefined && !(Number.isInteger(opts.maxSide) && opts.maxSide > 0)) {
    throw new RangeError(`render option maxSide must be a positive integer, got ${String(opts.maxSide)}`);
  }
  for (const key of ['jpegQuality', 'webpQuality'] as const) {
    if (!(Number.isInteger(opts[key]) && opts[key] >= 1 && opts[key] <= 100)) throw new RangeError(`render option ${key} must be an integer 1..100, got ${String(opts[key])}`);
  }
  if (typeof opts.reuseImage !== 'boolean') throw new RangeError(`render option reuseImage must be a boolean, got ${String(opts.reuseImage)}`);
  if (!(Number.isInteger(opts.pngCompressionLevel) && opts.pngCompressionLevel >= 0 && opts.pngCompressionLevel <= 9)) {
    throw new RangeError(`render option pngCompressionLevel must be an integer 0..9, got ${String(opts.pngCompressionLevel)}`);
  }
  return opts;
}

function checkImage(image: RgbImage): void {
  if (!(image.width > 0 && image.height > 0) || image.data.length !== image.width * image.height * 3) {
    throw new RangeError(`render: image ${image.width}x${image.height} needs ${image.width * image.height * 3} RGB bytes, has ${image.data.length}`);
  }
}

function checkCam(cam: CamGrid): void {
  if (!(cam.width > 0 && cam.height > 0) || cam.grid.length !== cam.width * cam.height) {
    throw new RangeError(`render: CAM grid ${cam.width}x${cam.height} needs ${cam.width * cam.height} values, has ${cam.grid.length}`);
  }
}
