import zlib from 'node:zlib';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeGrayPng, PNG_FILTER, type PngFilter } from '../../../src/worker/image/png-gray.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';

/** Chunks of a PNG, CRCs checked (ISO/IEC 15948, 5.3). */
function chunksOf(png: Buffer): Array<{ type: string; data: Buffer }> {
  expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const out: Array<{ type: string; data: Buffer }> = [];
  for (let at = 8; at < png.length; ) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + length);
    expect(png.readUInt32BE(at + 8 + length)).toBe(zlib.crc32(png.subarray(at + 4, at + 8 + length)));
    out.push({ type, data });
    at += 12 + length;
  }
  return out;
}

/** Gradient rows with noise: every filter gets non-trivial neighbours, and bytes wrap. */
function levelsOf(width: number, height: number, seed: number): Uint8Array {
  const rand = mulberry32(seed);
  return Uint8Array.from({ length: width * height }, (_, i) => ((i % width) * 7 + Math.floor(i / width) * 3 + Math.floor(rand() * 40)) & 0xff);
}

describe('encodeGrayPng', () => {
  const sizes = [[1, 1], [2, 3], [17, 5], [224, 168]] as const;
  for (const filter of Object.keys(PNG_FILTER) as PngFilter[]) {
    it(`"${filter}" rows decode (libvips) to the levels given, at every size`, async () => {
      for (const [w, h] of sizes) {
        const levels = levelsOf(w, h, w * 31 + h);
        const png = encodeGrayPng(levels, w, h, { filter, level: 1 });
        // sharp converts to sRGB on output unless told otherwise.
        const { data, info } = await sharp(png).toColourspace('b-w').raw().toBuffer({ resolveWithObject: true });
        expect([w, h, info.width, info.height, info.channels]).toEqual([w, h, w, h, 1]);
        expect(Buffer.compare(data, Buffer.from(levels))).toBe(0);
        // Every row carries the filter asked for.
        const idat = Buffer.concat(chunksOf(png).filter((c) => c.type === 'IDAT').map((c) => c.data));
        const raw = zlib.inflateSync(idat);
        expect(raw.length).toBe((w + 1) * h);
        for (let y = 0; y < h; y++) expect(raw[y * (w + 1)]).toBe(PNG_FILTER[filter]);
      }
    });
  }

  it('writes IHDR (8-bit gray, no interlace), one IDAT and IEND, at the zlib level asked', () => {
    const levels = levelsOf(64, 48, 3);
    const png = encodeGrayPng(levels, 64, 48, { level: 9 });
    const chunks = chunksOf(png);
    expect(chunks.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    const ihdr = chunks[0].data;
    expect([ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ...ihdr.subarray(8)]).toEqual([64, 48, 8, 0, 0, 0, 0]);
    // zlib's header names the level class: 9 is "maximum compression" (FLEVEL 3), 1 "fastest" (0).
    expect(chunks[1].data[1] >> 6).toBe(3);
    expect(chunksOf(encodeGrayPng(levels, 64, 48, { level: 1 }))[1].data[1] >> 6).toBe(0);
  });

  it('refuses sizes, buffers, levels and filters that do not fit', () => {
    expect(() => encodeGrayPng(new Uint8Array(4), 0, 4)).toThrow(/positive integers/);
    expect(() => encodeGrayPng(new Uint8Array(5), 2, 2)).toThrow(/needs 4 levels, has 5/);
    expect(() => encodeGrayPng(new Uint8Array(4), 2, 2, { level: 10 })).toThrow(/level must be an integer 0..9/);
    expect(() => encodeGrayPng(new Uint8Array(4), 2, 2, { filter: 'median' as PngFilter })).toThrow(/unknown PNG filter median/);
  });
});
