/**
 * Image bytes → 8-bit RGB pixels, the way `keras.utils.load_img` sees them (PIL `convert('RGB')`),
 * with sharp/libvips doing the decoding.
 *
 * Where we deliberately differ from PIL: EXIF orientation is applied (option `autoOrient`), and
 * 16-bit grayscale keeps its high byte where PIL's convert('RGB') clips every value above 255 to
 * white. GIF pixels whose palette index is the transparent one come out black (libvips), where
 * PIL returns that palette entry's colour, which carries no meaning. 16-bit RGB, gray, palette
 * (PNG, with or without tRNS), RGBA/LA, CMYK and baseline JPEG match PIL bit for bit (tested).
 *
 * Order of checks matters for hostile input: emptiness and magic bytes first, then the header
 * (metadata only, no pixel data), then the pixel limit, and only then a full decode. A PNG that
 * declares 30000x30000 is therefore rejected after reading a few bytes, never allocated.
 */
import sharp from 'sharp';
import type { Metadata, SharpOptions } from 'sharp';
import { InvalidInputError } from '../../shared/errors.js';
import { DECODABLE_FORMATS, DECODE_TIMEOUT_SECONDS, MAX_IMAGE_PIXELS, type DecodableFormat } from '../../shared/image-types.js';
import { cmykToRgbPil } from './cmyk.js';
import { readJpegHeader } from './jpeg-header.js';

/** Formats the decoder accepts (sharp's `metadata().format` names), from the one table of image types. */
export { DECODABLE_FORMATS, type DecodableFormat };

/** Stable `InvalidInputError` codes raised by `decodeImage`. */
export const DECODE_ERROR_CODES = {
  empty: 'EMPTY_FILE',
  notAnImage: 'NOT_AN_IMAGE',
  unsupported: 'UNSUPPORTED_FORMAT',
  corrupt: 'CORRUPT_IMAGE',
  tooManyPixels: 'TOO_MANY_PIXELS',
  timeout: 'DECODE_TIMEOUT',
} as const;

/**
 * How colours are produced.
 * - `pil`: exactly what PIL's `convert('RGB')` gives, so the pixels equal `keras.utils.load_img`:
 *   embedded ICC profiles are ignored and CMYK uses PIL's arithmetic formula.
 * - `icc`: colour-managed into sRGB with the embedded profile (libvips' default CMYK profile when a
 *   CMYK image has none). Better looking overlays, but not what a Keras-trained model saw.
 */
export type ColourHandling = 'pil' | 'icc';

export interface DecodeOptions {
  /**
   * Largest accepted width x height, checked on the header before any pixel is decoded.
   * Default `MAX_IMAGE_PIXELS` (100 MP), the limit the dashboard's thumbnails share.
   */
  maxPixels: number;
  /**
   * Rotate/flip by the EXIF Orientation tag, as every image viewer does. Default true.
   * `keras.utils.load_img` does NOT do this (PIL ignores EXIF on open); set false for bit-exact
   * Keras parity on rotated camera JPEGs.
   */
  autoOrient: boolean;
  /** See `ColourHandling`. Default `pil`. */
  colour: ColourHandling;
  /**
   * libvips' sensitivity to damaged pixel data. Default `error`: truncated and corrupt data fail
   * (as PIL raises "image file is truncated"), but benign decoder warnings such as "extraneous
   * bytes before marker", which PIL silently accepts, do not.
   */
  failOn: 'truncated' | 'error' | 'warning';
  /** Abort a decode that runs longer than this many seconds. Default `DECODE_TIMEOUT_SECONDS` (30). */
  timeoutSeconds: number;
  /** Accepted formats. Default all of `DECODABLE_FORMATS`. */
  formats: readonly DecodableFormat[];
  /**
   * Shrink on load: an image with more pixels than this is decoded straight to about this many
   * (libvips scales JPEGs in the DCT and streams other formats through the resize, so the full
   * image is never held). Default `MAX_DECODED_PIXELS` (24 MP): camera photos up to 6000x4000 keep
   * every pixel (bit-exact with PIL); larger ones feed the model and the overlay from the shrunk
   * copy, which changes the model input by at most what a lanczos pre-shrink changes a nearest or
   * bilinear resize.
   */
  maxDecodedPixels: number;
}

