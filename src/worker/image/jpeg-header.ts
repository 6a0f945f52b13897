/**
 * The header facts of a plain JPEG read in JS: size, components and EXIF orientation, from the
 * markers before the first scan. The decoder asks for these before every decode (the pixel budget
 * and the decompression-bomb check need them); sharp's `metadata()` gives the same facts for the
 * fixed cost of a sharp call, about 0.4 ms of CPU, paid once per image by every worker.
 *
 * Only what libvips would report the same way is answered: 8-bit baseline, extended or progressive
 * frames with 1 (gray) or 3 (YCbCr/RGB) components and an explicit height. Anything else (CMYK or
 * YCCK, 12-bit, lossless or arithmetic frames with a DNL height, a damaged or unusual marker
 * sequence, an EXIF block we cannot read) returns null and the caller asks libvips: this is a fast
 * path, never a second opinion.
 *
 * JPEG (ITU-T T.81, B.1): markers are 0xFF then a code; SOI and EOI and RSTn stand alone, others
 * carry a 16-bit big-endian length that counts itself. EXIF (CIPA DC-008): APP1 "Exif\0\0", then a
 * TIFF header (II or MM byte order, 42, IFD0 offset) whose IFD0 may hold tag 0x0112 Orientation.
 */

export interface JpegHeader {
  width: number;
  height: number;
  /** 1 (gray) or 3. */
  components: 1 | 3;
  /** EXIF orientation 1..8 as stored; 1 when absent. */
  orientation: number;
}

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const APP1 = 0xe1;
/** Frame markers libvips (libjpeg) decodes; C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames. */
const FRAMES = new Set([0xc0, 0xc1, 0xc2]);
const OTHER_FRAMES = new Set([0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);
const ORIENTATION_TAG = 0x0112;
/** TIFF type SHORT. */
const SHORT = 3;

/** The header of a JPEG libvips would describe the same way, or null (ask libvips). */
export function readJpegHeader(bytes: Uint8Array): JpegHeader | null {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== SOI) return null;
  let orientation: number | null = null;
  let exifSeen = false;
  let at = 2;
  for (;;) {
    // Fill bytes (0xFF runs) may precede a marker.
    if (at >= bytes.length || bytes[at] !== 0xff) return null;
    while (at < bytes.length && bytes[at] === 0xff) at++;
    if (at >= bytes.length) return null;
    const marker = bytes[at++];
    if (marker === EOI || marker === SOS || marker === SOI || marker === 0x00) return null; // no frame before the scan
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue; // RSTn, TEM: no length
    if (at + 2 > bytes.length) return null;
    const length = (bytes[at] << 8) | bytes[at + 1];
    if (length < 2 || at + length > bytes.length) return null;
    const body = bytes.subarray(at + 2, at + length);
    if (FRAMES.has(marker)) {
      if (body.length < 6) return null;
      const precision = body[0];
      const height = (body[1] << 8) | body[2];
      const width = (body[3] << 8) | body[4];
      const components = body[5];
      if (precision !== 8 || height === 0 || width === 0 || (components !== 1 && components !== 3)) return null;
      if (body.length !== 6 + 3 * components) return null;
      return { width, height, components, orientation: orientation ?? 1 };
    }
    if (OTHER_FRAMES.has(marker)) return null;
    if (marker === APP1 && !exifSeen && isExif(body)) {
      // libvips reads the first EXIF block; a later one changes nothing.
      exifSeen = true;
      orientation = exifOrientation(body.subarray(6));
      if (orientation === null) return null;
    }
    at += length;
  }
}

function isExif(body: Uint8Array): boolean {
  return body.length >= 6 && body[0] === 0x45 && body[1] === 0x78 && body[2] === 0x69 && body[3] === 0x66 && body[4] === 0 && body[5] === 0;
}

/** IFD0's orientation (1 when it has none), or null for a TIFF block we do not read as libvips would. */
function exifOrientation(tiff: Uint8Array): number | null {
  if (tiff.length < 8) return null;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return null;
  const u16 = (o: number): number => (little ? tiff[o] | (tiff[o + 1] << 8) : (tiff[o] << 8) | tiff[o + 1]);
  const u32 = (o: number): number => (little ? (tiff[o] | (tiff[o + 1] << 8) | (tiff[o + 2] << 16) | (tiff[o + 3] << 24)) >>> 0 : ((tiff[o] << 24) | (tiff[o + 1] << 16) | (tiff[o + 2] << 8) | tiff[o + 3]) >>> 0);
  if (u16(2) !== 42) return null;
  const ifd = u32(4);
  if (ifd < 8 || ifd + 2 > tiff.length) return null;
  const entries = u16(ifd);
  if (ifd + 2 + entries * 12 > tiff.length) return null;
  for (let i = 0; i < entries; i++) {
    const e = ifd + 2 + i * 12;
    if (u16(e) !== ORIENTATION_TAG) continue;
    if (u16(e + 2) !== SHORT || u32(e + 4) !== 1) return null;
    const value = u16(e + 8);
    return value >= 1 && value <= 8 ? value : null;
  }
  return 1;
}
