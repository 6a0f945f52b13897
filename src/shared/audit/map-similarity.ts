/**
 * How alike two maps of the same image are (run comparison): Spearman's rank correlation of their
 * atlas cells, and the IoU of their top regions. Both read the fixed-grid atlas bytes that every
 * manifest line carries, so comparing two runs never reopens a per-image file.
 */
import { DEFAULT_METRIC_OPTIONS } from './image-metrics.js';

export interface MapSimilarity {
  /** Spearman's ρ with average ranks for ties; null when either map is constant. */
  rankCorrelation: number | null;
  /** IoU of the cells at or above each map's k-th largest value (k = ⌈topFraction·n⌉), heatless cells excluded. */
  topIou: number;
}

/** 1-based ranks; tied values share the mean of the ranks they span. */
export function averageRanks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => (values[a] as number) - (values[b] as number) || a - b);
  const ranks = new Float64Array(n);
  for (let i = 0; i < n; ) {
    let j = i;
    while (j + 1 < n && values[order[j + 1] as number] === values[order[i] as number]) j++;
    const r = (i + j) / 2 + 1;
    for (let t = i; t <= j; t++) ranks[order[t] as number] = r;
    i = j + 1;
  }
  return ranks;
}

function pearson(a: Float64Array, b: Float64Array): number | null {
  const n = a.length;
  let ma = 0;
  let mb = 0;
  for (let i = 0; i < n; i++) {
    ma += a[i] as number;
    mb += b[i] as number;
  }
  ma /= n;
  mb /= n;
  let sab = 0;
  let saa = 0;
  let sbb = 0;
  for (let i = 0; i < n; i++) {
    const da = (a[i] as number) - ma;
    const db = (b[i] as number) - mb;
    sab += da * db;
    saa += da * da;
    sbb += db * db;
  }
  const den = Math.sqrt(saa * sbb);
  return den > 0 ? sab / den : null;
}

function topRegion(values: ArrayLike<number>, k: number): Uint8Array {
  const sorted = Array.from(values as ArrayLike<number>).sort((x, y) => y - x);
  const tau = sorted[k - 1] as number;
  const out = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = (values[i] as number) >= tau && (values[i] as number) > 0 ? 1 : 0;
  return out;
}

export function mapSimilarity(a: ArrayLike<number>, b: ArrayLike<number>, topFraction = DEFAULT_METRIC_OPTIONS.topFraction): MapSimilarity {
  if (a.length !== b.length || a.length === 0) throw new RangeError(`maps of ${a.length} and ${b.length} cells cannot be compared`);
  const k = Math.max(1, Math.ceil(topFraction * a.length));
  const ta = topRegion(a, k);
  const tb = topRegion(b, k);
  let both = 0;
  let either = 0;
  for (let i = 0; i < a.length; i++) {
    if (ta[i] === 1 && tb[i] === 1) both++;
    if (ta[i] === 1 || tb[i] === 1) either++;
  }
  return { rankCorrelation: pearson(averageRanks(a), averageRanks(b)), topIou: either > 0 ? both / either : 0 };
}
