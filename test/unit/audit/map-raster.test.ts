/**
 * The analysis raster's upsampling is separable (each grid row interpolated along x once, then
 * pairs of those rows per output row): it must give the float32 raster of the four-corner formula
 * as docs/audit-metrics.md writes it, bit for bit, at every shape (enlarging, shrinking, one axis
 * at grid size, a 1-pixel side).
 */
import { describe, expect, it } from 'vitest';
import { upsampleBilinear } from '../../../src/shared/audit/map-raster.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';

/** Sample position along one axis, clamped: the formula of docs/audit-metrics.md. */
function tap(o: number, grid: number, out: number): { lo: number; hi: number; f: number } {
  const p = Math.min(Math.max(((o + 0.5) * grid) / out - 0.5, 0), grid - 1);
  const lo = Math.floor(p);
  return { lo, hi: Math.min(lo + 1, grid - 1), f: p - lo };
}

function fourCorners(grid: Float32Array, gh: number, gw: number, height: number, width: number): Float32Array {
  const out = new Float32Array(height * width);
  for (let y = 0; y < height; y++) {
    const ty = tap(y, gh, height);
    for (let x = 0; x < width; x++) {
      const tx = tap(x, gw, width);
      const top = grid[ty.lo * gw + tx.lo] * (1 - tx.f) + grid[ty.lo * gw + tx.hi] * tx.f;
      const bottom = grid[ty.hi * gw + tx.lo] * (1 - tx.f) + grid[ty.hi * gw + tx.hi] * tx.f;
      out[y * width + x] = top * (1 - ty.f) + bottom * ty.f;
    }
  }
  return out;
}

describe('the analysis raster', () => {
  it.each([
    [14, 14, 96, 128],
    [7, 7, 128, 85],
    [14, 14, 14, 128],
    [14, 14, 3, 5],
    [1, 14, 9, 40],
    [14, 1, 40, 1],
  ])('a %ix%i grid on %ix%i equals the four-corner formula bit for bit', (gh, gw, height, width) => {
    const rand = mulberry32(gh * 1000 + gw * 10 + height);
    const grid = Float32Array.from({ length: gh * gw }, () => rand());
    const got = upsampleBilinear(grid, gh, gw, height, width);
    const expected = fourCorners(grid, gh, gw, height, width);
    expect(got.length).toBe(height * width);
    expect(Buffer.compare(Buffer.from(got.buffer), Buffer.from(expected.buffer))).toBe(0);
  });

  it('refuses a grid whose length does not match its size', () => {
    expect(() => upsampleBilinear(new Float32Array(10), 3, 3, 4, 4)).toThrow(/grid has 10 values, expected 3x3/);
  });
});
