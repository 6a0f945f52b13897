/**
 * Gallery thumbnails against a real S3 server: one pixel limit with the worker's decode (a 61 MP
 * camera JPEG that the worker processes gets its thumbnail, cheaply, by shrink-on-load), and no
 * decoding of formats the worker refuses.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_IMAGE_PIXELS } from '../../../src/shared/image-types.js';
import { DEFAULT_DECODE_OPTIONS } from '../../../src/worker/image/decode.js';
import { REPO_ROOT } from '../../helpers/cluster.js';
import { startHarness, type DashboardHarness } from './harness.js';
import { seedRun, type SeededRun } from './seed.js';

const HOSTILE = join(REPO_ROOT, 'test', 'fixtures', 'images', 'hostile');

describe('gallery thumbnails', () => {
  let h: DashboardHarness;
  let run: SeededRun;
  beforeAll(async () => {
    h = await startHarness();
    run = await seedRun(h.seed, 'run-thumbs', ['camera.jpg', 'vector.png', 'phone.png', 'bomb.png', 'rotated.jpg'].map((name) => ({ name, status: 'ok' as const })));
  });
  afterAll(async () => {
    await h?.close();
  });

  /** Replace the original of `name` with `bytes` and ask for its thumbnail. */
  const thumbnailOf = async (name: string, bytes: Buffer) => {
    const key = run.sourcePrefix + name;
    await h.b.store.put(h.b.bucket, key, bytes, { contentType: 'application/octet-stream' });
    return h.app.inject({ method: 'GET', url: `/api/runs/run-thumbs/thumbnail?of=original&key=${encodeURIComponent(key)}` });
  };

  it('uses the worker decode limit (one constant in src/shared)', () => {
    expect(DEFAULT_DECODE_OPTIONS.maxPixels).toBe(MAX_IMAGE_PIXELS);
    expect(MAX_IMAGE_PIXELS).toBe(100_000_000);
  });

  it('thumbnails a 61 MP camera JPEG, which the worker processes, by shrinking it on load', async () => {
    const camera = await sharp({ create: { width: 9568, height: 6376, channels: 3, background: { r: 40, g: 120, b: 200 } } }).jpeg({ quality: 85 }).toBuffer();
    const t0 = performance.now();
    const res = await thumbnailOf('camera.jpg', camera);
    const ms = performance.now() - t0;
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('image/webp');
    const meta = await sharp(res.rawPayload).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['webp', 256, 171]);
    process.stderr.write(`[thumbnail] 61 MP JPEG (${(camera.length / 1e6).toFixed(1)} MB) -> 256 px WebP in ${ms.toFixed(0)} ms\n`);
    // EXIF orientation is applied, as the worker applies it.
    const rotated = await thumbnailOf('rotated.jpg', readFileSync(join(HOSTILE, 'exif-rotate6.jpg')));
    expect(rotated.statusCode).toBe(200);
    const stored = await sharp(readFileSync(join(HOSTILE, 'exif-rotate6.jpg'))).metadata();
    const thumb = await sharp(rotated.rawPayload).metadata();
    expect((thumb.width ?? 0) > (thumb.height ?? 0)).toBe((stored.height ?? 0) > (stored.width ?? 0));
  });

  it('refuses formats the worker refuses (SVG, HEIF/AVIF) without decoding them, and headers above the pixel limit', async () => {
    const cases: Array<[string, Buffer, RegExp]> = [
      ['vector.png', readFileSync(join(HOSTILE, 'vector.svg')), /SVG images are not audited; accepted formats: jpeg, png, webp, gif, tiff/],
      ['phone.png', readFileSync(join(HOSTILE, 'image.avif')), /HEIF images are not audited/],
      ['bomb.png', readFileSync(join(HOSTILE, 'bomb-30000x30000.png')), /30000x30000 = 900\.0 MP, above the limit of 100\.0 MP/],
    ];
    for (const [name, bytes, message] of cases) {
      const res = await thumbnailOf(name, bytes);
      expect(res.statusCode, name).toBe(400);
      expect(res.json(), name).toMatchObject({ error: 'THUMBNAIL', message: expect.stringMatching(message) });
    }
  });
});
