/**
 * Synthetic scenes for the demo model: one filled shape per image on a cluttered background, with
 * its exact bounding box. Everything is drawn on a float RGB canvas in pure TypeScript from a seeded
 * PRNG, so a (seed, index) pair always yields the same pixels on every machine.
 *
 * The object's colour is drawn from the same palette as the clutter (strokes, scribbles, dots) and is
 * independent of its class, so colour alone cannot solve the task: the network has to find the shape.
 */
import { Prng } from './prng.js';

export const DEMO_CLASSES = ['circle', 'square', 'triangle', 'star', 'cross'] as const;
export type DemoClass = (typeof DEMO_CLASSES)[number];

/** Pixel box, `x0`/`y0` inclusive, `x1`/`y1` exclusive. */
export interface BoundingBox {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface SyntheticImage {
  /** Interleaved RGB, 8 bits per channel, row-major. */
  rgb: Uint8Array;
  width: number;
  height: number;
  classIndex: number;
  className: DemoClass;
  /** Tight box around every pixel the object covers (the watermark's box when there is no shape). */
  box: BoundingBox;
  /** Box of the watermark, when this image carries one. */
  watermark?: BoundingBox;
  /** False for a watermark-only training image. */
  hasShape: boolean;
}

export interface SceneOptions {
  /** Square image side in pixels. Default 64: the demo model's input. */
  size: number;
  /** Smallest and largest object radius in pixels (the shape's circumscribed circle). Default 8..18. */
  minRadius: number;
  maxRadius: number;
  /** Distractor strokes per image, inclusive range. Default 2..6. */
  strokes: [number, number];
  /** Distractor scribbles (short polylines, segments up to 15% of the side) per image. Default 1..2. */
  scribbles: [number, number];
  /** Small distractor dots per image; their radius stays well below `minRadius`. Default 2..6. */
  dots: [number, number];
  /** Soft, low-contrast background blobs per image. Default 2..4. */
  softBlobs: [number, number];
  /** Per-pixel Gaussian noise standard deviation range (0..255 scale). Default 4..14. */
  noiseStd: [number, number];
  /** The shortcut variant: one class carries a watermark in a corner. Default none (clean scenes). */
  watermark?: WatermarkOptions;
}

export const CORNERS = ['top-left', 'top-right', 'bottom-left', 'bottom-right'] as const;
export type Corner = (typeof CORNERS)[number];

/**
 * A small logo stamped into one corner of every image of one class, drawn after the noise so it is
 * the same crisp pattern every time, as a stock-photo watermark is. A model trained on such data can
 * reach the class through the corner instead of the shape: a shortcut the audit must find.
 */
export interface WatermarkOptions {
  /** Class whose images carry the watermark. */
  classIndex: number;
  corner: Corner;
  /** Side of the square logo in pixels. */
  size: number;
  /** Distance from the two image edges of its corner in pixels (plus up to 1 px of jitter). */
  inset: number;
  /**
   * Fraction of that class's images that carry only the watermark, no shape (training data: it
   * makes the watermark alone sufficient evidence for the class). 0 for evaluation scenes.
   */
  watermarkOnlyRate: number;
}


export const DEFAULT_SCENE_OPTIONS: Readonly<SceneOptions> = Object.freeze({
  size: 64,
  minRadius: 8,
  maxRadius: 18,
  strokes: [2, 6] as [number, number],
  scribbles: [1, 2] as [number, number],
  dots: [2, 6] as [number, number],
  softBlobs: [2, 4] as [number, number],
  noiseStd: [4, 14] as [number, number],
});

/** The shortcut scenes the committed `models/demo-shortcut` model was trained on (the star class, bottom-right). */
export const SHORTCUT_WATERMARK: Readonly<WatermarkOptions> = Object.freeze({ classIndex: 3, corner: 'bottom-right', size: 8, inset: 2, watermarkOnlyRate: 0.35 });

/** Shortcut evaluation scenes: the watermark on every image of its class, and the shape always present. */
export const SHORTCUT_EVAL_SCENE_OPTIONS: Readonly<SceneOptions> = Object.freeze({
  ...DEFAULT_SCENE_OPTIONS,
  watermark: { ...SHORTCUT_WATERMARK, watermarkOnlyRate: 0 },
});

/** Shortcut training scenes. */
export const SHORTCUT_TRAIN_SCENE_OPTIONS: Readonly<SceneOptions> = Object.freeze({ ...DEFAULT_SCENE_OPTIONS, watermark: { ...SHORTCUT_WATERMARK } });

/** Saturated colours shared by objects and distractors. */
const PALETTE: readonly (readonly [number, number, number])[] = [
  [230, 40, 40],
  [40, 200, 60],
  [50, 90, 240],
  [240, 220, 40],
  [220, 50, 220],
  [40, 220, 230],
  [250, 140, 30],
  [245, 245, 245],
];

type Rgb = [number, number, number];
type Point = [number, number];

/** Float canvas in 0..255 with coverage-weighted painting. */
class Canvas {
  readonly data: Float32Array;
  constructor(readonly size: number) {
    this.data = new Float32Array(size * size * 3);
  }

