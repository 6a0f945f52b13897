/**
 * Score-CAM (Wang et al., 2020), batched. For each channel k of the target activation A:
 *   M_k = minmax(upsample(A_k))        bilinear to the model input (Pillow's BILINEAR, image/upsample.ts),
 *                                      then scaled to [0,1]; a constant channel gives M_k = 0
 *   s_k = S_c(x ⊙ M_k)                 the class score (probability or logit, `--score`) of the input
 *                                      masked in the model's input space (masked-out pixels become 0,
 *                                      the normalisation mean colour), one forward row per channel
 *   w   = softmax_k(s_k)               the paper's "increase in confidence" s_k − S_c(baseline) gives
 *                                      the same weights: softmax ignores a shared offset
 *   map = ReLU(Σ_k w_k A_k)            on the target grid, normalised like every other method
 * The C masked copies of every image in a batch are forwarded in chunks of the engine batch size;
 * the cost is C forward passes per image (512 for VGG16's block5_conv3), whatever the targets.
 */
import { resizeGridBilinear } from '../../image/upsample.js';
import type { PreprocessedImage } from '../engine.js';

/** The mask of channel `k`: channel k of `activation` ([h,w,c]) upsampled to `outW×outH` and min-max scaled. */
export function scoreCamMask(activation: Float32Array, height: number, width: number, channels: number, k: number, outWidth: number, outHeight: number): Float32Array {
  const grid = new Float32Array(height * width);
  for (let i = 0; i < grid.length; i++) grid[i] = activation[i * channels + k];
  const up = resizeGridBilinear(grid, width, height, outWidth, outHeight);
  let min = Infinity;
  let max = -Infinity;
  for (const v of up) {
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const range = max - min;
  if (!(range > 0)) return new Float32Array(up.length);
  for (let i = 0; i < up.length; i++) up[i] = (up[i] - min) / range;
  return up;
}

/** `image ⊙ mask`, the mask broadcast over the input's channels. */
export function maskImage(image: PreprocessedImage, mask: Float32Array): PreprocessedImage {
  const c = image.data.length / mask.length;
  const data = new Float32Array(image.data.length);
  for (let p = 0; p < mask.length; p++) {
    const m = mask[p];
    for (let j = 0; j < c; j++) data[p * c + j] = image.data[p * c + j] * m;
  }
  return { data, height: image.height, width: image.width };
}

/** ReLU(Σ_k softmax(scores)_k · A_k) for one image and class; `scores` has one entry per channel. */
export function scoreCamMap(activation: Float32Array, height: number, width: number, channels: number, scores: Float64Array): Float32Array {
  let top = -Infinity;
  for (const s of scores) if (s > top) top = s;
  const weights = new Float64Array(channels);
  let total = 0;
  for (let k = 0; k < channels; k++) total += weights[k] = Math.exp(scores[k] - top);
  const out = new Float32Array(height * width);
  for (let i = 0; i < out.length; i++) {
    let s = 0;
    for (let k = 0; k < channels; k++) s += weights[k] * activation[i * channels + k];
    out[i] = Math.max(0, s / total);
  }
  return out;
}
