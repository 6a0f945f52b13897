/**
 * The run analysis on S3: files under the run's output prefix (streamed uploads), and report
 * thumbnails made from the run's own overlays.
 */
import sharp from 'sharp';
import type { StreamUploader } from '../run-finalizer.js';
import type { ObjectStore } from '../storage/object-store.js';
import { formatS3Uri, joinKey, parseS3Uri, type S3Location } from '../storage/uri.js';
import type { AnalysisSink } from './run-analysis.js';

export function s3Sink(upload: StreamUploader, output: S3Location): AnalysisSink {
  return {
    location: formatS3Uri(output),
    put: (name, body, contentType) => upload(output.bucket, joinKey(output.key, name), body, contentType),
  };
}

export interface ThumbnailOptions {
  /** Longer side in pixels. Default 96. */
  size: number;
  /** Largest overlay read, in bytes. Default 20 MiB. */
  maxBytes: number;
}

/** A JPEG data URI of an overlay, downscaled; null when it cannot be read or decoded. */
export function s3Thumbnail(store: ObjectStore, options: Partial<ThumbnailOptions> = {}): (uri: string) => Promise<string | null> {
  const size = options.size ?? 96;
  const maxBytes = options.maxBytes ?? 20 * 2 ** 20;
  return async (uri) => {
    try {
      const loc = parseS3Uri(uri, 'overlay');
      const object = await store.get(loc.bucket, loc.key, { maxBytes });
      const jpeg = await sharp(object.body, { limitInputPixels: 100_000_000, animated: false }).resize(size, size, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 70 }).toBuffer();
      return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
    } catch {
      return null;
    }
  };
}