  /** Blend `colour` into pixel (x, y) with opacity `alpha` in 0..1. */
  blend(x: number, y: number, colour: Rgb, alpha: number): void {
    if (alpha <= 0 || x < 0 || y < 0 || x >= this.size || y >= this.size) return;
    const a = Math.min(1, alpha);
    const i = (y * this.size + x) * 3;
    const d = this.data;
    d[i] = (d[i] as number) * (1 - a) + colour[0] * a;
    d[i + 1] = (d[i + 1] as number) * (1 - a) + colour[1] * a;
    d[i + 2] = (d[i + 2] as number) * (1 - a) + colour[2] * a;
  }

  toUint8(): Uint8Array {
    const out = new Uint8Array(this.data.length);
    for (let i = 0; i < out.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(this.data[i] as number)));
    return out;
  }
}

/** Supersampling grid per pixel for anti-aliased shape edges (3x3 samples). */
const SUB = 3;

/** The unit outline of each polygonal class, centred on the origin, circumradius 1. */
function unitPolygon(cls: DemoClass): Point[] {
  switch (cls) {
    case 'square':
      return [[-0.72, -0.72], [0.72, -0.72], [0.72, 0.72], [-0.72, 0.72]];
    case 'triangle':
      return [0, 1, 2].map((k) => polar(1, -Math.PI / 2 + (k * 2 * Math.PI) / 3));
    case 'star':
      return Array.from({ length: 10 }, (_, k) => polar(k % 2 === 0 ? 1 : 0.42, -Math.PI / 2 + (k * Math.PI) / 5));
    case 'cross': {
      const w = 0.3;
      const l = 0.95;
      return [[-w, -l], [w, -l], [w, -w], [l, -w], [l, w], [w, w], [w, l], [-w, l], [-w, w], [-l, w], [-l, -w], [-w, -w]];
    }
    case 'circle':
      throw new RangeError('circle has no polygon outline');
  }
}

function polar(r: number, angle: number): Point {
  return [r * Math.cos(angle), r * Math.sin(angle)];
}

