/**
 * The CAM as a map over the image: the grid covers the whole model input, and the model input is
 * the whole image resized without cropping, so grid cell (i, j) covers the image region
 * [j·W/gw, (j+1)·W/gw) × [i·H/gh, (i+1)·H/gh). The map is the grid's bilinear interpolation with
 * half-pixel centres (as TF, PIL and the overlay align a coarse grid with an image), evaluated on
 * the *analysis raster*: the image's own pixels, or, for an image whose longer side exceeds
 * `analysisSide`, a proportionally smaller raster (metrics converge long before full resolution,
 * and a 12-megapixel photo must not cost 12 M evaluations per image). Formulas: docs/audit-metrics.md.
 */

export interface Raster {
  /** Row-major `width*height` float32 values in [0, 1]. */
  values: Float32Array;
  width: number;
  height: number;
}

/** Raster size for an image of `width x height` pixels: its own size, or scaled down to `maxSide`. */
export function analysisSize(width: number, height: number, maxSide: number): { width: number; height: number } {
  if (!(width > 0 && height > 0)) throw new RangeError(`image size must be positive, got ${width}x${height}`);
  const longer = Math.max(width, height);
  if (longer <= maxSide) return { width, height };
  const s = maxSide / longer;
  return { width: Math.max(1, Math.round(width * s)), height: Math.max(1, Math.round(height * s)) };
}

/** Per output coordinate: the two grid indices it interpolates and the weight of the second. */
interface Taps {
  lo: Int32Array;
  hi: Int32Array;
  frac: Float64Array;
}

function taps(gridSize: number, outSize: number): Taps {
  const lo = new Int32Array(outSize);
  const hi = new Int32Array(outSize);
  const frac = new Float64Array(outSize);
  for (let o = 0; o < outSize; o++) {
    // Same operation order as the NumPy reference, so both produce the same float32 raster.
    const pos = ((o + 0.5) * gridSize) / outSize - 0.5;
    const p = Math.min(Math.max(pos, 0), gridSize - 1);
    const l = Math.floor(p);
    lo[o] = l;
    hi[o] = Math.min(l + 1, gridSize - 1);
    frac[o] = p - l;
  }
  return { lo, hi, frac };
}

/**
 * Bilinear upsampling of a row-major `gh x gw` grid to `height x width` with half-pixel centres:
 * output pixel (x, y) samples the grid at ((x + 0.5)·gw/width − 0.5, (y + 0.5)·gh/height − 0.5),
 * clamped at the borders. Values are computed in double precision and stored as float32.
 *
 * Separable: each grid row is interpolated along x once, in doubles (`gh` rows of `width`), and each
 * output pixel is then one weighted sum of two of those: the same operations on the same doubles as
 * interpolating the four corners per pixel, so the same float32 raster, for about 40% less CPU
 * (docs/benchmarks.md).
 */
export function upsampleBilinear(grid: ArrayLike<number>, gh: number, gw: number, height: number, width: number): Float32Array {
  if (grid.length !== gh * gw) throw new RangeError(`grid has ${grid.length} values, expected ${gh}x${gw}`);
  const out = new Float32Array(height * width);
  const tx = taps(gw, width);
  const ty = taps(gh, height);
  const rows = new Float64Array(gh * width);
  for (let r = 0; r < gh; r++) {
    const g = r * gw;
    const o = r * width;
    for (let x = 0; x < width; x++) {
      const fx = tx.frac[x] as number;
      rows[o + x] = (grid[g + (tx.lo[x] as number)] as number) * (1 - fx) + (grid[g + (tx.hi[x] as number)] as number) * fx;
    }
  }
  for (let y = 0; y < height; y++) {
    const r0 = (ty.lo[y] as number) * width;
    const r1 = (ty.hi[y] as number) * width;
    const fy = ty.frac[y] as number;
    const gy = 1 - fy;
    const row = y * width;
    for (let x = 0; x < width; x++) out[row + x] = (rows[r0 + x] as number) * gy + (rows[r1 + x] as number) * fy;
  }
  return out;
}

/** The map of a CAM grid on the analysis raster of an image of `imageWidth x imageHeight`. */
export function mapRaster(grid: ArrayLike<number>, gh: number, gw: number, imageWidth: number, imageHeight: number, maxSide: number): Raster {
  const size = analysisSize(imageWidth, imageHeight, maxSide);
  return { values: upsampleBilinear(grid, gh, gw, size.height, size.width), width: size.width, height: size.height };
}

/** First pixel in row-major order holding the maximum value. */
export function argMaxPixel(values: ArrayLike<number>, width: number): { x: number; y: number; value: number } {
  let best = 0;
  for (let i = 1; i < values.length; i++) if ((values[i] as number) > (values[best] as number)) best = i;
  return { x: best % width, y: Math.floor(best / width), value: values[best] as number };
}

/** True when the grid holds at least two different values (a flat map has no peak). */
export function hasContrast(grid: ArrayLike<number>): boolean {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < grid.length; i++) {
    const v = grid[i] as number;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  return max > min;
}
