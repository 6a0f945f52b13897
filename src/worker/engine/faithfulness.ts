/**
 * Faithfulness (opt-in, `--faithfulness`): does the model need what the map points at? For each
 * image of a batch, with c the class of its first map and p_c its softmax probability:
 *   top region    T = the `fraction` (20%) of input pixels where the map, upsampled bilinearly to
 *                 the model input, is highest (ties: lower row-major index first)
 *   random region R = an axis-aligned rectangle of the same share (sides √fraction of the input's),
 *                 placed uniformly at random by a PRNG seeded with the image's seed (FNV-1a of its key)
 *   x_T, x_R      = the input with the region replaced by a Gaussian-blurred copy of the input
 *                 (σ = `blurSigma` × the input's longer side, edges clamped; in the model's input space)
 *   topDrop = p_c(x) − p_c(x_T),  randomDrop = p_c(x) − p_c(x_R),  score = topDrop − randomDrop
 * The two perturbed copies of every image ride as extra forward rows of the same engine call,
 * chunked to `forwardRows`; a degenerate map has no top region and gets no faithfulness.
 */
import type { FaithfulnessMetrics } from '../../shared/audit/types.js';
import { resizeGridBilinear } from '../image/upsample.js';
// The same generator as the random weights: a 32-bit PRNG the NumPy reference reproduces exactly.
import { mulberry32 } from '../model/random-weights.js';
import type { EngineImageResult, EngineRequest, PreprocessedImage } from './engine.js';
import type { ForwardHost } from './gradient-free/forward-host.js';
import { forwardInChunks } from './gradient-free/forward-host.js';

export interface FaithfulnessOptions {
  /** Share of the input's pixels perturbed, in both regions. Default 0.2. */
  fraction: number;
  /** Blur σ as a share of the input's longer side. Default 0.04 (about 9 px at 224). */
  blurSigma: number;
}

export const DEFAULT_FAITHFULNESS_OPTIONS: Readonly<FaithfulnessOptions> = Object.freeze({ fraction: 0.2, blurSigma: 0.04 });

