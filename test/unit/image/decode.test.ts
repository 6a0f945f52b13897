/**
 * Decoding of real files: the hostile and odd fixtures from scripts/fixtures/make-hostile-images.ts.
 * Each one either decodes to the stated size with asserted pixel values, or is rejected with the
 * stated `InvalidInputError` code and a message that names the cause.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { InvalidInputError, isRetryable } from '../../../src/shared/errors.js';
import type { DecodedImage } from '../../../src/worker/image/decode.js';
import { decodeImage, resolveDecodeOptions } from '../../../src/worker/image/decode.js';

const HOSTILE = join(import.meta.dirname, '..', '..', 'fixtures', 'images', 'hostile');

interface Expectation {
  file: string;
  description: string;
  expect: string;
  format?: string;
  width?: number;
  height?: number;
}
const manifest = JSON.parse(readFileSync(join(HOSTILE, 'manifest.json'), 'utf8')) as Expectation[];
const bytesOf = (file: string): Buffer => readFileSync(join(HOSTILE, file));

function pixel(img: DecodedImage, x: number, y: number): [number, number, number] {
  const i = (y * img.width + x) * 3;
  return [img.data[i], img.data[i + 1], img.data[i + 2]];
}

async function rejection(promise: Promise<unknown>): Promise<InvalidInputError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InvalidInputError);
  return err as InvalidInputError;
}

describe('decodeImage on the hostile fixtures', () => {
  it('covers every case the fault tests need', () => {
    const files = manifest.map((m) => m.file);
    for (const f of ['empty.jpg', 'truncated.jpg', 'text.jpg', 'bomb-30000x30000.png', 'cmyk.jpg', 'rgb16.png', 'rgba.png', 'animated.gif', 'exif-rotate6.jpg', 'lossless.webp', 'pattern.tiff']) {
      expect(files).toContain(f);
    }
  });

  for (const m of manifest) {
    it(`${m.file}: ${m.description} → ${m.expect}`, async () => {
      const bytes = bytesOf(m.file);
      if (m.expect === 'ok') {
        const img = await decodeImage(bytes);
        expect(img.format).toBe(m.format);
        expect([img.width, img.height]).toEqual([m.width, m.height]);
        expect(img.data.length).toBe(img.width * img.height * 3);
      } else {
        const err = await rejection(decodeImage(bytes, {}, `bucket/${m.file}`));
        expect(err.code).toBe(m.expect);
        expect(err.retryable).toBe(false);
        expect(isRetryable(err)).toBe(false);
        expect(err.message).toContain(`bucket/${m.file}: `);
      }
    });
  }
});

describe('decodeImage under concurrency', () => {
  it('decodes or rejects every fixture correctly with 3 copies of each in flight at once', async () => {
    const jobs = [...manifest, ...manifest, ...manifest];
    const results = await Promise.allSettled(jobs.map((m) => decodeImage(bytesOf(m.file))));
    results.forEach((r, i) => {
      const m = jobs[i];
      if (m.expect === 'ok') {
        expect(r.status, m.file).toBe('fulfilled');
        if (r.status === 'fulfilled') expect([r.value.width, r.value.height]).toEqual([m.width, m.height]);
      } else {
        expect(r.status, m.file).toBe('rejected');
        if (r.status === 'rejected') expect((r.reason as InvalidInputError).code).toBe(m.expect);
      }
    });
  });
});

describe('decoded pixel values', () => {
  it('drops alpha like PIL convert("RGB"): transparent pixels keep their colour, no compositing', async () => {
    const img = await decodeImage(bytesOf('rgba.png'));
    expect(img.hadAlpha).toBe(true);
    expect(pixel(img, 0, 0)).toEqual([200, 50, 10]); // alpha 0
    expect(pixel(img, 39, 29)).toEqual([200, 50, 10]); // alpha 128
  });

  it('applies EXIF orientation 6: stored 64x32 top-left block is displayed 32x64 top-right', async () => {
    const img = await decodeImage(bytesOf('exif-rotate6.jpg'));
    expect(img.orientation).toBe(6);
    expect([img.width, img.height]).toEqual([32, 64]);
    const [r, g, b] = pixel(img, 28, 4);
    expect(r).toBeGreaterThan(200);
    expect(g).toBeLessThan(60);
    expect(b).toBeLessThan(60);
    expect(Math.min(...pixel(img, 4, 4))).toBeGreaterThan(200); // top-left is white
    expect(Math.min(...pixel(img, 28, 60))).toBeGreaterThan(200); // bottom-right is white
  });

  it('keeps the stored orientation when autoOrient is false (exact keras.utils.load_img behaviour)', async () => {
    const img = await decodeImage(bytesOf('exif-rotate6.jpg'), { autoOrient: false });
    expect([img.width, img.height]).toEqual([64, 32]);
    expect(pixel(img, 4, 4)[0]).toBeGreaterThan(200);
    expect(pixel(img, 4, 4)[1]).toBeLessThan(60);
  });

  it('converts CMYK with PIL\'s formula by default and colour-manages it with colour: "icc"', async () => {
    // PIL 9.4 gives (189,255,243) and (246,34,255) for these two pixels (checked with Pillow).
    const pil = await decodeImage(bytesOf('cmyk.jpg'));
    expect(pil.sourceSpace).toBe('cmyk');
    expect(pixel(pil, 0, 0)).toEqual([189, 255, 243]);
    expect(pixel(pil, 47, 31)).toEqual([246, 34, 255]);
    const icc = await decodeImage(bytesOf('cmyk.jpg'), { colour: 'icc' });
    const [r, g, b] = pixel(icc, 0, 0); // still cyan: red well below green and blue
    expect(g - r).toBeGreaterThan(30);
    expect(b - r).toBeGreaterThan(30);
    expect(pixel(icc, 0, 0)).not.toEqual(pixel(pil, 0, 0));
  });

  it('ignores embedded ICC profiles by default (as PIL) and applies them with colour: "icc"', async () => {
    // sRGB red stored in Display P3 encoding with the P3 profile embedded: about (234, 51, 35).
    const p3 = await sharp({ create: { width: 8, height: 8, channels: 3, background: { r: 255, g: 0, b: 0 } } })
      .withIccProfile('p3')
      .png()
      .toBuffer();
    const raw = pixel(await decodeImage(p3), 3, 3);
    expect(raw[0]).toBeLessThan(245);
    expect(raw[1]).toBeGreaterThan(30);
    const managed = pixel(await decodeImage(p3, { colour: 'icc' }), 3, 3);
    expect(managed[0]).toBeGreaterThan(250);
    expect(managed[1]).toBeLessThan(10);
  });

  it('reduces 16-bit samples to their high byte, as PIL does for 16-bit RGB PNG', async () => {
    const img = await decodeImage(bytesOf('rgb16.png'));
    expect(img.sourceSpace).toBe('rgb16');
    expect(pixel(img, 0, 0)).toEqual([0xab, 0x34, 0xf0]);
    expect(pixel(img, 39, 29)).toEqual([0xab, 0x34, 0xf0]);
  });

  it('reduces 16-bit gray to the high byte (PIL would clip it to 255: a Pillow quirk we do not copy)', async () => {
    const img = await decodeImage(bytesOf('gray16.png'));
    expect(img.sourceSpace).toBe('grey16');
    for (const x of [0, 7, 15]) {
      const high = (0x0fff * (x + 1)) >> 8;
      expect(pixel(img, x, 2)).toEqual([high, high, high]);
    }
  });

  it('replicates gray into R, G and B', async () => {
    const img = await decodeImage(bytesOf('gray.png'));
    expect(img.sourceSpace).toBe('b-w');
    for (const x of [0, 1, 17, 31]) expect(pixel(img, x, 3)).toEqual([8 * x, 8 * x, 8 * x]);
  });

  it('takes the first frame of an animated GIF', async () => {
    const img = await decodeImage(bytesOf('animated.gif'));
    expect(pixel(img, 0, 0)).toEqual([255, 0, 0]);
    expect(pixel(img, 31, 23)).toEqual([255, 0, 0]);
  });

  it('decodes lossless WebP and TIFF exactly', async () => {
    for (const file of ['lossless.webp', 'pattern.tiff']) {
      const img = await decodeImage(bytesOf(file));
      for (const [x, y] of [[0, 0], [13, 7], [39, 29]] as const) {
        expect(pixel(img, x, y)).toEqual([x * 6, y * 8, (x + y) % 2 === 0 ? 255 : 0]);
      }
    }
  });
});

describe('rejections', () => {
  it('rejects the 30000x30000 PNG from its header, fast, with the numbers in the message', async () => {
    const started = performance.now();
    const err = await rejection(decodeImage(bytesOf('bomb-30000x30000.png')));
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err.code).toBe('TOO_MANY_PIXELS');
    expect(err.message).toContain('30000x30000');
    expect(err.message).toContain('maxPixels');
  });

  it('honours a configured pixel limit, just above and just below the image size', async () => {
    const bytes = bytesOf('lossless.webp'); // 40x30 = 1200 pixels
    await expect(decodeImage(bytes, { maxPixels: 1200 })).resolves.toMatchObject({ width: 40, height: 30 });
    expect((await rejection(decodeImage(bytes, { maxPixels: 1199 }))).code).toBe('TOO_MANY_PIXELS');
  });

  it('names the format for readable-but-unsupported images', async () => {
    expect((await rejection(decodeImage(bytesOf('vector.svg')))).message).toMatch(/SVG images are not supported/);
    expect((await rejection(decodeImage(bytesOf('image.avif')))).message).toMatch(/HEIF images are not supported/);
    expect((await rejection(decodeImage(bytesOf('image.bmp')))).message).toMatch(/BMP images are not supported/);
  });

  it('honours a restricted format list', async () => {
    const err = await rejection(decodeImage(bytesOf('animated.gif'), { formats: ['jpeg', 'png'] }));
    expect(err.code).toBe('UNSUPPORTED_FORMAT');
    expect(err.message).toContain('jpeg, png');
  });

  it('fails truncated JPEG data even at the most lenient setting that still checks data', async () => {
    for (const failOn of ['truncated', 'error', 'warning'] as const) {
      const err = await rejection(decodeImage(bytesOf('truncated.jpg'), { failOn }));
      expect(err.code).toBe('CORRUPT_IMAGE');
      expect(err.message).toMatch(/truncated|premature end/i);
    }
  });

  it('rejects a truncated PNG (cut inside IDAT) as corrupt', async () => {
    const png = await sharp(Buffer.alloc(64 * 64 * 3, 90), { raw: { width: 64, height: 64, channels: 3 } })
      .png({ compressionLevel: 0 })
      .toBuffer();
    const err = await rejection(decodeImage(png.subarray(0, Math.floor(png.length / 2))));
    expect(err.code).toBe('CORRUPT_IMAGE');
  });

  it('says "not an image" for random bytes, "empty" for zero bytes', async () => {
    expect((await rejection(decodeImage(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])))).code).toBe('NOT_AN_IMAGE');
    expect((await rejection(decodeImage(new Uint8Array(0)))).message).toMatch(/empty/);
    // Text that merely starts with "BM" is not mistaken for a BMP.
    expect((await rejection(decodeImage(Buffer.from('BMW owners club newsletter, issue 12\n')))).code).toBe('NOT_AN_IMAGE');
  });

  it('validates options with messages naming the field', () => {
    expect(() => resolveDecodeOptions({ maxPixels: 0 })).toThrow(/maxPixels/);
    expect(() => resolveDecodeOptions({ timeoutSeconds: -1 })).toThrow(/timeoutSeconds/);
    expect(() => resolveDecodeOptions({ formats: ['bmp' as 'png'] })).toThrow(/unknown format bmp/);
    expect(resolveDecodeOptions({ maxPixels: undefined }).maxPixels).toBe(100_000_000);
  });
});
