/**
 * Decoded RGB → model input, bit-exact with the library each mode comes from (the modes and their
 * numbers are defined once in `src/shared/preprocessing.ts`):
 *
 * 1. geometry: PIL's resize of the whole image to the model input (`keras.utils.load_img`, NEAREST
 *    by default), or with `centerCrop` torchvision's `Resize(round(256/224 * side))` of the shorter
 *    side followed by `CenterCrop(input)`, with the same PIL kernels;
 * 2. values: the mode's per-channel float32 map, in the channel order the mode defines (BGR for
 *    caffe, RGB otherwise).
 *
 * The output is HWC float32; whether an engine feeds it as NHWC or transposes it to NCHW is the
 * engine's business. The reference is `scripts/reference/torchvision_preprocess.py` (torchvision,
 * Pillow, NumPy) and `pil_preprocess.py` (Keras caffe mode).
 */
import type { ResizeMode } from '../../shared/explain-options.js';
import type { PreprocessMode } from '../../shared/preprocessing.js';
import { CENTER_CROP_RESIZE_RATIO, IMAGENET_MEAN_BGR, IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, PREPROCESS_DEFINITIONS, PREPROCESS_MODES } from '../../shared/preprocessing.js';
import type { PreprocessedImage } from '../engine/engine.js';
import type { RgbImage } from './resize.js';
import { centerCropOffset, cropRgb, nearestSourceIndices, resizeBilinearPil, resizeNearestPil, shorterSideSize } from './resize.js';

export { IMAGENET_MEAN_BGR } from '../../shared/preprocessing.js';

export interface PreprocessOptions {
  /** Model input width. Default 224 (VGG16). */
  width: number;
  /** Model input height. Default 224 (VGG16). */
  height: number;
  /** PIL kernel for every resize. Default `nearest`, as `keras.utils.load_img`. */
  resize: ResizeMode;
  /** Value mapping. Default `caffe` (Keras VGG16). */
  mode: PreprocessMode;
  /** torchvision evaluation geometry (shorter side, then the central crop). Default false. */
  centerCrop: boolean;
}

export const DEFAULT_PREPROCESS_OPTIONS: Readonly<PreprocessOptions> = Object.freeze({
  width: 224,
  height: 224,
  resize: 'nearest',
  mode: 'caffe',
  centerCrop: false,
});

