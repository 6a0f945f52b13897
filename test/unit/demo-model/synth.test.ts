/**
 * The synthetic scene generator: reproducible from (seed, index), balanced classes, and boxes that
 * match what is actually drawn. The box check is independent of the generator's own bookkeeping:
 * with clutter, soft blobs and noise switched off the background is a linear gradient, whose
 * discrete Laplacian vanishes, so the pixels where it does not vanish are the object's edges.
 */
import { describe, expect, it } from 'vitest';
import { Prng } from '../../../scripts/demo-model/prng.js';
import { DEFAULT_SCENE_OPTIONS, DEMO_CLASSES, generateImage, generateScene, SHORTCUT_EVAL_SCENE_OPTIONS, SHORTCUT_TRAIN_SCENE_OPTIONS, SHORTCUT_WATERMARK, type SceneOptions } from '../../../scripts/demo-model/synth.js';

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

  it('shortcut variant: only the watermarked class carries the logo, in its corner, drawn as specified', () => {
    const n = DEFAULT_SCENE_OPTIONS.size;
    const wm = SHORTCUT_WATERMARK;
    for (let i = 0; i < 30; i++) {
      const im = generateImage(11, i, SHORTCUT_EVAL_SCENE_OPTIONS);
      if (im.classIndex !== wm.classIndex) {
        expect(im.watermark).toBeUndefined();
        continue;
      }
      expect(im.hasShape).toBe(true);
      const b = im.watermark!;
      // bottom-right, inset 2 px plus at most 1 px of jitter
      expect(n - b.x1 - wm.inset).toBeGreaterThanOrEqual(0);
      expect(n - b.x1 - wm.inset).toBeLessThanOrEqual(1);
      expect(n - b.y1 - wm.inset).toBeLessThanOrEqual(1);
      expect(b.x1 - b.x0).toBe(wm.size);
      // The ring's pixels are near-white and the centre near-black, whatever lies beneath.
      const px = (x: number, y: number): number[] => [0, 1, 2].map((c) => im.rgb[(y * n + x) * 3 + c]!);
      expect(Math.min(...px(b.x0, b.y0))).toBeGreaterThan(240);
      expect(Math.max(...px(b.x0 + 3, b.y0 + 3))).toBeLessThan(25);
    }
    // Clean scenes keep their exact pixels: the variant draws from the PRNG only when it applies.
    const clean = generateImage(11, 3);
    const withOptionsButOtherClass = generateImage(11, 2, SHORTCUT_EVAL_SCENE_OPTIONS);
    expect(Buffer.from(generateImage(11, 2).rgb).equals(Buffer.from(withOptionsButOtherClass.rgb))).toBe(true);
    expect(clean.watermark).toBeUndefined();
  });

  it('shortcut training scenes include watermark-only images of that class, and no others', () => {
    const star = Array.from({ length: 100 }, (_, i) => generateImage(12, i * DEMO_CLASSES.length + SHORTCUT_WATERMARK.classIndex, SHORTCUT_TRAIN_SCENE_OPTIONS));
    const shapeless = star.filter((im) => !im.hasShape).length / star.length;
    expect(Math.abs(shapeless - SHORTCUT_WATERMARK.watermarkOnlyRate)).toBeLessThan(0.12);
    for (const im of star.filter((im) => !im.hasShape)) expect(im.box).toEqual(im.watermark);
    const others = Array.from({ length: 40 }, (_, i) => generateImage(12, i * DEMO_CLASSES.length, SHORTCUT_TRAIN_SCENE_OPTIONS));
    expect(others.every((im) => im.hasShape && im.watermark === undefined)).toBe(true);
  });
});
