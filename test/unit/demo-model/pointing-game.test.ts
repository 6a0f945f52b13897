import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { useBackend } from '../../../scripts/demo-model/backend.js';
import { insideBox, peakOf, pointingHit, upsampleBilinear } from '../../../scripts/demo-model/pointing-game.js';

describe('pointing game', () => {
  beforeAll(async () => {
    await useBackend('cpu');
  });

  it('upsamples like tf.image.resizeBilinear with half-pixel centres', () => {
    const grid = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i * 1.7) + i / 5);
    const ours = upsampleBilinear(grid, 3, 4, 24, 32);
    const ref = tf.tidy(() => tf.image.resizeBilinear(tf.tensor3d(grid, [3, 4, 1]), [24, 32], false, true).dataSync());
    expect(ours.length).toBe(ref.length);
    ours.forEach((v, i) => expect(v).toBeCloseTo(ref[i]!, 5));
  });

  it('puts the peak of a one-hot grid at the centre of its cell', () => {
    const grid = new Float32Array(12 * 12);
    grid[3 * 12 + 7] = 1; // row 3, column 7 → pixels 56..63 x 24..31 of a 96x96 image
    const peak = peakOf(upsampleBilinear(grid, 12, 12, 96, 96), 96);
    expect(peak.x).toBeGreaterThanOrEqual(59);
    expect(peak.x).toBeLessThanOrEqual(60);
    expect(peak.y).toBeGreaterThanOrEqual(27);
    expect(peak.y).toBeLessThanOrEqual(28);
    expect(pointingHit(grid, 12, 12, { x0: 50, y0: 20, x1: 70, y1: 35 }, 96, 96).hit).toBe(true);
    expect(pointingHit(grid, 12, 12, { x0: 0, y0: 0, x1: 50, y1: 96 }, 96, 96).hit).toBe(false);
  });

  it('treats box bounds as half-open and a flat map as a miss', () => {
    const box = { x0: 10, y0: 10, x1: 20, y1: 20 };
    expect(insideBox({ x: 10, y: 19 }, box)).toBe(true);
    expect(insideBox({ x: 20, y: 15 }, box)).toBe(false);
    const flat = pointingHit(new Float32Array(16), 4, 4, { x0: 0, y0: 0, x1: 96, y1: 96 }, 96, 96);
    expect(flat).toEqual({ hit: false, peak: null });
  });
});
