/**
 * Per-image audit metrics: what the prediction says (confidence, margin, entropy, and with ground
 * truth whether it is right) and where the map looks (peak, centroid, spread, sparseness, border and
 * corner shares, and with boxes relevance mass, pointing game and top-20% IoU). Every location is in
 * image coordinates normalised to [0, 1] (x by the image width, y by its height), so maps of images
 * of any size and shape compare. The formulas are written once, in docs/audit-metrics.md, and
 * checked against scripts/reference/audit_metrics_reference.py.
 *
 * Pure functions on arrays: the worker calls them per image, the audit accumulator and `compare`
 * read what they produce.
 */
import { argMaxPixel, hasContrast, mapRaster, upsampleBilinear } from './map-raster.js';

export interface MetricOptions {
  /** Longer side of the analysis raster; smaller images use their own pixels. Default 128 (8 raster pixels per cell of a 16x16 map). */
  analysisSide: number;
  /** Width of the border band as a fraction of each side. Default 0.1 (the outer 10%). */
  borderBand: number;
  /** Side of each corner region as a fraction of the image side. Default 0.2. */
  cornerSize: number;
  /** Fraction of the raster in the "top region" of the map (IoU with the boxes). Default 0.2. */
  topFraction: number;
  /** Side of the fixed grid every map is resampled to for class atlases and run comparison. Default 16. */
  atlasSize: number;
}

export const DEFAULT_METRIC_OPTIONS: Readonly<MetricOptions> = Object.freeze({
  analysisSide: 128,
  borderBand: 0.1,
  cornerSize: 0.2,
  topFraction: 0.2,
  atlasSize: 16,
});

export const CORNERS = ['topLeft', 'topRight', 'bottomLeft', 'bottomRight'] as const;
export type CornerName = (typeof CORNERS)[number];

export interface PredictionMetrics {
  /** Probability of the top-1 class. */
  top1Prob: number;
  /** Top-1 probability minus top-2 probability. */
  margin: number;
  /** Shannon entropy of the softmax divided by ln(number of classes): 0 = certain, 1 = uniform. */
  entropy: number;
  /** With ground truth: top-1 is the true class. */
  correct?: boolean;
  /** With ground truth: 1-based rank of the true class (1 = top-1), ties ordered as top-k is. */
  trueRank?: number;
  /** With ground truth: the true class's probability. */
  trueProb?: number;
}

export interface MapMetrics {
  /** First analysis-raster pixel holding the map's maximum: its centre, normalised. */
  peakX: number;
  peakY: number;
  /** Heat-weighted mean position. */
  centroidX: number;
  centroidY: number;
  /** Heat-weighted root-mean-square distance from the centroid (normalised coordinates). */
  spread: number;
  /** Gini index of the CAM grid's values: 0 = uniform heat, → 1 = all heat in one cell. */
  gini: number;
  /** Share of the heat in the outer `borderBand` of each side. */
  borderShare: number;
  /** Share of the heat in each `cornerSize x cornerSize` corner. */
  cornerShares: Record<CornerName, number>;
  /** With boxes: share of the heat inside the union of the boxes (relevance mass accuracy). */
  boxEnergy?: number;
  /** With boxes: share of the raster the boxes cover (what `boxEnergy` would be for a uniform map). */
  boxArea?: number;
  /** With boxes: the peak pixel lies inside a box (pointing game). */
  pointingHit?: boolean;
  /** With boxes: IoU of the top-`topFraction` region of the map with the union of the boxes. */
  topIou?: number;
}

/** A box in image pixel coordinates: [x0, y0, x1, y1), x0 < x1, y0 < y1. */
export type Box = readonly [number, number, number, number];

/** The CAM a metric describes: a row-major grid normalised to [0, 1], as engines return it. */
export interface MapInput {
  grid: ArrayLike<number>;
  gridHeight: number;
  gridWidth: number;
  /** Engines mark a map that carries no information; such a map gets no map metrics. */
  degenerate: string | null;
}

/** Index order of top-k: higher probability first, ties by lower index (see engine/targets.ts). */
function ranksBefore(p: ArrayLike<number>, j: number, i: number): boolean {
  const a = p[j] as number;
  const b = p[i] as number;
  return a > b || (a === b && j < i);
}

/** Prediction metrics from the full softmax; `trueClass` adds the ground-truth fields. */
export function predictionMetrics(probabilities: ArrayLike<number>, trueClass?: number): PredictionMetrics {
  const n = probabilities.length;
  if (n === 0) throw new RangeError('predictionMetrics: no probabilities');
  let first = 0;
  for (let i = 1; i < n; i++) if (ranksBefore(probabilities, i, first)) first = i;
  let second = -1;
  for (let i = 0; i < n; i++) if (i !== first && (second < 0 || ranksBefore(probabilities, i, second))) second = i;
  let h = 0;
  for (let i = 0; i < n; i++) {
    const p = probabilities[i] as number;
    if (p > 0) h -= p * Math.log(p);
  }
  const top1Prob = probabilities[first] as number;
  const out: PredictionMetrics = {
    top1Prob,
    margin: second < 0 ? top1Prob : top1Prob - (probabilities[second] as number),
    entropy: n > 1 ? h / Math.log(n) : 0,
  };
  if (trueClass !== undefined) {
    if (!Number.isInteger(trueClass) || trueClass < 0 || trueClass >= n) throw new RangeError(`true class ${trueClass} is not in 0..${n - 1}`);
    let rank = 1;
    for (let j = 0; j < n; j++) if (j !== trueClass && ranksBefore(probabilities, j, trueClass)) rank++;
    out.correct = rank === 1;
    out.trueRank = rank;
    out.trueProb = probabilities[trueClass] as number;
  }
  return out;
}

