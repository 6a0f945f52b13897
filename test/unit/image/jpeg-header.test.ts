import { readFileSync } from 'node:fs';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../../src/worker/image/decode.js';
import { readJpegHeader } from '../../../src/worker/image/jpeg-header.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';

const hostile = (name: string): Buffer => readFileSync(new URL(`../../fixtures/images/hostile/${name}`, import.meta.url));

/** A small photo-like RGB image: gradients, so every encoder setting has something to code. */
function pixels(width: number, height: number): Buffer {
  const data = Buffer.alloc(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    data[3 * i] = (i % width) * 3;
    data[3 * i + 1] = Math.floor(i / width) * 5;
    data[3 * i + 2] = (i * 7) & 0xff;
  }
  return data;
}

/** JPEGs as cameras, phones and libraries write them, each with what libvips says of it. */
async function samples(): Promise<Array<{ name: string; bytes: Buffer }>> {
  const raw = (w: number, h: number) => sharp(pixels(w, h), { raw: { width: w, height: h, channels: 3 } });
  const out: Array<{ name: string; bytes: Buffer }> = [];
  for (let orientation = 1; orientation <= 8; orientation++) out.push({ name: `orientation ${orientation}`, bytes: await raw(37, 21).withMetadata({ orientation }).jpeg().toBuffer() });
  out.push({ name: 'plain', bytes: await raw(320, 240).jpeg().toBuffer() });
  out.push({ name: 'progressive', bytes: await raw(65, 33).jpeg({ progressive: true }).toBuffer() });
  out.push({ name: '4:4:4, optimised Huffman', bytes: await raw(16, 9).jpeg({ chromaSubsampling: '4:4:4', optimiseCoding: true }).toBuffer() });
  out.push({ name: 'gray', bytes: await raw(50, 70).toColourspace('b-w').jpeg().toBuffer() });
  out.push({ name: 'ICC profile and EXIF', bytes: await raw(40, 30).withMetadata({ icc: 'p3', orientation: 3 }).jpeg().toBuffer() });
  out.push({ name: 'large side', bytes: await raw(4000, 2).jpeg().toBuffer() });
  out.push({ name: 'CMYK', bytes: await raw(20, 20).toColourspace('cmyk').jpeg().toBuffer() });
  out.push({ name: 'hostile exif-rotate6', bytes: hostile('exif-rotate6.jpg') });
  out.push({ name: 'hostile cmyk', bytes: hostile('cmyk.jpg') });
  out.push({ name: 'hostile truncated', bytes: hostile('truncated.jpg') });
  return out;
}

describe('readJpegHeader', () => {
  it("answers what sharp's metadata says, or leaves the JPEG to libvips", async () => {
    let answered = 0;
    for (const { name, bytes } of await samples()) {
      const header = readJpegHeader(bytes);
      const meta = await sharp(bytes).metadata();
      if (header === null) {
        // Only what the fast path deliberately leaves out: CMYK here.
        expect([name, meta.channels]).toEqual([name, 4]);
        continue;
      }
      answered++;
      expect([name, header.width, header.height, header.components, header.orientation]).toEqual([name, meta.width, meta.height, meta.channels, meta.orientation ?? 1]);
      expect([name, meta.space]).toEqual([name, header.components === 1 ? 'b-w' : 'srgb']);
    }
    expect(answered).toBe(16); // all but the two CMYK files
  });

  it('leaves alone what is not a plain 8-bit JPEG frame', () => {
    expect(readJpegHeader(new Uint8Array([0x89, 0x50, 0x4e, 0x47]))).toBeNull();
    expect(readJpegHeader(new Uint8Array([0xff, 0xd8, 0xff, 0xd9]))).toBeNull(); // no frame
    // SOF0 with 12-bit precision, then a DNL-style zero height.
    const sof = (precision: number, height: number, components: number) =>
      new Uint8Array([0xff, 0xd8, 0xff, 0xc0, 0, 8 + 3 * components, precision, height >> 8, height & 0xff, 0, 16, components, ...Array(3 * components).fill(1)]);
    expect(readJpegHeader(sof(8, 9, 3))).toEqual({ width: 16, height: 9, components: 3, orientation: 1 });
    expect(readJpegHeader(sof(12, 9, 3))).toBeNull();
    expect(readJpegHeader(sof(8, 0, 3))).toBeNull();
    expect(readJpegHeader(sof(8, 9, 4))).toBeNull();
    expect(readJpegHeader(sof(8, 9, 2))).toBeNull();
  });

  it('on damaged headers, answers only what libvips would, and a decode still refuses what libvips refuses', async () => {
    const rand = mulberry32(2024);
    const base = await sharp(pixels(33, 17), { raw: { width: 33, height: 17, channels: 3 } }).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const sosAt = base.indexOf(Buffer.from([0xff, 0xda]));
    let disagreements = 0;
    let refusedByDecode = 0;
    for (let trial = 0; trial < 300; trial++) {
      const bytes = Buffer.from(trial < 150 ? base.subarray(0, Math.floor(rand() * (sosAt + 4))) : base);
      if (trial >= 150) for (let k = 0; k < 3; k++) bytes[2 + Math.floor(rand() * (sosAt - 2))] = Math.floor(rand() * 256);
      const header = readJpegHeader(bytes);
      if (header === null) continue;
      const meta = await sharp(bytes).metadata().catch(() => null);
      if (meta !== null) {
        if (meta.width !== header.width || meta.height !== header.height || (meta.orientation ?? 1) !== header.orientation) disagreements++;
        continue;
      }
      // libvips refuses this header; the decode behind the fast path must refuse it too.
      await expect(decodeImage(bytes)).rejects.toMatchObject({ code: expect.stringMatching(/^(CORRUPT_IMAGE|NOT_AN_IMAGE|EMPTY_FILE)$/) });
      refusedByDecode++;
    }
    expect(disagreements).toBe(0);
    expect(refusedByDecode).toBeGreaterThan(0); // the damaged cases were exercised
  });

  it('the decoder reaches the same decision through it: orientation applied, sizes, refusals', async () => {
    const rotated = await sharp(pixels(64, 32), { raw: { width: 64, height: 32, channels: 3 } }).withMetadata({ orientation: 6 }).jpeg().toBuffer();
    const img = await decodeImage(rotated);
    expect([img.width, img.height, img.orientation, img.sourceSpace, img.format]).toEqual([32, 64, 6, 'srgb', 'jpeg']);
    const gray = await decodeImage(await sharp(pixels(8, 8), { raw: { width: 8, height: 8, channels: 3 } }).toColourspace('b-w').jpeg().toBuffer());
    expect([gray.sourceSpace, gray.data.length]).toEqual(['b-w', 8 * 8 * 3]);
    await expect(decodeImage(await sharp(pixels(300, 300), { raw: { width: 300, height: 300, channels: 3 } }).jpeg().toBuffer(), { maxPixels: 80_000 })).rejects.toMatchObject({ code: 'TOO_MANY_PIXELS' });
  });
});
