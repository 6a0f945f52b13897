/**
 * Turning synthetic images into model input. The demo model takes Keras caffe-mode input, exactly
 * like VGG16 (RGB→BGR, ImageNet channel means subtracted, 0..255 scale), so the worker's
 * preprocessing serves both models unchanged.
 */
import * as tf from '@tensorflow/tfjs';
import { generateImage, type SceneOptions, type SyntheticImage, DEFAULT_SCENE_OPTIONS } from './synth.js';

/** Keras `preprocess_input` caffe means, in BGR order. */
export const CAFFE_MEAN_BGR = [103.939, 116.779, 123.68] as const;

/** Write one RGB uint8 image as caffe input (HWC, BGR, mean-subtracted) into `out` at `offset`. */
export function writeCaffeInput(rgb: Uint8Array, out: Float32Array, offset = 0): void {
  const pixels = rgb.length / 3;
  for (let p = 0; p < pixels; p++) {
    const s = p * 3;
    const d = offset + s;
    out[d] = (rgb[s + 2] as number) - CAFFE_MEAN_BGR[0];
    out[d + 1] = (rgb[s + 1] as number) - CAFFE_MEAN_BGR[1];
    out[d + 2] = (rgb[s] as number) - CAFFE_MEAN_BGR[2];
  }
}

/** A batch tensor `[n, size, size, 3]` of caffe input. */
export function caffeBatch(images: SyntheticImage[]): tf.Tensor4D {
  const first = images[0];
  if (first === undefined) throw new RangeError('caffeBatch: no images');
  const stride = first.width * first.height * 3;
  const data = new Float32Array(images.length * stride);
  images.forEach((im, i) => writeCaffeInput(im.rgb, data, i * stride));
  return tf.tensor4d(data, [images.length, first.height, first.width, 3]);
}

/** Images `start .. start+count-1` of the set named by `seed`. */
export function generateRange(seed: number, start: number, count: number, options: SceneOptions = DEFAULT_SCENE_OPTIONS): SyntheticImage[] {
  return Array.from({ length: count }, (_, i) => generateImage(seed, start + i, options));
}