/**
 * Gini index of non-negative values (Hurley & Rickard's sparseness form): with c sorted ascending,
 * G = 1 − 2·Σ_k (c_k/‖c‖₁)·(N − k + ½)/N. Null when all values are 0.
 */
export function gini(values: ArrayLike<number>): number | null {
  const c = new Float64Array(values.length);
  for (let i = 0; i < c.length; i++) c[i] = values[i];
  c.sort();
  const n = c.length;
  let total = 0;
  for (let k = 0; k < n; k++) total += c[k] as number;
  if (!(total > 0)) return null;
  let s = 0;
  for (let k = 0; k < n; k++) s += ((c[k] as number) / total) * ((n - (k + 1) + 0.5) / n);
  return 1 - 2 * s;
}

/** The k-th largest value (1-based k) of `values`, by quickselect on a copy. */
export function kthLargest(values: Float32Array, k: number): number {
  if (!(k >= 1 && k <= values.length)) throw new RangeError(`k=${k} outside 1..${values.length}`);
  const a = values.slice();
  // Select the (n-k)-th smallest (0-based) with Hoare partitioning around the median of three.
  const target = a.length - k;
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const x = a[lo] as number;
    const y = a[mid] as number;
    const z = a[hi] as number;
    const pivot = x < y ? (y < z ? y : x < z ? z : x) : x < z ? x : y < z ? z : y;
    let i = lo;
    let j = hi;
    while (i <= j) {
      while ((a[i] as number) < pivot) i++;
      while ((a[j] as number) > pivot) j--;
      if (i <= j) {
        const t = a[i] as number;
        a[i] = a[j] as number;
        a[j] = t;
        i++;
        j--;
      }
    }
    if (target <= j) hi = j;
    else if (target >= i) lo = i;
    else return a[target] as number;
  }
  return a[target] as number;
}

/**
 * Map metrics of one CAM over an image of `imageWidth x imageHeight` pixels, with optional boxes in
 * image pixel coordinates. Null for a degenerate or all-zero map.
 */
export function mapMetrics(map: MapInput, imageWidth: number, imageHeight: number, boxes: readonly Box[] | undefined, options: MetricOptions = DEFAULT_METRIC_OPTIONS): MapMetrics | null {
  if (map.degenerate !== null) return null;
  const g = gini(map.grid);
  if (g === null) return null;
  const { values, width: rw, height: rh } = mapRaster(map.grid, map.gridHeight, map.gridWidth, imageWidth, imageHeight, options.analysisSide);

  // Bands and corners are contiguous runs of columns (rows) at both ends: count them once, so the
  // pixel loop below has no per-pixel branch.
  const b = options.borderBand;
  const c = options.cornerSize;
  const xc = new Float64Array(rw);
  for (let x = 0; x < rw; x++) xc[x] = (x + 0.5) / rw;
  const lead = (n: number, f: number): number => {
    let k = 0;
    while (k < n && (k + 0.5) / n < f) k++;
    return k;
  };
  const trail = (n: number, f: number): number => {
    let k = n;
    while (k > 0 && (k - 0.5) / n >= 1 - f) k--;
    return k;
  };
  const bandL = lead(rw, b);
  const bandR = Math.max(trail(rw, b), bandL);
  const cornL = lead(rw, c);
  const cornR = Math.max(trail(rw, c), cornL);
  const bandT = lead(rh, b);
  const bandB = trail(rh, b);
  const cornT = lead(rh, c);
  const cornB = trail(rh, c);

  let total = 0;
  let sx = 0;
  let sy = 0;
  let sxx = 0;
  let syy = 0;
  let border = 0;
  const corners = [0, 0, 0, 0]; // tl, tr, bl, br
  for (let y = 0; y < rh; y++) {
    const row = y * rw;
    const v = (y + 0.5) / rh;
    let rowSum = 0;
    let rowX = 0;
    let rowXX = 0;
    for (let x = 0; x < rw; x++) {
      const m = values[row + x];
      const u = xc[x];
      rowSum += m;
      rowX += m * u;
      rowXX += m * u * u;
    }
    total += rowSum;
    sx += rowX;
    sxx += rowXX;
    sy += rowSum * v;
    syy += rowSum * v * v;
    const cornerRow = y < cornT ? 0 : y >= cornB ? 2 : -1;
    if (cornerRow >= 0) {
      for (let x = 0; x < cornL; x++) corners[cornerRow] += values[row + x];
      for (let x = cornR; x < rw; x++) corners[cornerRow + 1] += values[row + x];
    }
    if (y < bandT || y >= bandB) border += rowSum;
    else {
      for (let x = 0; x < bandL; x++) border += values[row + x];
      for (let x = bandR; x < rw; x++) border += values[row + x];
    }
  }
  if (!(total > 0)) return null;
  const centroidX = sx / total;
  const centroidY = sy / total;
  // Σm·((u−cx)² + (v−cy)²) = Σm·u² + Σm·v² − T·(cx² + cy²); values are in [0, 1], so double
  // precision leaves the difference exact to ~1e-15.
  const variance = Math.max(0, (sxx + syy) / total - centroidX * centroidX - centroidY * centroidY);
  const peak = argMaxPixel(values, rw);
  const out: MapMetrics = {
    peakX: xc[peak.x],
    peakY: (peak.y + 0.5) / rh,
    centroidX,
    centroidY,
    spread: Math.sqrt(variance),
    gini: g,
    borderShare: border / total,
    cornerShares: { topLeft: corners[0] / total, topRight: corners[1] / total, bottomLeft: corners[2] / total, bottomRight: corners[3] / total },
  };
  if (boxes !== undefined && boxes.length > 0) {
    const box = boxMetrics(values, rw, rh, imageWidth, imageHeight, boxes, peak, total, options.topFraction);
    // A flat map has no peak: the pointing game counts it as a miss, not as a hit at pixel (0, 0).
    if (!hasContrast(map.grid)) box.pointingHit = false;
    Object.assign(out, box);
  }
  return out;
}