/** See `DecodeOptions.maxDecodedPixels`. */
export const MAX_DECODED_PIXELS = 24_000_000;

export const DEFAULT_DECODE_OPTIONS: Readonly<DecodeOptions> = Object.freeze({
  maxPixels: MAX_IMAGE_PIXELS,
  autoOrient: true,
  colour: 'pil',
  failOn: 'error',
  timeoutSeconds: DECODE_TIMEOUT_SECONDS,
  formats: DECODABLE_FORMATS,
  maxDecodedPixels: MAX_DECODED_PIXELS,
});

/** A decoded image: packed RGB, 3 bytes per pixel, row-major (HWC), after orientation. */
export interface DecodedImage {
  data: Uint8Array;
  width: number;
  height: number;
  format: DecodableFormat;
  /** libvips' interpretation of the stored pixels, e.g. `srgb`, `b-w`, `cmyk`, `rgb16`, `grey16`. */
  sourceSpace: string;
  /** Whether the source had an alpha channel (dropped, never composited). */
  hadAlpha: boolean;
  /** EXIF orientation tag as stored (1 when absent); already applied when `autoOrient`. */
  orientation: number;
  /** The source's own (oriented) size; larger than width x height when it was shrunk on load. */
  sourceWidth: number;
  sourceHeight: number;
}

/** What the header says, before any pixel is decoded. */
export interface ImageHeader {
  format: DecodableFormat;
  /** Oriented size (EXIF applied when `autoOrient`). */
  width: number;
  height: number;
  /** Pixels a full decode would produce, after shrink-on-load (`maxDecodedPixels`). */
  decodedPixels: number;
}

/** Magic bytes of formats people keep in image buckets but libvips here cannot read. */
const KNOWN_UNREADABLE: Array<{ name: string; test: (b: Uint8Array) => boolean }> = [
  // 'BM' alone is too weak (text can start with it): also require a known DIB header size.
  { name: 'BMP', test: (b) => b.length >= 18 && b[0] === 0x42 && b[1] === 0x4d && [12, 40, 52, 56, 64, 108, 124].includes(readU32LE(b, 14)) },
  { name: 'ICO', test: (b) => b.length >= 6 && b[0] === 0 && b[1] === 0 && (b[2] === 1 || b[2] === 2) && b[3] === 0 && b[4] > 0 },
  { name: 'PSD', test: (b) => startsWith(b, [0x38, 0x42, 0x50, 0x53]) },
  { name: 'PDF', test: (b) => startsWith(b, [0x25, 0x50, 0x44, 0x46]) },
];

/**
 * The header's facts (format, oriented size, pixels a decode will produce) after the same checks
 * as `decodeImage`, without decoding a pixel: what the pixel budget is asked for.
 */
export async function readImageHeader(bytes: Uint8Array, options: Partial<DecodeOptions> = {}, source?: string): Promise<ImageHeader> {
  const { header } = await checkHeader(bytes, resolveDecodeOptions(options), source);
  return header;
}

/** What the decoder reads of sharp's metadata. */
type HeaderFacts = Pick<Metadata, 'format' | 'width' | 'height' | 'orientation' | 'space' | 'hasAlpha'>;

/**
 * A plain JPEG's facts read in JS (jpeg-header.ts), as sharp's `metadata()` reports them, without
 * a sharp call; null for anything else, which libvips reads.
 */
function fastHeader(bytes: Uint8Array, opts: DecodeOptions): HeaderFacts | null {
  if (!opts.formats.includes('jpeg')) return null;
  const jpeg = readJpegHeader(bytes);
  if (jpeg === null) return null;
  return { format: 'jpeg', width: jpeg.width, height: jpeg.height, orientation: jpeg.orientation, space: jpeg.components === 1 ? 'b-w' : 'srgb', hasAlpha: false };
}

