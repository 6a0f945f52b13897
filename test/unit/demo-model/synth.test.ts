/**
 * The synthetic scene generator: reproducible from (seed, index), balanced classes, and boxes that
 * match what is actually drawn. The box check is independent of the generator's own bookkeeping:
 * with clutter, soft blobs and noise switched off the background is a linear gradient, whose
 * discrete Laplacian vanishes, so the pixels where it does not vanish are the object's edges.
 */
import { describe, expect, it } from 'vitest';
import { Prng } from '../../../scripts/demo-model/prng.js';
import { DEFAULT_SCENE_OPTIONS, DEMO_CLASSES, generateImage, generateScene, type SceneOptions } from '../../../scripts/demo-model/synth.js';

describe('synthetic demo scenes', () => {
  it('is deterministic per (seed, index) and differs across seeds', () => {
    const a = generateImage(5, 17);
    const b = generateImage(5, 17);
    const c = generateImage(6, 17);
    expect(Buffer.from(a.rgb).equals(Buffer.from(b.rgb))).toBe(true);
    expect(a.box).toEqual(b.box);
    expect(Buffer.from(a.rgb).equals(Buffer.from(c.rgb))).toBe(false);
  });

  it('cycles through all classes and keeps every object inside the image at a varied position and scale', () => {
    const images = Array.from({ length: 40 }, (_, i) => generateImage(9, i));
    expect(images.map((im) => im.className).slice(0, DEMO_CLASSES.length)).toEqual([...DEMO_CLASSES]);
    for (const im of images) {
      expect(im.rgb.length).toBe(DEFAULT_SCENE_OPTIONS.size * DEFAULT_SCENE_OPTIONS.size * 3);
      expect(im.box.x0).toBeGreaterThanOrEqual(0);
      expect(im.box.y0).toBeGreaterThanOrEqual(0);
      expect(im.box.x1).toBeLessThanOrEqual(im.width);
      expect(im.box.y1).toBeLessThanOrEqual(im.height);
      const side = Math.max(im.box.x1 - im.box.x0, im.box.y1 - im.box.y0);
      expect(side).toBeGreaterThanOrEqual(DEFAULT_SCENE_OPTIONS.minRadius);
      expect(side).toBeLessThanOrEqual(2 * DEFAULT_SCENE_OPTIONS.maxRadius + 2);
    }
    const centres = images.map((im) => (im.box.x0 + im.box.x1) / 2);
    const sides = images.map((im) => im.box.x1 - im.box.x0);
    expect(Math.max(...centres) - Math.min(...centres)).toBeGreaterThan(20);
    expect(Math.max(...sides) - Math.min(...sides)).toBeGreaterThan(10);
  });

  it('reports the box of the pixels the object actually covers', () => {
    const clean: SceneOptions = { ...DEFAULT_SCENE_OPTIONS, strokes: [0, 0], scribbles: [0, 0], dots: [0, 0], softBlobs: [0, 0], noiseStd: [0, 0] };
    for (let i = 0; i < 10; i++) {
      const im = generateScene(new Prng(100 + i), i % DEMO_CLASSES.length, clean);
      const n = im.width;
      // Edges of the object: where the 4-neighbour Laplacian of any channel is clearly non-zero
      // (a linear gradient quantised to 8 bits leaves at most ±2).
      let x0 = n;
      let y0 = n;
      let x1 = 0;
      let y1 = 0;
      for (let y = 1; y < n - 1; y++) {
        for (let x = 1; x < n - 1; x++) {
          for (let c = 0; c < 3; c++) {
            const v = (dx: number, dy: number): number => im.rgb[((y + dy) * n + x + dx) * 3 + c]!;
            if (Math.abs(4 * v(0, 0) - v(1, 0) - v(-1, 0) - v(0, 1) - v(0, -1)) > 6) {
              x0 = Math.min(x0, x);
              y0 = Math.min(y0, y);
              x1 = Math.max(x1, x + 1);
              y1 = Math.max(y1, y + 1);
            }
          }
        }
      }
      // The Laplacian also fires one pixel outside a hard edge; allow that, and faint anti-aliased rims.
      expect(Math.abs(x0 - im.box.x0)).toBeLessThanOrEqual(2);
      expect(Math.abs(y0 - im.box.y0)).toBeLessThanOrEqual(2);
      expect(Math.abs(x1 - im.box.x1)).toBeLessThanOrEqual(2);
      expect(Math.abs(y1 - im.box.y1)).toBeLessThanOrEqual(2);
    }
  });

  it('rejects an unknown class and an object that cannot fit', () => {
    expect(() => generateScene(new Prng(1), DEMO_CLASSES.length)).toThrow(/classIndex 5/);
    expect(() => generateScene(new Prng(1), 0, { ...DEFAULT_SCENE_OPTIONS, size: 30 })).toThrow(/does not fit/);
  });
});
