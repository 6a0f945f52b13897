/**
 * Every preprocessing mode, with and without the center crop, against torchvision / Pillow / NumPy
 * outputs committed by scripts/reference/torchvision_preprocess.py: model inputs of 224x224, an odd
 * square (99x99) and an odd non-square (57x75), both PIL kernels, all parity images. Geometry and
 * values are bit-exact; a mismatch reports the first differing sample.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ResizeMode } from '../../../src/shared/explain-options.js';
import { PREPROCESS_MODES, type PreprocessMode } from '../../../src/shared/preprocessing.js';
import { decodeImage } from '../../../src/worker/image/decode.js';
import { centerCropResizeSide, fitToModel, preprocess } from '../../../src/worker/image/preprocess.js';
import { centerCropOffset, cropRgb, shorterSideSize } from '../../../src/worker/image/resize.js';

const FIXTURES = join(import.meta.dirname, '..', '..', 'fixtures', 'images');

interface ModeOutput {
  sha256: string;
  samples: Array<{ x: number; y: number; value: [number, number, number] }>;
}
interface ReferenceCase {
  input: string;
  height: number;
  width: number;
  resize: ResizeMode;
  centerCrop: boolean;
  resizedWidth?: number;
  resizedHeight?: number;
  rgbSha256: string;
  modes: Record<PreprocessMode, ModeOutput>;
}
const reference = JSON.parse(readFileSync(join(FIXTURES, 'reference', 'preprocess-modes.json'), 'utf8')) as { torchvision: string; cases: ReferenceCase[] };

const sha256 = (bytes: Uint8Array | Float32Array): string => createHash('sha256').update(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength)).digest('hex');

describe(`preprocessing modes against torchvision ${reference.torchvision}`, () => {
  it('covers every mode, both kernels, crops with half-pixel offsets and crops larger than one side', () => {
    expect(new Set(reference.cases.flatMap((c) => Object.keys(c.modes)))).toEqual(new Set(PREPROCESS_MODES));
    const crops = reference.cases.filter((c) => c.centerCrop);
    // An odd difference between resized and crop size is where round-half-to-even matters.
    expect(crops.some((c) => (c.resizedWidth! - c.width) % 2 === 1 || (c.resizedHeight! - c.height) % 2 === 1)).toBe(true);
    expect(crops.some((c) => c.resize === 'bilinear') && crops.some((c) => c.resize === 'nearest')).toBe(true);
    expect(new Set(crops.map((c) => `${c.height}x${c.width}`)).size).toBe(3);
    expect(crops.some((c) => c.resizedWidth! < c.width || c.resizedHeight! < c.height)).toBe(true);
  });

  const inputs = [...new Set(reference.cases.map((c) => c.input))];
  for (const input of inputs) {
    it(`${input}: geometry and values of every case are bit-exact`, async () => {
      const decoded = await decodeImage(readFileSync(join(FIXTURES, 'parity', input)), { autoOrient: false });
      for (const c of reference.cases.filter((x) => x.input === input)) {
        const what = `${c.height}x${c.width} ${c.resize}${c.centerCrop ? ' center-crop' : ''}`;
        if (c.centerCrop) {
          const side = centerCropResizeSide(c.width, c.height);
          expect(shorterSideSize(decoded.width, decoded.height, side), what).toEqual({ width: c.resizedWidth, height: c.resizedHeight });
        }
        const fitted = fitToModel(decoded, { width: c.width, height: c.height, resize: c.resize, centerCrop: c.centerCrop });
        expect(sha256(fitted.data), `${what}: RGB pixels`).toBe(c.rgbSha256);
        for (const mode of PREPROCESS_MODES) {
          const out = preprocess(decoded, { width: c.width, height: c.height, resize: c.resize, centerCrop: c.centerCrop, mode });
          const ref = c.modes[mode];
          for (const s of ref.samples) {
            const i = (s.y * c.width + s.x) * 3;
            expect([out.data[i], out.data[i + 1], out.data[i + 2]], `${what} ${mode} at (${s.x}, ${s.y})`).toEqual(s.value);
          }
          expect(sha256(out.data), `${what} ${mode}`).toBe(ref.sha256);
        }
      }
    });
  }
});

describe('center crop geometry', () => {
  it("rounds the crop offset half to even, as Python's round()", () => {
    expect(centerCropOffset(257, 224)).toBe(16); // 16.5 -> 16
    expect(centerCropOffset(259, 224)).toBe(18); // 17.5 -> 18
    expect(centerCropOffset(256, 224)).toBe(16);
    expect(centerCropOffset(224, 224)).toBe(0);
  });

  it('pads with black like torchvision when the crop is larger than the image', () => {
    expect(centerCropOffset(3, 6)).toBe(-1); // (6 - 3) // 2 before, 2 after
    const src = { data: Uint8Array.from([10, 20, 30, 40, 50, 60, 70, 80, 90]), width: 3, height: 1 };
    const out = cropRgb(src, centerCropOffset(3, 5), centerCropOffset(1, 1), 5, 1);
    expect(Array.from(out.data)).toEqual([0, 0, 0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 0, 0, 0]);
  });

  it('truncates the longer side as torchvision Resize(int) does', () => {
    expect(shorterSideSize(640, 427, 256)).toEqual({ width: 383, height: 256 }); // 383.70 -> 383
    expect(shorterSideSize(97, 401, 256)).toEqual({ width: 256, height: 1058 });
    expect(centerCropResizeSide(224, 224)).toBe(256);
    expect(centerCropResizeSide(75, 57)).toBe(65);
  });
});
