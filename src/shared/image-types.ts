/**
 * The images the pipeline audits, in one table: by file extension, their content type and the
 * format libvips reports for them (sharp's `metadata().format`), plus the limits every reader of
 * image bytes shares. The producer's default filter, the demo's upload, the worker's decoder and
 * the dashboard's proxy and thumbnails all read this module, so what is audited, what is decoded
 * and what is shown cannot drift apart.
 */
const IMAGE_TYPES = {
  '.jpg': { contentType: 'image/jpeg', format: 'jpeg' },
  '.jpeg': { contentType: 'image/jpeg', format: 'jpeg' },
  '.png': { contentType: 'image/png', format: 'png' },
  '.webp': { contentType: 'image/webp', format: 'webp' },
  '.gif': { contentType: 'image/gif', format: 'gif' },
  '.tif': { contentType: 'image/tiff', format: 'tiff' },
  '.tiff': { contentType: 'image/tiff', format: 'tiff' },
} as const;

/** A format the decoder accepts, named as sharp's `metadata().format` reports it. */
export type DecodableFormat = (typeof IMAGE_TYPES)[keyof typeof IMAGE_TYPES]['format'];

/** Content type by extension (with the dot, lowercase). */
export const IMAGE_CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze(
  Object.fromEntries(Object.entries(IMAGE_TYPES).map(([ext, t]) => [ext, t.contentType])),
);

/** Extensions without the dot, lowercase: `jpg`, `jpeg`, … */
export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze(Object.keys(IMAGE_TYPES).map((e) => e.slice(1)));

/** Formats decoded anywhere in the project (by content, not by name): jpeg, png, webp, gif, tiff. */
export const DECODABLE_FORMATS: readonly DecodableFormat[] = Object.freeze([...new Set(Object.values(IMAGE_TYPES).map((t) => t.format))]);

/**
 * Largest width x height decoded anywhere, checked on the header before any pixel is decoded:
 * 100 MP (300 MB as RGB). Pillow warns at 89.5 MP and refuses at 179 MP; 100 MP keeps every real
 * camera photo (a 61 MP full-frame sensor, a 100 MP medium-format one) while bounding one decode.
 */
export const MAX_IMAGE_PIXELS = 100_000_000;

/**
 * Longest a decode may run (libvips' timeout), in seconds: the worker's default and the dashboard's
 * thumbnails alike. A crafted image can keep a decoder busy far longer than any real one takes.
 */
export const DECODE_TIMEOUT_SECONDS = 30;

/** Largest source object read into memory for decoding, in bytes: 100 MiB. */
export const MAX_SOURCE_BYTES = 100 * 1024 * 1024;
