/**
 * The chaos run's source images: many small valid images, every hostile fixture, and the two
 * legitimate extremes a worker must survive without retries or a memory blow-up: a large PNG (by
 * default 100 megapixels, exactly the decode limit) and a 65535x1 PNG (wider than the JPEG encoder's 65500 limit).
 * Each image carries what its manifest line must say: `ok`, or the error code it must fail with.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { MAX_IMAGE_PIXELS } from '../../../src/shared/image-types.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';
import { sampleImage } from '../pipeline/helpers.js';

const HOSTILE_DIR = fileURLToPath(new URL('../../fixtures/images/hostile/', import.meta.url));

export interface ChaosImage {
  /** Key below the run's source prefix. */
  name: string;
  body: Buffer;
  /** `ok`, or the code the manifest line's error must start with. */
  expect: 'ok' | string;
  /** The manifest line may also say `failed`, provided the image failed at once (one attempt). */
  okOrPermanentFailure?: boolean;
  kind: 'sample' | 'hostile' | 'large' | 'wide';
}

interface HostileFixture {
  file: string;
  expect: string;
}

export interface ChaosImageOptions {
  /** Small valid images. */
  samples: number;
  seed: number;
  /** Add the hostile fixtures (test/fixtures/images/hostile). */
  hostile: boolean;
  /** Side of one large square PNG (0: none); 10,000 is exactly MAX_IMAGE_PIXELS. */
  large: number;
}

/** Names sort samples first, so a listing hands them out before the extremes at the end. */
export async function chaosImages(options: ChaosImageOptions): Promise<ChaosImage[]> {
  const random = mulberry32(options.seed);
  const images: ChaosImage[] = [];
  for (let i = 0; i < options.samples; i++) {
    // Sizes vary so batches mix shapes; all stay small (the tiny model's input is 32x32).
    const width = 24 + Math.floor(random() * 72);
    const height = 24 + Math.floor(random() * 72);
    images.push({ name: `img-${String(i).padStart(5, '0')}.png`, body: await sampleImage(i + options.seed, width, height), expect: 'ok', kind: 'sample' });
  }
  if (options.hostile) {
    const fixtures = JSON.parse(readFileSync(`${HOSTILE_DIR}manifest.json`, 'utf8')) as HostileFixture[];
    for (const f of fixtures) images.push({ name: `x-hostile-${f.file}`, body: readFileSync(`${HOSTILE_DIR}${f.file}`), expect: f.expect, kind: 'hostile' });
    // A legitimate image the default JPEG overlay cannot be encoded at full size: it must succeed
    // (overlay clamped) or fail at once with a code, never be retried as if S3 had hiccupped.
    images.push({ name: 'x-wide-65535x1.png', body: await solidPng(65_535, 1), expect: 'ok', okOrPermanentFailure: true, kind: 'wide' });
  }
  if (options.large > 0) {
    const side = Math.min(options.large, Math.floor(Math.sqrt(MAX_IMAGE_PIXELS)));
    images.push({ name: `x-large-${side}x${side}.png`, body: await largePng(side), expect: 'ok', kind: 'large' });
  }
  return images;
}

function solidPng(width: number, height: number): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: 90, g: 140, b: 200 } } }).png().toBuffer();
}

/** A side x side PNG with a bright block on a flat ground: compresses to a few hundred KB. */
async function largePng(side: number): Promise<Buffer> {
  const block = Math.floor(side / 4);
  const square = await sharp({ create: { width: block, height: block, channels: 3, background: { r: 240, g: 200, b: 30 } } }).png().toBuffer();
  return sharp({ create: { width: side, height: side, channels: 3, background: { r: 30, g: 60, b: 90 } }, limitInputPixels: false })
    .composite([{ input: square, left: block, top: block * 2 }])
    .png({ compressionLevel: 6 })
    .toBuffer();
}

/** Upload the images below `prefix` with bounded concurrency; returns the keys in order. */
export async function uploadImages(store: ObjectStore, bucket: string, prefix: string, images: readonly ChaosImage[], concurrency = 16): Promise<string[]> {
  const keys = images.map((img) => `${prefix}${img.name}`);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let i = next++; i < images.length; i = next++) await store.put(bucket, keys[i], images[i].body, { contentType: 'application/octet-stream' });
    }),
  );
  return keys;
}
