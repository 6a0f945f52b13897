/**
 * Gallery thumbnails: the overlay (or original) downscaled with sharp and cached in a bounded LRU.
 * Thumbnails are small WebP images, so a page of 48 cards costs a few hundred KiB instead of the
 * full-size overlays. Decoding is limited in pixels, because originals come from arbitrary buckets.
 */
import sharp from 'sharp';
import { InvalidInputError } from '../shared/errors.js';
import { formatS3Uri } from '../shared/storage/uri.js';
import type { ObjectStore } from '../shared/storage/object-store.js';
import type { S3Location } from '../shared/storage/uri.js';
import { LruCache } from './lru-cache.js';

export interface ThumbnailOptions {
  size: number;
  cacheEntries: number;
  cacheBytes: number;
  maxSourceBytes: number;
}

/** 40 megapixels: far above any overlay, far below a decompression bomb. */
const MAX_INPUT_PIXELS = 40_000_000;

export class Thumbnailer {
  private readonly cache: LruCache<Buffer>;
  hits = 0;
  misses = 0;

  constructor(
    private readonly store: ObjectStore,
    private readonly options: ThumbnailOptions,
  ) {
    this.cache = new LruCache<Buffer>(options.cacheEntries, options.cacheBytes);
  }

  async thumbnail(location: S3Location): Promise<Buffer> {
    const cacheKey = `${location.bucket}\0${location.key}`;
    const cached = this.cache.get(cacheKey);
    if (cached) {
      this.hits += 1;
      return cached;
    }
    this.misses += 1;
    const object = await this.store.get(location.bucket, location.key, { maxBytes: this.options.maxSourceBytes });
    let out: Buffer;
    try {
      out = await sharp(object.body, { limitInputPixels: MAX_INPUT_PIXELS, animated: false })
        .rotate()
        .resize(this.options.size, this.options.size, { fit: 'inside', withoutEnlargement: true })
        .webp({ quality: 78 })
        .toBuffer();
    } catch (err) {
      // Originals come from arbitrary buckets; an undecodable one is the caller's problem, not ours.
      throw new InvalidInputError('THUMBNAIL', `cannot make a thumbnail of ${formatS3Uri(location)}: ${(err as Error).message}`, { cause: err });
    }
    this.cache.set(cacheKey, out);
    return out;
  }

  get cacheSize(): number {
    return this.cache.size;
  }
}
