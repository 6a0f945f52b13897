/**
 * The image formats the pipeline audits (what the decoder accepts), by file extension, with their
 * content types. The producer's default filter, the demo's upload and the dashboard's proxy all
 * read this one table.
 */
export const IMAGE_CONTENT_TYPES: Readonly<Record<string, string>> = Object.freeze({
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.png': 'image/png',
  '.webp': 'image/webp',
  '.gif': 'image/gif',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
});

/** Extensions without the dot, lowercase: `jpg`, `jpeg`, … */
export const IMAGE_EXTENSIONS: readonly string[] = Object.freeze(Object.keys(IMAGE_CONTENT_TYPES).map((e) => e.slice(1)));
