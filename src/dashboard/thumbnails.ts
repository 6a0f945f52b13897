/**
 * Gallery thumbnails: the overlay (or original) downscaled with sharp and cached in a bounded LRU.
 * Thumbnails are small WebP images, so a page of 48 cards costs a few hundred KiB instead of the
 * full-size overlays.
 *
 * Originals come from arbitrary buckets, so a thumbnail is made only of what the worker itself
 * would decode: the format is read from the header (magic bytes, not the name) and must be one the
 * pipeline audits (shared/image-types.ts: no SVG, HEIF, PSD…), and the header's pixel count must be
 * within the worker's own limit (`MAX_IMAGE_PIXELS`), so every image that has a result also has a
 * thumbnail. Decoding shrinks on load (JPEG DCT scaling, libvips' sequential access), so a 61 MP
 * camera JPEG costs a fraction of a full decode, and at most `concurrency` decodes run at once.
 */
import sharp, { type Metadata } from 'sharp';
import { InvalidInputError } from '../shared/errors.js';
import { DECODABLE_FORMATS, MAX_IMAGE_PIXELS } from '../shared/image-types.js';
import { Semaphore } from '../shared/semaphore.js';
import { formatS3Uri } from '../shared/storage/uri.js';
import type { ObjectStore } from '../shared/storage/object-store.js';
import type { S3Location } from '../shared/storage/uri.js';
import { LruCache } from '../shared/lru-cache.js';

export interface ThumbnailOptions {
  size: number;
  cacheEntries: number;
  cacheBytes: number;
  maxSourceBytes: number;
  /** Thumbnails decoded at once; each holds its source object in memory. */
  concurrency: number;
  /** Abort a thumbnail's decode after this many seconds (the dashboard gives `DECODE_TIMEOUT_SECONDS`, the worker's). */
  decodeTimeoutSeconds: number;
}

export class Thumbnailer {
  private readonly cache: LruCache<Buffer>;
  private readonly slots: Semaphore;
  hits = 0;
  misses = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly options: ThumbnailOptions,
  ) {
    this.cache = new LruCache<Buffer>(options.cacheEntries, options.cacheBytes);
    this.slots = new Semaphore(options.concurrency);
  }

  async thumbnail(location: S3Location): Promise<Buffer> {
    const cacheKey = `${location.bucket}\0${location.key}`;
    const cached = this.cache.get(cacheKey);
    if (cached) {
      this.hits += 1;
      return cached;
    }
    this.misses += 1;
    const out = await this.slots.run(async () => {
      const object = await this.store.get(location.bucket, location.key, { maxBytes: this.options.maxSourceBytes });
      return this.render(object.body, formatS3Uri(location));
    });
    this.cache.set(cacheKey, out);
    return out;
  }

  private async render(body: Buffer, uri: string): Promise<Buffer> {
    const refuse = (reason: string, cause?: unknown): never => {
      // Originals come from arbitrary buckets; an image we will not decode is the caller's problem.
      throw new InvalidInputError('THUMBNAIL', `cannot make a thumbnail of ${uri}: ${reason}`, cause === undefined ? undefined : { cause });
    };
    let meta: Metadata | undefined;
    try {
      // Header only: the limits below are ours to enforce with a better message.
      meta = await sharp(body, { limitInputPixels: false }).metadata();
    } catch (err) {
      refuse((err as Error).message, err);
    }
    const format = String(meta?.format ?? 'unknown');
    if (!(DECODABLE_FORMATS as readonly string[]).includes(format)) {
      refuse(`${format.toUpperCase()} images are not audited; accepted formats: ${DECODABLE_FORMATS.join(', ')}`);
    }
    const width = meta?.width ?? 0;
    const height = meta?.height ?? 0;
    if (width * height > MAX_IMAGE_PIXELS) {
      refuse(`image declares ${width}x${height} = ${(width * height / 1e6).toFixed(1)} MP, above the limit of ${(MAX_IMAGE_PIXELS / 1e6).toFixed(1)} MP`);
    }
    try {
      return await sharp(body, { limitInputPixels: MAX_IMAGE_PIXELS, animated: false, autoOrient: true })
        .resize(this.options.size, this.options.size, { fit: 'inside', withoutEnlargement: true, fastShrinkOnLoad: true })
        .webp({ quality: 78 })
        // A decode slot held for ever by a crafted image would stall every later thumbnail.
        .timeout({ seconds: this.options.decodeTimeoutSeconds })
        .toBuffer();
    } catch (err) {
      return refuse((err as Error).message, err);
    }
  }

  get cacheSize(): number {
    return this.cache.size;
  }
}
