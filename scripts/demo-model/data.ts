/**
 * Turning synthetic images into model input. The demo model takes Keras caffe-mode input, exactly
 * like VGG16 (RGB→BGR, ImageNet channel means subtracted, 0..255 scale), so the worker's
 * preprocessing serves both models unchanged. Training uses that very function.
 */
import * as tf from '@tensorflow/tfjs';
import { preprocess } from '../../src/worker/image/preprocess.js';
import { generateImage, type SceneOptions, type SyntheticImage, DEFAULT_SCENE_OPTIONS } from './synth.js';

/** A batch tensor `[n, size, size, 3]` of caffe input. */
export function caffeBatch(images: SyntheticImage[]): tf.Tensor4D {
  const first = images[0];
  if (first === undefined) throw new RangeError('caffeBatch: no images');
  const { width, height } = first;
  const stride = width * height * 3;
  const data = new Float32Array(images.length * stride);
  images.forEach((im, i) => {
    if (im.width !== width || im.height !== height) throw new RangeError(`caffeBatch: image ${i} is ${im.width}x${im.height}, expected ${width}x${height}`);
    preprocess({ data: im.rgb, width, height }, { width, height }, data.subarray(i * stride, (i + 1) * stride));
  });
  return tf.tensor4d(data, [images.length, first.height, first.width, 3]);
}

/** Images `start .. start+count-1` of the set named by `seed`. */
export function generateRange(seed: number, start: number, count: number, options: SceneOptions = DEFAULT_SCENE_OPTIONS): SyntheticImage[] {
  return Array.from({ length: count }, (_, i) => generateImage(seed, start + i, options));
}