/** Decode or refuse, on the header alone (see the order of checks above). */
async function checkHeader(bytes: Uint8Array, opts: DecodeOptions, source: string | undefined): Promise<{ header: ImageHeader; meta: HeaderFacts; where: string }> {
  const where = source ? `${source}: ` : '';
  if (bytes.length === 0) throw new InvalidInputError(DECODE_ERROR_CODES.empty, `${where}file is empty (0 bytes)`);

  const unreadable = KNOWN_UNREADABLE.find((f) => f.test(bytes));
  if (unreadable) {
    throw new InvalidInputError(
      DECODE_ERROR_CODES.unsupported,
      `${where}${unreadable.name} images are not supported; accepted formats: ${opts.formats.join(', ')}`,
    );
  }

  // Header only. The pixel limit is ours to enforce below with a better message, so lift sharp's.
  let meta: HeaderFacts;
  try {
    meta = fastHeader(bytes, opts) ?? (await sharp(bytes, { limitInputPixels: false, failOn: opts.failOn }).metadata());
  } catch (err) {
    const message = errorMessage(err);
    if (/unsupported image format/i.test(message)) {
      throw new InvalidInputError(DECODE_ERROR_CODES.notAnImage, `${where}not an image: no known image signature in the first bytes (${bytes.length} bytes)`, { cause: err });
    }
    throw new InvalidInputError(DECODE_ERROR_CODES.corrupt, `${where}corrupt image header: ${message}`, { cause: err });
  }

  const format = meta.format as string;
  if (!(opts.formats as readonly string[]).includes(format)) {
    throw new InvalidInputError(
      DECODE_ERROR_CODES.unsupported,
      `${where}${format.toUpperCase()} images are not supported; accepted formats: ${opts.formats.join(', ')}`,
    );
  }
  const width = meta.width ?? 0;
  const height = meta.height ?? 0;
  if (!(width > 0 && height > 0)) {
    throw new InvalidInputError(DECODE_ERROR_CODES.corrupt, `${where}corrupt image header: ${format} declares ${width}x${height} pixels`);
  }
  if (width * height > opts.maxPixels) {
    throw new InvalidInputError(
      DECODE_ERROR_CODES.tooManyPixels,
      `${where}image declares ${width}x${height} = ${megapixels(width * height)} MP, above the limit of ${megapixels(opts.maxPixels)} MP (maxPixels); refusing to decode a possible decompression bomb`,
    );
  }

  const [w, h] = opts.autoOrient && (meta.orientation ?? 1) >= 5 ? [height, width] : [width, height];
  const target = decodedSize(w, h, opts.maxDecodedPixels);
  return { header: { format: format as DecodableFormat, width: w, height: h, decodedPixels: target.width * target.height }, meta, where };
}

/** The size an oriented `width x height` image decodes to under `maxDecodedPixels` (aspect kept). */
export function decodedSize(width: number, height: number, maxDecodedPixels: number): { width: number; height: number } {
  if (width * height <= maxDecodedPixels) return { width, height };
  const k = Math.sqrt(maxDecodedPixels / (width * height));
  return { width: Math.max(1, Math.floor(width * k)), height: Math.max(1, Math.floor(height * k)) };
}

/**
 * Decode image bytes to RGB. Throws `InvalidInputError` with one of `DECODE_ERROR_CODES`; the
 * message names the cause (and `source`, when given, e.g. the S3 key). `beforeDecode` runs between
 * the header checks and the decode (the image core waits there for its pixel budget).
 */
