import { mulberry32 } from '../../../src/worker/model/random-weights.js';
import type { PreprocessedImage } from '../../../src/worker/engine/engine.js';

/** Deterministic images on the Keras caffe scale (0..255 minus the ImageNet mean, roughly ±120). */
export function seededImages(count: number, height: number, width: number, seed: number): PreprocessedImage[] {
  const next = mulberry32(seed);
  const mean = [103.939, 116.779, 123.68];
  return Array.from({ length: count }, () => {
    const data = new Float32Array(height * width * 3);
    for (let i = 0; i < data.length; i++) data[i] = next() * 255 - mean[i % 3];
    return { data, height, width };
  });
}