/** 32-bit FNV-1a of a string's UTF-16 code units: the per-image seed of the random region. */
export function seedOf(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** 1 for the `round(fraction·W·H)` input pixels where the map is highest. */
export function topRegion(grid: Float32Array, gridWidth: number, gridHeight: number, width: number, height: number, fraction: number): Uint8Array {
  const up = resizeGridBilinear(grid, gridWidth, gridHeight, width, height);
  const n = up.length;
  const k = Math.round(fraction * n);
  const mask = new Uint8Array(n);
  if (k <= 0) return mask;
  const sorted = Float32Array.from(up).sort();
  const threshold = sorted[n - k];
  let taken = 0;
  for (let i = 0; i < n; i++) {
    if (up[i] > threshold) {
      mask[i] = 1;
      taken++;
    }
  }
  for (let i = 0; i < n && taken < k; i++) {
    if (up[i] === threshold) {
      mask[i] = 1;
      taken++;
    }
  }
  return mask;
}

/** 1 inside a rectangle of sides round(√fraction·W) × round(√fraction·H) at a seeded uniform position. */
export function randomRegion(width: number, height: number, fraction: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  const rw = Math.min(width, Math.max(1, Math.round(Math.sqrt(fraction) * width)));
  const rh = Math.min(height, Math.max(1, Math.round(Math.sqrt(fraction) * height)));
  const x0 = Math.floor(rand() * (width - rw + 1));
  const y0 = Math.floor(rand() * (height - rh + 1));
  const mask = new Uint8Array(width * height);
  for (let y = y0; y < y0 + rh; y++) mask.fill(1, y * width + x0, y * width + x0 + rw);
  return mask;
}

/** Separable Gaussian blur of an HWC image, kernel radius ⌈3σ⌉, edges clamped. */
export function gaussianBlur(image: PreprocessedImage, sigma: number): Float32Array {
  const { width: w, height: h } = image;
  const c = image.data.length / (w * h);
  const r = Math.max(1, Math.ceil(3 * sigma));
  const taps = 2 * r + 1;
  const kernel = new Float64Array(taps);
  let total = 0;
  for (let i = -r; i <= r; i++) total += kernel[i + r] = Math.exp((-i * i) / (2 * sigma * sigma));
  for (let i = 0; i < taps; i++) kernel[i] /= total;
  // One pass along a line of `n` samples `stride` values apart: clamped source offsets per output
  // position are computed once per pass, not per channel and tap.
  const pass = (src: Float32Array, dst: Float32Array, n: number, lines: number, stride: number, lineStride: number): void => {
    const index = new Int32Array(n * taps);
    for (let p = 0; p < n; p++) for (let t = 0; t < taps; t++) index[p * taps + t] = Math.min(n - 1, Math.max(0, p + t - r)) * stride;
    for (let line = 0; line < lines; line++) {
      const base = line * lineStride;
      for (let p = 0; p < n; p++) {
        const out = base + p * stride;
        for (let ch = 0; ch < c; ch++) {
          let sum = 0;
          for (let t = 0, k = p * taps; t < taps; t++, k++) sum += kernel[t] * src[base + index[k] + ch];
          dst[out + ch] = sum;
        }
      }
    }
  };
  const rows = new Float32Array(image.data.length);
  pass(image.data, rows, w, h, c, w * c);
  const out = new Float32Array(image.data.length);
  pass(rows, out, h, w, w * c, c);
  return out;
}

/** The image with the masked pixels taken from `blurred`. */
export function replaceRegion(image: PreprocessedImage, blurred: Float32Array, mask: Uint8Array): PreprocessedImage {
  const c = image.data.length / mask.length;
  const data = Float32Array.from(image.data);
  for (let p = 0; p < mask.length; p++) if (mask[p]) for (let j = 0; j < c; j++) data[p * c + j] = blurred[p * c + j];
  return { data, height: image.height, width: image.width };
}

/**
 * Adds `faithfulness` to each result (null when its first map is degenerate or absent), forwarding
 * two perturbed rows per image in chunks of `request.forwardRows`.
 */
export async function measureFaithfulness(
  request: Pick<EngineRequest, 'images' | 'forwardRows' | 'imageSeeds'>,
  results: EngineImageResult[],
  host: ForwardHost,
  options: FaithfulnessOptions = DEFAULT_FAITHFULNESS_OPTIONS,
): Promise<EngineImageResult[]> {
  const measured = results.map((r, i) => ({ i, cam: r.cams[0] })).filter(({ cam }) => cam !== undefined && cam.degenerate === null);
  const probs = new Float64Array(measured.length * 2);
  let blurred: { i: number; data: Float32Array } | null = null;
  await forwardInChunks(
    host,
    measured.length * 2,
    request.forwardRows ?? request.images.length,
    (row) => {
      const { i, cam } = measured[row >> 1];
      const image = request.images[i];
      // Rows come in pairs per image: blur once for both.
      if (blurred?.i !== i) blurred = { i, data: gaussianBlur(image, Math.max(1, options.blurSigma * Math.max(image.width, image.height))) };
      const mask =
        row % 2 === 0
          ? topRegion(cam.grid, cam.width, cam.height, image.width, image.height, options.fraction)
          : randomRegion(image.width, image.height, options.fraction, request.imageSeeds?.[i] ?? i);
      return replaceRegion(image, blurred.data, mask);
    },
    (row, probabilities) => (probs[row] = probabilities[measured[row >> 1].cam.classIndex]),
  );
  const out: EngineImageResult[] = results.map((r) => ({ ...r, faithfulness: null }));
  measured.forEach(({ i, cam }, m) => {
    const p = results[i].probabilities[cam.classIndex];
    const topDrop = p - probs[2 * m];
    const randomDrop = p - probs[2 * m + 1];
    out[i].faithfulness = { topDrop, randomDrop, score: topDrop - randomDrop } satisfies FaithfulnessMetrics;
  });
  return out;
}
