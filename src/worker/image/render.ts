/**
 * CAM rendering: the overlay (CAM upsampled onto the image, colour-mapped and alpha-blended) and
 * the raw heatmap (the CAM grid itself as an 8-bit gray PNG).
 *
 * The seed adds `0.5 * heatmap + image` and lets values saturate; we blend properly,
 * `out = (1 - alpha) * image + alpha * colour`, so the overlay keeps the image's brightness and
 * alpha means what it says.
 */
import sharp from 'sharp';
import type { Colormap, OverlayFormat } from '../../shared/explain-options.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../shared/explain-options.js';
import { colormapIndex, colormapTable } from './colormap.js';
import type { RgbImage } from './resize.js';
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
}

export const DEFAULT_RENDER_OPTIONS: Readonly<RenderOptions> = Object.freeze({
  colormap: DEFAULT_EXPLAIN_OPTIONS.colormap,
  alpha: DEFAULT_EXPLAIN_OPTIONS.alpha,
  format: DEFAULT_EXPLAIN_OPTIONS.overlayFormat,
  maxSide: undefined,
  jpegQuality: 90,
  webpQuality: 90,
  pngCompressionLevel: 6,
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

/** Output size for an image of `width`x`height` under a `maxSide` cap (aspect kept, never enlarged). */
export function overlaySize(width: number, height: number, maxSide?: number): { width: number; height: number } {
  const longer = Math.max(width, height);
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
  const keep = new Int32Array(256);
  for (let v = 0; v < 256; v++) keep[v] = Math.round((1 - alpha) * v * BLEND_ONE);
  const add = new Int32Array(table.length);
  for (let j = 0; j < table.length; j++) add[j] = Math.round(alpha * table[j] * BLEND_ONE);
  const half = BLEND_ONE >> 1;
  const out = new Uint8Array(image.length);
  for (let p = 0, o = 0; p < values.length; p++, o += 3) {
    const t = colormapIndex(values[p]) * 3;
    out[o] = (keep[image[o]] + add[t] + half) >> BLEND_BITS;
    out[o + 1] = (keep[image[o + 1]] + add[t + 1] + half) >> BLEND_BITS;
    out[o + 2] = (keep[image[o + 2]] + add[t + 2] + half) >> BLEND_BITS;
  }
  return out;
}

/**
 * The overlay's raw pixels: the image (shrunk to `maxSide` if needed), blended with the colour-
 * mapped CAM upsampled to the same size.
 */
export async function overlayPixels(image: RgbImage, cam: CamGrid, options: Partial<RenderOptions> = {}): Promise<RgbImage> {
  const opts = resolveRenderOptions(options);
  checkImage(image);
  checkCam(cam);
  const size = overlaySize(image.width, image.height, opts.maxSide);
  let base = image.data;
  if (size.width !== image.width || size.height !== image.height) {
    // Display only: libvips' lanczos3 looks better than, and is several times faster than, a JS resize.
    base = await sharp(image.data, { raw: { width: image.width, height: image.height, channels: 3 } })
      .resize(size.width, size.height, { fit: 'fill' })
      .raw()
      .toBuffer();
  }
  const upsampled = resizeGridBilinear(cam.grid, cam.width, cam.height, size.width, size.height);
  return { data: blendColormapped(base, upsampled, colormapTable(opts.colormap), opts.alpha), width: size.width, height: size.height };
}

/** Overlay encoded as PNG, JPEG or WebP. */
export async function renderOverlay(image: RgbImage, cam: CamGrid, options: Partial<RenderOptions> = {}): Promise<EncodedImage> {
  const opts = resolveRenderOptions(options);
  const pixels = await overlayPixels(image, cam, opts);
  const input = sharp(pixels.data, { raw: { width: pixels.width, height: pixels.height, channels: 3 } });
  const encoded =
    opts.format === 'png'
      ? input.png({ compressionLevel: opts.pngCompressionLevel })
      : opts.format === 'webp'
        ? input.webp({ quality: opts.webpQuality })
        : input.jpeg({ quality: opts.jpegQuality });
  return { data: await encoded.toBuffer(), format: opts.format, ...MIME[opts.format], width: pixels.width, height: pixels.height };
}

export interface HeatmapOptions extends Pick<RenderOptions, 'pngCompressionLevel'> {
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

/** The CAM as an 8-bit gray PNG: pixel = round(255 * value), at `size` (bilinear) or CAM resolution. */
export async function renderHeatmap(cam: CamGrid, options: Partial<HeatmapOptions> = {}): Promise<EncodedImage> {
  checkCam(cam);
  const level = options.pngCompressionLevel ?? DEFAULT_RENDER_OPTIONS.pngCompressionLevel;
  const size = options.size ?? { width: cam.width, height: cam.height };
  const values = size.width === cam.width && size.height === cam.height ? cam.grid : resizeGridBilinear(cam.grid, cam.width, cam.height, size.width, size.height);
  const gray = new Uint8Array(values.length);
  for (let i = 0; i < gray.length; i++) {
    const v = values[i];
    gray[i] = v > 0 ? Math.round(Math.min(v, 1) * 255) : 0; // NaN and negatives → 0
  }
  const data = await sharp(gray, { raw: { width: size.width, height: size.height, channels: 1 } })
    .toColourspace('b-w') // otherwise libvips writes a 1-band raw image as RGB
    .png({ compressionLevel: level })
    .toBuffer();
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
