/**
 * Keras/PIL parity: decode + resize + caffe preprocessing against Pillow 9.4 / NumPy outputs
 * committed by scripts/reference/pil_preprocess.py. Decoding (JPEG included), NEAREST and BILINEAR
 * are all bit-exact; a resize mismatch reports how many bytes differ and the worst one.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../../src/worker/image/decode.js';
import { preprocess } from '../../../src/worker/image/preprocess.js';
import { resizeBilinearPil, resizeNearestPil } from '../../../src/worker/image/resize.js';

const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'images');

interface Sample {
  x: number;
  y: number;
  rgb: [number, number, number];
  bgrMinusMean: [number, number, number];
}
interface ReferenceOutput {
  file: string;
  rgbSha256: string;
  preprocessedSha256: string;
  samples: Sample[];
}
interface ReferenceCase {
  input: string;
  pilMode: string;
  width: number;
  height: number;
  decodedSha256: string;
  outputs: { nearest: ReferenceOutput; bilinear: ReferenceOutput };
}
interface ReferenceDoc {
  pillow: string;
  target: [number, number];
  cases: ReferenceCase[];
}

const reference = JSON.parse(readFileSync(join(FIXTURES, 'reference', 'preprocess.json'), 'utf8')) as ReferenceDoc;
const [TARGET_W, TARGET_H] = reference.target;

const sha256 = (bytes: Uint8Array | Float32Array): string =>
  createHash('sha256').update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).digest('hex');

async function readReferencePng(file: string): Promise<Uint8Array> {
  const { data, info } = await sharp(join(FIXTURES, 'reference', file)).raw().toBuffer({ resolveWithObject: true });
  expect(info.channels).toBe(3);
  return data;
}

/** Count of differing bytes and the largest absolute difference, for readable failures. */
function diff(a: Uint8Array, b: Uint8Array): { differing: number; maxAbs: number } {
  let differing = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > 0) differing++;
    if (d > maxAbs) maxAbs = d;
  }
  return { differing, maxAbs };
}

describe(`PIL ${reference.pillow} parity`, () => {
  it('has a meaningful set of cases (odd, non-square, gray, RGBA, palette, CMYK, up- and downscaling)', () => {
    const modes = new Set(reference.cases.map((c) => c.pilMode));
    for (const m of ['RGB', 'L', 'LA', 'RGBA', 'P', 'CMYK']) expect(modes).toContain(m);
    expect(reference.cases.some((c) => c.width < TARGET_W)).toBe(true);
    expect(reference.cases.some((c) => c.width > 2 * TARGET_W)).toBe(true);
  });

  for (const c of reference.cases) {
    describe(`${c.input} (${c.pilMode} ${c.width}x${c.height})`, () => {
      const load = () => decodeImage(readFileSync(join(FIXTURES, 'parity', c.input)), { autoOrient: false });

      it("decodes bit-exactly like PIL convert('RGB') (JPEG included: same IDCT and upsampling)", async () => {
        const decoded = await load();
        expect([decoded.width, decoded.height]).toEqual([c.width, c.height]);
        expect(decoded.data.length).toBe(c.width * c.height * 3);
        expect(sha256(decoded.data)).toBe(c.decodedSha256);
      });

      for (const mode of ['nearest', 'bilinear'] as const) {
        it(`resize ${mode} to ${TARGET_W}x${TARGET_H} is bit-exact and preprocesses as NumPy`, async () => {
          const ref = c.outputs[mode];
          const expected = await readReferencePng(ref.file);
          const decoded = await load();
          const resize = mode === 'nearest' ? resizeNearestPil : resizeBilinearPil;
          const resized = resize(decoded, TARGET_W, TARGET_H);
          expect(diff(resized.data, expected)).toEqual({ differing: 0, maxAbs: 0 });
          expect(sha256(resized.data)).toBe(ref.rgbSha256);

          const pre = preprocess(decoded, { resize: mode });
          expect([pre.width, pre.height]).toEqual([TARGET_W, TARGET_H]);
          expect(sha256(pre.data)).toBe(ref.preprocessedSha256);
          for (const s of ref.samples) {
            const i = (s.y * TARGET_W + s.x) * 3;
            expect([pre.data[i], pre.data[i + 1], pre.data[i + 2]]).toEqual(s.bgrMinusMean);
          }
        });
      }
    });
  }
});

describe('the default geometry samples the source directly', () => {
  it('equals PIL NEAREST into an intermediate image, then the value map, for shrinking, enlarging and odd sizes', () => {
    for (const [w, h, ow, oh] of [[320, 240, 224, 224], [1601, 1199, 224, 224], [7, 5, 224, 224], [224, 224, 224, 224], [300, 100, 37, 61]] as const) {
      const data = new Uint8Array(w * h * 3);
      for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
      const image = { data, width: w, height: h };
      for (const mode of ['caffe', 'torch'] as const) {
        const direct = preprocess(image, { width: ow, height: oh, resize: 'nearest', mode });
        // The two-step path: an explicit NEAREST image, whose size matches, so no resize happens in preprocess.
        const twoStep = preprocess(resizeNearestPil(image, ow, oh), { width: ow, height: oh, resize: 'nearest', mode });
        expect(Buffer.from(direct.data.buffer).equals(Buffer.from(twoStep.data.buffer)), `${w}x${h} -> ${ow}x${oh} ${mode}`).toBe(true);
      }
    }
  });
});
