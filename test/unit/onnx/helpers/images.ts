/** Seeded caffe-preprocessed-looking test images (BGR, mean subtracted: roughly ±120). */
import type { PreprocessedImage } from '../../../../src/worker/engine/engine.js';
import { mulberry32 } from '../../../../src/worker/model/random-weights.js';

export function randomImages(count: number, height: number, width: number, seed = 7): PreprocessedImage[] {
  const rand = mulberry32(seed);
  return Array.from({ length: count }, () => {
    const data = new Float32Array(height * width * 3);
    for (let i = 0; i < data.length; i++) data[i] = (rand() * 2 - 1) * 120;
    return { data, height, width };
  });
}