export async function decodeImage(
  bytes: Uint8Array,
  options: Partial<DecodeOptions> = {},
  source?: string,
  beforeDecode?: (header: ImageHeader) => Promise<void>,
): Promise<DecodedImage> {
  const opts = resolveDecodeOptions(options);
  const { header, meta, where } = await checkHeader(bytes, opts, source);
  await beforeDecode?.(header);
  const format = header.format;
  const shrunk = decodedSize(header.width, header.height, opts.maxDecodedPixels);
  const shrink = shrunk.width !== header.width || shrunk.height !== header.height;
  const decodeOptions: SharpOptions = {
    limitInputPixels: opts.maxPixels, // second line of defence, should the header lie
    failOn: opts.failOn,
    autoOrient: opts.autoOrient,
    ignoreIcc: opts.colour === 'pil',
    pages: 1,
    page: 0,
  };
  const space = meta.space ?? 'unknown';
  const hadAlpha = meta.hasAlpha === true;
  let rgb: Uint8Array;
  let outWidth: number;
  let outHeight: number;
  try {
    if (space === 'cmyk' && opts.colour === 'pil') {
      // Keep libvips in CMYK (no profile round trip) and convert with PIL's own formula.
      let cmyk = sharp(bytes, decodeOptions).timeout({ seconds: opts.timeoutSeconds });
      if (shrink) cmyk = cmyk.resize(shrunk.width, shrunk.height, { fit: 'fill' });
      const { data, info } = await cmyk
        .pipelineColourspace('cmyk')
        .toColourspace('cmyk')
        .raw({ depth: 'uchar' })
        .toBuffer({ resolveWithObject: true });
      rgb = cmykToRgbPil(data, info.width * info.height, info.channels);
      outWidth = info.width;
      outHeight = info.height;
    } else {
      let pipeline = sharp(bytes, decodeOptions).timeout({ seconds: opts.timeoutSeconds });
      // PIL's convert('RGB') discards alpha; it does not composite over any background.
      if (hadAlpha) pipeline = pipeline.removeAlpha();
      if (shrink) pipeline = pipeline.resize(shrunk.width, shrunk.height, { fit: 'fill' });
      const { data, info } = await pipeline.toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
      if (info.channels !== 3) {
        throw new InvalidInputError(DECODE_ERROR_CODES.unsupported, `${where}${format} with colour space ${space} decoded to ${info.channels} channels, expected 3`);
      }
      rgb = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
      outWidth = info.width;
      outHeight = info.height;
    }
  } catch (err) {
    if (err instanceof InvalidInputError) throw err;
    const message = errorMessage(err);
    if (/timeout/i.test(message)) {
      throw new InvalidInputError(DECODE_ERROR_CODES.timeout, `${where}decoding took longer than ${opts.timeoutSeconds} s (timeoutSeconds)`, { cause: err });
    }
    if (/pixel limit/i.test(message)) {
      throw new InvalidInputError(DECODE_ERROR_CODES.tooManyPixels, `${where}image exceeds the limit of ${megapixels(opts.maxPixels)} MP (maxPixels)`, { cause: err });
    }
    throw new InvalidInputError(DECODE_ERROR_CODES.corrupt, `${where}corrupt or truncated ${format} data: ${message}`, { cause: err });
  }

  return { data: rgb, width: outWidth, height: outHeight, format, sourceSpace: space, hadAlpha, orientation: meta.orientation ?? 1, sourceWidth: header.width, sourceHeight: header.height };
}

/** Merge caller options over the defaults and validate them once, with messages naming the field. */
export function resolveDecodeOptions(options: Partial<DecodeOptions>): DecodeOptions {
  const opts: DecodeOptions = { ...DEFAULT_DECODE_OPTIONS, ...stripUndefined(options) };
  if (!Number.isSafeInteger(opts.maxPixels) || opts.maxPixels <= 0) {
    throw new RangeError(`decode option maxPixels must be a positive integer, got ${String(opts.maxPixels)}`);
  }
  if (!Number.isSafeInteger(opts.maxDecodedPixels) || opts.maxDecodedPixels <= 0) {
    throw new RangeError(`decode option maxDecodedPixels must be a positive integer, got ${String(opts.maxDecodedPixels)}`);
  }
  if (!(opts.timeoutSeconds > 0)) throw new RangeError(`decode option timeoutSeconds must be > 0, got ${String(opts.timeoutSeconds)}`);
  if (opts.colour !== 'pil' && opts.colour !== 'icc') throw new RangeError(`decode option colour must be 'pil' or 'icc', got ${String(opts.colour)}`);
  for (const f of opts.formats) {
    if (!(DECODABLE_FORMATS as readonly string[]).includes(f)) {
      throw new RangeError(`decode option formats: unknown format ${String(f)}; known: ${DECODABLE_FORMATS.join(', ')}`);
    }
  }
  return opts;
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function megapixels(pixels: number): string {
  return (pixels / 1e6).toFixed(1);
}

function errorMessage(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).trim().replace(/\s*\n\s*/g, ' | ');
}

function startsWith(bytes: Uint8Array, prefix: number[]): boolean {
  return bytes.length >= prefix.length && prefix.every((v, i) => bytes[i] === v);
}

function readU32LE(bytes: Uint8Array, offset: number): number {
  return (bytes[offset] | (bytes[offset + 1] << 8) | (bytes[offset + 2] << 16) | (bytes[offset + 3] << 24)) >>> 0;
}
