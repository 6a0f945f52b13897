/**
 * The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016): a
 * saliency map scores a hit when its maximum falls inside the annotated object. We upsample the CAM
 * grid to the image with bilinear interpolation (half-pixel centres, as TF and PIL align a coarse
 * grid with the image) and test the arg-max pixel against the object's box, without tolerance.
 */
import type { BoundingBox } from './synth.js';

export interface Peak {
  x: number;
  y: number;
  value: number;
}

/**
 * Bilinear upsampling of a row-major `gh x gw` grid to `height x width` with half-pixel centres:
 * output pixel (x, y) samples the grid at ((x + 0.5)·gw/width − 0.5, (y + 0.5)·gh/height − 0.5),
 * clamped at the borders.
 */
export function upsampleBilinear(grid: ArrayLike<number>, gh: number, gw: number, height: number, width: number): Float32Array {
  if (grid.length !== gh * gw) throw new RangeError(`grid has ${grid.length} values, expected ${gh}x${gw}`);
  const out = new Float32Array(height * width);
  const sample = (pos: number, n: number): [number, number, number] => {
    const p = Math.min(Math.max(pos, 0), n - 1);
    const lo = Math.floor(p);
    const hi = Math.min(lo + 1, n - 1);
    return [lo, hi, p - lo];
  };
  for (let y = 0; y < height; y++) {
    const [y0, y1, fy] = sample(((y + 0.5) * gh) / height - 0.5, gh);
    for (let x = 0; x < width; x++) {
      const [x0, x1, fx] = sample(((x + 0.5) * gw) / width - 0.5, gw);
      const top = (grid[y0 * gw + x0] as number) * (1 - fx) + (grid[y0 * gw + x1] as number) * fx;
      const bottom = (grid[y1 * gw + x0] as number) * (1 - fx) + (grid[y1 * gw + x1] as number) * fx;
      out[y * width + x] = top * (1 - fy) + bottom * fy;
    }
  }
  return out;
}

/** First pixel (row-major) holding the maximum of an upsampled map. */
export function peakOf(map: ArrayLike<number>, width: number): Peak {
  let best = 0;
  for (let i = 1; i < map.length; i++) if ((map[i] as number) > (map[best] as number)) best = i;
  return { x: best % width, y: Math.floor(best / width), value: map[best] as number };
}

export function insideBox(p: Pick<Peak, 'x' | 'y'>, box: BoundingBox): boolean {
  return p.x >= box.x0 && p.x < box.x1 && p.y >= box.y0 && p.y < box.y1;
}

/**
 * One pointing-game trial. A flat map (every value equal, e.g. a degenerate all-zero CAM) has no
 * peak and counts as a miss rather than as a hit at pixel (0, 0).
 */
export function pointingHit(grid: ArrayLike<number>, gh: number, gw: number, box: BoundingBox, height: number, width: number): { hit: boolean; peak: Peak | null } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < grid.length; i++) {
    min = Math.min(min, grid[i] as number);
    max = Math.max(max, grid[i] as number);
  }
  if (!(max > min)) return { hit: false, peak: null };
  const peak = peakOf(upsampleBilinear(grid, gh, gw, height, width), width);
  return { hit: insideBox(peak, box), peak };
}
