/**
 * The pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", 2016): a
 * saliency map scores a hit when its maximum falls inside the annotated object. The map on the
 * image is the audit's (src/shared/audit/map-raster.ts: bilinear, half-pixel centres), so this
 * evaluation and a run's audit.json score the same thing; the arg-max pixel is tested against the
 * object's box without tolerance.
 */
import { argMaxPixel, hasContrast, upsampleBilinear } from '../../src/shared/audit/map-raster.js';
import type { BoundingBox } from './synth.js';

export { upsampleBilinear };

export interface Peak {
  x: number;
  y: number;
  value: number;
}

/** First pixel (row-major) holding the maximum of an upsampled map. */
export function peakOf(map: ArrayLike<number>, width: number): Peak {
  return argMaxPixel(map, width);
}

export function insideBox(p: Pick<Peak, 'x' | 'y'>, box: BoundingBox): boolean {
  return p.x >= box.x0 && p.x < box.x1 && p.y >= box.y0 && p.y < box.y1;
}

/**
 * One pointing-game trial. A flat map (every value equal, e.g. a degenerate all-zero CAM) has no
 * peak and counts as a miss rather than as a hit at pixel (0, 0).
 */
export function pointingHit(grid: ArrayLike<number>, gh: number, gw: number, box: BoundingBox, height: number, width: number): { hit: boolean; peak: Peak | null } {
  if (!hasContrast(grid)) return { hit: false, peak: null };
  const peak = peakOf(upsampleBilinear(grid, gh, gw, height, width), width);
  return { hit: insideBox(peak, box), peak };
}
