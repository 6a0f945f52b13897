/**
 * Float grid resizing for CAMs: Pillow's BILINEAR on a mode 'F' image (double accumulation,
 * float32 between and after the passes). Enlarging a 14x14 map is then ordinary half-pixel-centre
 * bilinear interpolation with clamped edges; shrinking (a CAM larger than its image, or a tiny
 * `maxSide`) averages like Pillow instead of aliasing. Checked against Pillow in
 * test/fixtures/images/reference/render.json.
 */
import { bilinearTaps } from './resize.js';

/**
 * @param grid row-major `width*height` values
 * @returns row-major `outWidth*outHeight` values
 */
export function resizeGridBilinear(grid: Float32Array, width: number, height: number, outWidth: number, outHeight: number): Float32Array {
  if (grid.length !== width * height) throw new RangeError(`grid has ${grid.length} values, expected ${width}x${height}`);
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new RangeError(`grid target size must be positive integers, got ${outWidth}x${outHeight}`);
  }
  let current = grid;
  if (outWidth !== width) {
    const { ksize, start, count, weights } = bilinearTaps(width, outWidth);
    const out = new Float32Array(outWidth * height);
    for (let y = 0; y < height; y++) {
      const row = y * width;
      for (let xx = 0; xx < outWidth; xx++) {
        const base = xx * ksize;
        const first = row + start[xx];
        let s = 0;
        for (let t = 0, n = count[xx]; t < n; t++) s += current[first + t] * weights[base + t];
        out[y * outWidth + xx] = s;
      }
    }
    current = out;
  }
  if (outHeight !== height) {
    const { ksize, start, count, weights } = bilinearTaps(height, outHeight);
    const out = new Float32Array(outWidth * outHeight);
    for (let yy = 0; yy < outHeight; yy++) {
      const base = yy * ksize;
      const n = count[yy];
      const firstRow = start[yy] * outWidth;
      const outRow = yy * outWidth;
      for (let x = 0; x < outWidth; x++) {
        let s = 0;
        for (let t = 0, i = firstRow + x; t < n; t++, i += outWidth) s += current[i] * weights[base + t];
        out[outRow + x] = s;
      }
    }
    current = out;
  }
  return current === grid ? grid.slice() : current;
}