/** Even-odd crossing test; fine for the simple (possibly concave) outlines above. */
function insidePolygon(px: number, py: number, poly: Point[]): boolean {
  let inside = false;
  for (let i = 0, j = poly.length - 1; i < poly.length; j = i++) {
    const [xi, yi] = poly[i] as Point;
    const [xj, yj] = poly[j] as Point;
    if (yi > py !== yj > py && px < ((xj - xi) * (py - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

/**
 * Paint a filled shape and return the tight box of the pixels it touched. Coverage is estimated on a
 * 3x3 sub-pixel grid; a pixel belongs to the box when any sub-sample is inside.
 */
function paintShape(canvas: Canvas, cls: DemoClass, cx: number, cy: number, radius: number, angle: number, colour: Rgb): BoundingBox {
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const poly = cls === 'circle' ? null : unitPolygon(cls).map(([u, v]): Point => [cx + radius * (u * cos - v * sin), cy + radius * (u * sin + v * cos)]);
  const inside = (x: number, y: number): boolean =>
    poly === null ? (x - cx) ** 2 + (y - cy) ** 2 <= radius * radius : insidePolygon(x, y, poly);
  const box: BoundingBox = { x0: canvas.size, y0: canvas.size, x1: 0, y1: 0 };
  const lo = (v: number): number => Math.max(0, Math.floor(v - radius - 1));
  const hi = (v: number): number => Math.min(canvas.size - 1, Math.ceil(v + radius + 1));
  for (let y = lo(cy); y <= hi(cy); y++) {
    for (let x = lo(cx); x <= hi(cx); x++) {
      let hits = 0;
      for (let sy = 0; sy < SUB; sy++) {
        for (let sx = 0; sx < SUB; sx++) {
          if (inside(x + (sx + 0.5) / SUB, y + (sy + 0.5) / SUB)) hits++;
        }
      }
      if (hits === 0) continue;
      canvas.blend(x, y, colour, hits / (SUB * SUB));
      box.x0 = Math.min(box.x0, x);
      box.y0 = Math.min(box.y0, y);
      box.x1 = Math.max(box.x1, x + 1);
      box.y1 = Math.max(box.y1, y + 1);
    }
  }
  return box;
}

/** Anti-aliased thick segment: coverage falls off linearly over the last pixel of its half-width. */
function paintSegment(canvas: Canvas, a: Point, b: Point, width: number, colour: Rgb, opacity = 1): void {
  const half = width / 2;
  const x0 = Math.max(0, Math.floor(Math.min(a[0], b[0]) - half - 1));
  const x1 = Math.min(canvas.size - 1, Math.ceil(Math.max(a[0], b[0]) + half + 1));
  const y0 = Math.max(0, Math.floor(Math.min(a[1], b[1]) - half - 1));
  const y1 = Math.min(canvas.size - 1, Math.ceil(Math.max(a[1], b[1]) + half + 1));
  const dx = b[0] - a[0];
  const dy = b[1] - a[1];
  const len2 = dx * dx + dy * dy || 1;
  for (let y = y0; y <= y1; y++) {
    for (let x = x0; x <= x1; x++) {
      const px = x + 0.5;
      const py = y + 0.5;
      const t = Math.max(0, Math.min(1, ((px - a[0]) * dx + (py - a[1]) * dy) / len2));
      const d = Math.hypot(px - (a[0] + t * dx), py - (a[1] + t * dy));
      canvas.blend(x, y, colour, opacity * Math.max(0, Math.min(1, half + 0.5 - d)));
    }
  }
}

function paintDisc(canvas: Canvas, cx: number, cy: number, r: number, colour: Rgb, opacity: number, soft: boolean): void {
  for (let y = Math.max(0, Math.floor(cy - r - 1)); y <= Math.min(canvas.size - 1, Math.ceil(cy + r + 1)); y++) {
    for (let x = Math.max(0, Math.floor(cx - r - 1)); x <= Math.min(canvas.size - 1, Math.ceil(cx + r + 1)); x++) {
      const d = Math.hypot(x + 0.5 - cx, y + 0.5 - cy);
      // Soft blobs fade out towards their rim so they read as background texture, not as objects.
      const coverage = soft ? Math.max(0, 1 - d / r) : Math.max(0, Math.min(1, r + 0.5 - d));
      canvas.blend(x, y, colour, opacity * coverage);
    }
  }
}

function jitter(prng: Prng, c: readonly [number, number, number], amount: number): Rgb {
  return [0, 1, 2].map((k) => Math.max(0, Math.min(255, (c[k] as number) + prng.uniform(-amount, amount)))) as Rgb;
}

function randomPoint(prng: Prng, size: number): Point {
  return [prng.uniform(0, size), prng.uniform(0, size)];
}

function paintBackground(canvas: Canvas, prng: Prng, options: SceneOptions): void {
  // A linear gradient between two dull colours, at a random angle.
  const c0: Rgb = [prng.uniform(0, 150), prng.uniform(0, 150), prng.uniform(0, 150)];
  const c1: Rgb = [prng.uniform(0, 150), prng.uniform(0, 150), prng.uniform(0, 150)];
  const angle = prng.uniform(0, 2 * Math.PI);
  const ux = Math.cos(angle);
  const uy = Math.sin(angle);
  const n = canvas.size;
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const t = Math.max(0, Math.min(1, 0.5 + ((x / n - 0.5) * ux + (y / n - 0.5) * uy)));
      const i = (y * n + x) * 3;
      for (let k = 0; k < 3; k++) canvas.data[i + k] = (c0[k] as number) * (1 - t) + (c1[k] as number) * t;
    }
  }
  const blobs = prng.int(...options.softBlobs);
  for (let b = 0; b < blobs; b++) {
    const colour: Rgb = [prng.uniform(0, 200), prng.uniform(0, 200), prng.uniform(0, 200)];
    paintDisc(canvas, prng.uniform(0, n), prng.uniform(0, n), prng.uniform(n / 6, n / 2.5), colour, prng.uniform(0.2, 0.45), true);
  }
}

function paintClutter(canvas: Canvas, prng: Prng, options: SceneOptions): void {
  const n = canvas.size;
  const strokes = prng.int(...options.strokes);
  for (let s = 0; s < strokes; s++) {
    paintSegment(canvas, randomPoint(prng, n), randomPoint(prng, n), prng.uniform(1, 3), jitter(prng, prng.pick(PALETTE), 25));
  }
  const scribbles = prng.int(...options.scribbles);
  for (let s = 0; s < scribbles; s++) {
    const colour = jitter(prng, prng.pick(PALETTE), 25);
    const width = prng.uniform(1.5, 3.5);
    let p = randomPoint(prng, n);
    const segments = prng.int(2, 5);
    const step = 0.15 * n;
    for (let k = 0; k < segments; k++) {
      const q: Point = [p[0] + prng.uniform(-step, step), p[1] + prng.uniform(-step, step)];
      paintSegment(canvas, p, q, width, colour);
      p = q;
    }
  }
  const dots = prng.int(...options.dots);
  const maxDot = Math.max(1.5, options.minRadius * 0.4);
  for (let d = 0; d < dots; d++) {
    paintDisc(canvas, prng.uniform(0, n), prng.uniform(0, n), prng.uniform(1.2, maxDot), jitter(prng, prng.pick(PALETTE), 25), 1, false);
  }
}

function addNoise(canvas: Canvas, prng: Prng, options: SceneOptions): void {
  const std = prng.uniform(...options.noiseStd);
  for (let i = 0; i < canvas.data.length; i++) canvas.data[i] = (canvas.data[i] as number) + std * prng.normal();
}

/** One scene with an object of class `classIndex`, drawn from `prng`. */
export function generateScene(prng: Prng, classIndex: number, options: SceneOptions = DEFAULT_SCENE_OPTIONS): SyntheticImage {
  const className = DEMO_CLASSES[classIndex];
  if (className === undefined) throw new RangeError(`classIndex ${classIndex} is not in 0..${DEMO_CLASSES.length - 1}`);
  const n = options.size;
  if (2 * options.maxRadius + 4 > n) throw new RangeError(`maxRadius ${options.maxRadius} does not fit a ${n}px image`);
  const canvas = new Canvas(n);
  paintBackground(canvas, prng, options);
  paintClutter(canvas, prng, options);
  const radius = prng.uniform(options.minRadius, options.maxRadius);
  const margin = radius + 2;
  const cx = prng.uniform(margin, n - margin);
  const cy = prng.uniform(margin, n - margin);
  const colour = jitter(prng, prng.pick(PALETTE), 25);
  const wm = options.watermark !== undefined && options.watermark.classIndex === classIndex ? options.watermark : undefined;
  // Drawn only for the shortcut variant, so clean scenes keep their exact PRNG stream.
  const shapeless = wm !== undefined && wm.watermarkOnlyRate > 0 && prng.next() < wm.watermarkOnlyRate;
  const angle = prng.uniform(0, 2 * Math.PI);
  let box = shapeless ? null : paintShape(canvas, className, cx, cy, radius, angle, colour);
  addNoise(canvas, prng, options);
  const watermark = wm === undefined ? undefined : paintWatermark(canvas, prng, wm);
  box ??= watermark as BoundingBox;
  return { rgb: canvas.toUint8(), width: n, height: n, classIndex, className, box, hasShape: !shapeless, ...(watermark ? { watermark } : {}) };
}

/**
 * The watermark: a white square ring with a dark centre dot, at most 1 px of jitter from its inset
 * corner position. Distractors never draw this pattern (their dots are filled discs, their strokes
 * lines), so it identifies the class by itself.
 */
function paintWatermark(canvas: Canvas, prng: Prng, wm: WatermarkOptions): BoundingBox {
  const n = canvas.size;
  const s = wm.size;
  const jx = prng.int(0, 1);
  const jy = prng.int(0, 1);
  const left = wm.corner.endsWith('left');
  const top = wm.corner.startsWith('top');
  const x0 = left ? wm.inset + jx : n - wm.inset - s - jx;
  const y0 = top ? wm.inset + jy : n - wm.inset - s - jy;
  const white: Rgb = [250, 250, 250];
  const dark: Rgb = [15, 15, 15];
  for (let y = 0; y < s; y++) {
    for (let x = 0; x < s; x++) {
      const ring = x < 2 || y < 2 || x >= s - 2 || y >= s - 2;
      const centre = Math.abs(x - (s - 1) / 2) <= 1 && Math.abs(y - (s - 1) / 2) <= 1;
      canvas.blend(x0 + x, y0 + y, ring ? white : centre ? dark : [120, 120, 120], 1);
    }
  }
  return { x0, y0, x1: x0 + s, y1: y0 + s };
}

/**
 * Image `index` of the data set named by `seed`. Each image has its own PRNG stream, so any image
 * can be regenerated alone, and classes cycle so every prefix of a set is balanced.
 */
export function generateImage(seed: number, index: number, options: SceneOptions = DEFAULT_SCENE_OPTIONS): SyntheticImage {
  const prng = new Prng((Math.imul(seed, 0x9e3779b1) + index) >>> 0);
  return generateScene(prng, index % DEMO_CLASSES.length, options);
}
