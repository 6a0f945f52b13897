/**
 * 8-bit grayscale PNG encoding in JS over `node:zlib`, for the heatmap: a single-band image of a
 * few tens of kilobytes, where libvips' encode costs mostly its fixed cost per call (about 1 ms of
 * CPU for a 224x168 map) and writes unfiltered rows. Here every row takes PNG's Sub filter (each
 * byte minus its left neighbour): an upsampled CAM changes slowly along a row, so the filtered rows
 * are runs of small values that deflate compresses fast and small (docs/benchmarks.md).
 *
 * PNG (ISO/IEC 15948): signature, IHDR, one IDAT holding the zlib stream of filtered rows, IEND;
 * each chunk is length, type, data and the CRC-32 of type and data.
 */
import zlib from 'node:zlib';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** PNG row filter types (ISO/IEC 15948, 9.2). */
export const PNG_FILTER = { none: 0, sub: 1, up: 2, average: 3, paeth: 4 } as const;
export type PngFilter = keyof typeof PNG_FILTER;

export interface GrayPngOptions {
  /** zlib level 0..9. */
  level: number;
  /** Row filter applied to every row. Default `sub`. */
  filter: PngFilter;
}

/** `width * height` 8-bit levels, row-major, as a grayscale PNG (bit depth 8, no interlace). */
export function encodeGrayPng(levels: Uint8Array, width: number, height: number, options: Partial<GrayPngOptions> = {}): Buffer {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) throw new RangeError(`PNG size must be positive integers, got ${width}x${height}`);
  if (levels.length !== width * height) throw new RangeError(`PNG ${width}x${height} needs ${width * height} levels, has ${levels.length}`);
  const level = options.level ?? 6;
  if (!(Number.isInteger(level) && level >= 0 && level <= 9)) throw new RangeError(`PNG zlib level must be an integer 0..9, got ${String(level)}`);
  const filter = options.filter ?? 'sub';
  if (!(filter in PNG_FILTER)) throw new RangeError(`unknown PNG filter ${String(filter)}; expected ${Object.keys(PNG_FILTER).join(', ')}`);

  const rows = filterRows(levels, width, height, filter);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // colour type: grayscale
  // compression 0 (deflate), filter method 0, interlace 0: already zero
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(rows, { level })), chunk('IEND', Buffer.alloc(0))]);
}

/** Each row prefixed with its filter type byte, filtered as PNG defines it (bytes wrap mod 256). */
function filterRows(levels: Uint8Array, width: number, height: number, filter: PngFilter): Buffer {
  const stride = width + 1;
  const out = Buffer.allocUnsafe(stride * height);
  const type = PNG_FILTER[filter];
  if (type === PNG_FILTER.sub) {
    // The heatmap's filter, without the per-byte dispatch below (a third of the encode's CPU).
    for (let y = 0; y < height; y++) {
      const o = y * stride;
      const row = y * width;
      out[o] = type;
      out[o + 1] = levels[row];
      for (let x = 1; x < width; x++) out[o + 1 + x] = (levels[row + x] - levels[row + x - 1]) & 0xff;
    }
    return out;
  }
  for (let y = 0; y < height; y++) {
    const o = y * stride;
    const row = y * width;
    const prev = row - width; // the row above; PNG treats the row above the first as zeros
    out[o] = type;
    for (let x = 0; x < width; x++) {
      const v = levels[row + x];
      const a = x > 0 ? levels[row + x - 1] : 0; // the left neighbour (Average, Paeth)
      const b = y > 0 ? levels[prev + x] : 0;
      let p: number;
      switch (type) {
        case 0:
          p = 0;
          break;
        case 2:
          p = b;
          break;
        case 3:
          p = (a + b) >> 1;
          break;
        default:
          p = paeth(a, b, x > 0 && y > 0 ? levels[prev + x - 1] : 0);
      }
      out[o + 1 + x] = (v - p) & 0xff;
    }
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.allocUnsafe(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}