/**
 * Box metrics on the raster: a raster pixel is inside a box when its centre, in image pixel
 * coordinates ((x + 0.5)·W/rw, (y + 0.5)·H/rh), lies in [x0, x1) × [y0, y1).
 */
function boxMetrics(values: Float32Array, rw: number, rh: number, W: number, H: number, boxes: readonly Box[], peak: { x: number; y: number }, total: number, topFraction: number): Required<Pick<MapMetrics, 'boxEnergy' | 'boxArea' | 'pointingHit' | 'topIou'>> {
  const inside = new Uint8Array(rw * rh);
  for (const [x0, y0, x1, y1] of boxes) {
    let cLo = rw;
    let cHi = -1;
    for (let x = 0; x < rw; x++) {
      const px = ((x + 0.5) * W) / rw;
      if (px >= x0 && px < x1) {
        if (x < cLo) cLo = x;
        cHi = x;
      }
    }
    if (cHi < 0) continue; // the box holds no raster pixel centre
    for (let y = 0; y < rh; y++) {
      const py = ((y + 0.5) * H) / rh;
      if (!(py >= y0 && py < y1)) continue;
      inside.fill(1, y * rw + cLo, y * rw + cHi + 1);
    }
  }
  const n = rw * rh;
  const k = Math.max(1, Math.ceil(topFraction * n));
  // The top region: pixels at or above the k-th largest value, and never pixels without heat.
  const tau = kthLargest(values, k);
  let inMass = 0;
  let inCount = 0;
  let both = 0;
  let top = 0;
  for (let i = 0; i < n; i++) {
    const v = values[i] as number;
    const isTop = v >= tau && v > 0;
    if (isTop) top++;
    if (inside[i] === 1) {
      inMass += v;
      inCount++;
      if (isTop) both++;
    }
  }
  const union = top + inCount - both;
  return {
    boxEnergy: inMass / total,
    boxArea: inCount / n,
    pointingHit: inside[peak.y * rw + peak.x] === 1,
    topIou: union > 0 ? both / union : 0,
  };
}

/**
 * The map on the fixed `atlasSize x atlasSize` grid over the normalised image (the grid's bilinear
 * samples at the atlas cell centres), rescaled to max 1 and quantised to bytes (value·255,
 * rounded). Class atlases average these; `compare` correlates them. Null for a map without heat.
 */
export function atlasBytes(map: MapInput, atlasSize = DEFAULT_METRIC_OPTIONS.atlasSize): Uint8Array | null {
  if (map.degenerate !== null) return null;
  const a = upsampleBilinear(map.grid, map.gridHeight, map.gridWidth, atlasSize, atlasSize);
  let max = 0;
  for (let i = 0; i < a.length; i++) if ((a[i] as number) > max) max = a[i] as number;
  if (!(max > 0)) return null;
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = Math.round(((a[i] as number) / max) * 255);
  return out;
}

/** Atlas bytes as they travel in a manifest line: base64. */
export function encodeAtlas(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

/** Decode a line's atlas; null when it is absent or not `size²` bytes. */
export function decodeAtlas(encoded: string | undefined | null, size = DEFAULT_METRIC_OPTIONS.atlasSize): Uint8Array | null {
  if (typeof encoded !== 'string') return null;
  const buf = Buffer.from(encoded, 'base64');
  return buf.length === size * size ? new Uint8Array(buf.buffer, buf.byteOffset, buf.length) : null;
}
