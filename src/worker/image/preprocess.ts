/**
 * Decoded RGB → model input, exactly as Keras does it for VGG16:
 * `load_img(path, target_size=(224, 224))` (PIL resize, NEAREST by default, no aspect preservation)
 * followed by `vgg16.preprocess_input` in caffe mode (RGB→BGR, subtract the ImageNet BGR mean, no
 * scaling). The float32 arithmetic matches NumPy's: `float32(x) - float32(mean)`.
 */
import type { ResizeMode } from '../../shared/explain-options.js';
import type { PreprocessedImage } from '../engine/engine.js';
import type { RgbImage } from './resize.js';
import { resizeBilinearPil, resizeNearestPil } from './resize.js';

export interface PreprocessOptions {
  /** Model input width. Default 224 (VGG16). */
  width: number;
  /** Model input height. Default 224 (VGG16). */
  height: number;
  /** Resampling to the model input. Default `nearest`, as `keras.utils.load_img`. */
  resize: ResizeMode;
  /** Per-channel mean in BGR order, subtracted after RGB→BGR. Default Keras caffe mode. */
  meanBgr: readonly [number, number, number];
}

/** Keras `imagenet_utils` caffe-mode mean, BGR order. */
export const IMAGENET_MEAN_BGR: readonly [number, number, number] = Object.freeze([103.939, 116.779, 123.68]) as readonly [number, number, number];

export const DEFAULT_PREPROCESS_OPTIONS: Readonly<PreprocessOptions> = Object.freeze({
  width: 224,
  height: 224,
  resize: 'nearest',
  meanBgr: IMAGENET_MEAN_BGR,
});

/** Resize with PIL's kernel for `mode`; returns the source itself when it already has the size. */
export function resizeForModel(image: RgbImage, width: number, height: number, mode: ResizeMode): RgbImage {
  // keras.utils.load_img skips the resize when the size already matches; both kernels are the
  // identity then anyway, so this is only a shortcut.
  if (image.width === width && image.height === height) return image;
  switch (mode) {
    case 'nearest':
      return resizeNearestPil(image, width, height);
    case 'bilinear':
      return resizeBilinearPil(image, width, height);
    default:
      throw new RangeError(`unknown resize mode ${String(mode)}; expected nearest or bilinear`);
  }
}

/**
 * Model input for one decoded image: HWC float32, BGR, mean subtracted.
 * @param into optional destination of `width*height*3` floats, e.g. a slice of a batch buffer
 */
export function preprocess(image: RgbImage, options: Partial<PreprocessOptions> = {}, into?: Float32Array): PreprocessedImage {
  const opts = resolvePreprocessOptions(options);
  const resized = resizeForModel(image, opts.width, opts.height, opts.resize);
  const pixels = opts.width * opts.height;
  const out = into ?? new Float32Array(pixels * 3);
  if (out.length !== pixels * 3) throw new RangeError(`preprocess destination holds ${out.length} floats, expected ${pixels * 3}`);

  // One float per (channel, byte value): the hot loop is then table lookups, and each entry is
  // computed with NumPy's float32 rounding once.
  const [b, g, r] = opts.meanBgr.map((m) => Math.fround(m));
  const lutR = new Float32Array(256);
  const lutG = new Float32Array(256);
  const lutB = new Float32Array(256);
  for (let v = 0; v < 256; v++) {
    lutR[v] = v - r;
    lutG[v] = v - g;
    lutB[v] = v - b;
  }
  const src = resized.data;
  for (let i = 0, end = pixels * 3; i < end; i += 3) {
    out[i] = lutB[src[i + 2]];
    out[i + 1] = lutG[src[i + 1]];
    out[i + 2] = lutR[src[i]];
  }
  return { data: out, height: opts.height, width: opts.width };
}

export function resolvePreprocessOptions(options: Partial<PreprocessOptions>): PreprocessOptions {
  const opts: PreprocessOptions = { ...DEFAULT_PREPROCESS_OPTIONS };
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined) (opts as unknown as Record<string, unknown>)[key] = value;
  }
  for (const key of ['width', 'height'] as const) {
    if (!Number.isInteger(opts[key]) || opts[key] <= 0) throw new RangeError(`preprocess option ${key} must be a positive integer, got ${String(opts[key])}`);
  }
  if (opts.resize !== 'nearest' && opts.resize !== 'bilinear') throw new RangeError(`preprocess option resize must be nearest or bilinear, got ${String(opts.resize)}`);
  if (opts.meanBgr.length !== 3 || !opts.meanBgr.every(Number.isFinite)) throw new RangeError('preprocess option meanBgr must be three finite numbers (B, G, R)');
  return opts;
}