/** Resize with PIL's kernel for `mode`; returns the source itself when it already has the size. */
export function resizeForModel(image: RgbImage, width: number, height: number, mode: ResizeMode): RgbImage {
  // keras.utils.load_img (and torchvision's Resize) skip the resize when the size already
  // matches; both kernels are the identity then anyway, so this is only a shortcut.
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

/** Side length the shorter image side is resized to before a center crop to `width` x `height`. */
export function centerCropResizeSide(width: number, height: number): number {
  return Math.round(CENTER_CROP_RESIZE_RATIO * Math.min(width, height));
}

/** The RGB pixels the model sees: the whole image resized, or resized by its shorter side and center-cropped. */
export function fitToModel(image: RgbImage, options: Pick<PreprocessOptions, 'width' | 'height' | 'resize' | 'centerCrop'>): RgbImage {
  const { width, height, resize } = options;
  if (!options.centerCrop) return resizeForModel(image, width, height, resize);
  const scaled = shorterSideSize(image.width, image.height, centerCropResizeSide(width, height));
  const resized = resizeForModel(image, scaled.width, scaled.height, resize);
  return cropRgb(resized, centerCropOffset(resized.width, width), centerCropOffset(resized.height, height), width, height);
}

/**
 * Model input for one decoded image: HWC float32 in the mode's channel order.
 * @param into optional destination of `width*height*3` floats, e.g. a slice of a batch buffer
 */
export function preprocess(image: RgbImage, options: Partial<PreprocessOptions> = {}, into?: Float32Array): PreprocessedImage {
  const opts = resolvePreprocessOptions(options);
  const pixels = opts.width * opts.height;
  const out = into ?? new Float32Array(pixels * 3);
  if (out.length !== pixels * 3) throw new RangeError(`preprocess destination holds ${out.length} floats, expected ${pixels * 3}`);

  // The hot loop is table lookups: one float32 per (channel, byte value), each computed once
  // with the reference library's float32 rounding.
  const [lutR, lutG, lutB] = channelTables(opts.mode);
  const bgr = PREPROCESS_DEFINITIONS[opts.mode].channels === 'bgr';
  // Keras' default geometry (the whole image, PIL NEAREST) reads the source pixels it samples
  // directly, the same pixels `resizeNearestPil` copies out, without the intermediate image.
  const direct = !opts.centerCrop && opts.resize === 'nearest';
  const fitted = direct ? image : fitToModel(image, opts);
  const src = fitted.data;
  const srcStride = fitted.width * 3;
  const ys = direct ? nearestSourceIndices(fitted.height, opts.height) : identityIndices(opts.height);
  const xs = direct ? nearestSourceIndices(fitted.width, opts.width) : identityIndices(opts.width);
  for (let x = 0; x < xs.length; x++) xs[x] *= 3;
  for (let y = 0, o = 0; y < opts.height; y++) {
    const row = ys[y] * srcStride;
    for (let x = 0; x < opts.width; x++, o += 3) {
      const i = row + xs[x];
      const r = lutR[src[i]];
      const g = lutG[src[i + 1]];
      const b = lutB[src[i + 2]];
      out[o] = bgr ? b : r;
      out[o + 1] = g;
      out[o + 2] = bgr ? r : b;
    }
  }
  return { data: out, height: opts.height, width: opts.width };
}

function identityIndices(n: number): Int32Array {
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  return out;
}

const tables = new Map<PreprocessMode, readonly [Float32Array, Float32Array, Float32Array]>();

/**
 * Value tables for the R, G and B inputs. `Math.fround` after every operation reproduces float32
 * arithmetic: the exact result of one IEEE operation on float32 operands, rounded once to double
 * and then to float32, equals the float32 operation's result (double has more than 2 x 24 + 2 bits).
 */
export function channelTables(mode: PreprocessMode): readonly [Float32Array, Float32Array, Float32Array] {
  const hit = tables.get(mode);
  if (hit) return hit;
  const f = Math.fround;
  const value = (channel: 0 | 1 | 2, v: number): number => {
    switch (mode) {
      case 'caffe':
        // NumPy: float32 array minus a Python float scalar is float32 - float32(mean); the mean is BGR.
        return f(v - f(IMAGENET_MEAN_BGR[2 - channel]));
      case 'tf':
        // Keras: x /= 127.5; x -= 1.
        return f(f(v / 127.5) - 1);
      case 'torch':
        // torchvision: ToTensor's div(255), then Normalize's sub_(mean).div_(std), all float32.
        return f(f(f(v / 255) - f(IMAGENET_MEAN_RGB[channel])) / f(IMAGENET_STD_RGB[channel]));
      case 'raw':
        return f(v / 255);
      case 'none':
        return v;
      default:
        throw new RangeError(`unknown preprocess mode ${String(mode)}; expected ${PREPROCESS_MODES.join(', ')}`);
    }
  };
  const luts = ([0, 1, 2] as const).map((channel) => Float32Array.from({ length: 256 }, (_, v) => value(channel, v))) as unknown as [Float32Array, Float32Array, Float32Array];
  tables.set(mode, luts);
  return luts;
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
  if (!PREPROCESS_MODES.includes(opts.mode)) throw new RangeError(`preprocess option mode must be one of ${PREPROCESS_MODES.join(', ')}, got ${String(opts.mode)}`);
  if (typeof opts.centerCrop !== 'boolean') throw new RangeError(`preprocess option centerCrop must be a boolean, got ${String(opts.centerCrop)}`);
  return opts;
}
