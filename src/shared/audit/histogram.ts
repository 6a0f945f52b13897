/**
 * A fixed-range histogram: the bounded quantile sketch of the audit. Every metric it summarises
 * has a known range (shares, probabilities and normalised coordinates live in [0, 1]), so equal-width
 * bins bound the value error of any quantile by half a bin, with memory fixed by the bin count and
 * independent of how many values were added. The same bins draw the report's histograms.
 */

export interface HistogramSnapshot {
  lo: number;
  hi: number;
  /** Count per equal-width bin; values outside [lo, hi] are clamped into the end bins. */
  counts: number[];
}

export class Histogram {
  readonly counts: Float64Array;
  total = 0;

  constructor(
    readonly lo: number,
    readonly hi: number,
    readonly bins: number,
  ) {
    if (!(hi > lo) || !Number.isInteger(bins) || bins < 1) throw new RangeError(`bad histogram [${lo}, ${hi}] with ${bins} bins`);
    this.counts = new Float64Array(bins);
  }

  /** The bin a value falls into (clamped). */
  binOf(value: number): number {
    const b = Math.floor(((value - this.lo) / (this.hi - this.lo)) * this.bins);
    return b < 0 ? 0 : b >= this.bins ? this.bins - 1 : b;
  }

  add(value: number, weight = 1): void {
    if (!Number.isFinite(value)) return;
    this.counts[this.binOf(value)] += weight;
    this.total += weight;
  }

  /** Lower edge of bin `b`. */
  edge(b: number): number {
    return this.lo + ((this.hi - this.lo) * b) / this.bins;
  }

  /**
   * The q-quantile, interpolated linearly inside its bin (values are assumed spread evenly within a
   * bin): at most half a bin from the exact sample quantile. Null when empty.
   */
  quantile(q: number): number | null {
    if (this.total <= 0) return null;
    const target = Math.min(Math.max(q, 0), 1) * this.total;
    let seen = 0;
    for (let b = 0; b < this.bins; b++) {
      const c = this.counts[b] as number;
      if (c > 0 && seen + c >= target) {
        const within = c > 0 ? (target - seen) / c : 0;
        return this.edge(b) + within * (this.edge(b + 1) - this.edge(b));
      }
      seen += c;
    }
    return this.hi;
  }

  /**
   * Values in bin `bin` or above. A rule "binOf(v) ≥ bin" applied to single values selects exactly
   * the values this counts, which is how run-relative thresholds get exact counts from a sketch.
   */
  countFromBin(bin: number): number {
    let n = 0;
    for (let b = Math.max(0, bin); b < this.bins; b++) n += this.counts[b] as number;
    return n;
  }

  /** The first bin whose lower edge is ≥ `value` (`bins` when none is): a threshold rounded up to a bin edge. */
  binAtOrAbove(value: number): number {
    const b = Math.ceil(((value - this.lo) / (this.hi - this.lo)) * this.bins - 1e-9);
    return Math.min(Math.max(b, 0), this.bins);
  }

  merge(other: Histogram): void {
    if (other.lo !== this.lo || other.hi !== this.hi || other.bins !== this.bins) throw new RangeError('cannot merge histograms with different bins');
    for (let b = 0; b < this.bins; b++) this.counts[b] += other.counts[b] as number;
    this.total += other.total;
  }

  /** Coarser copy with `bins` bins (a divisor of this one's count), for compact output. */
  snapshot(bins = this.bins): HistogramSnapshot {
    if (this.bins % bins !== 0) throw new RangeError(`${bins} bins do not divide ${this.bins}`);
    const f = this.bins / bins;
    const counts = new Array<number>(bins).fill(0);
    for (let b = 0; b < this.bins; b++) counts[Math.floor(b / f)] += this.counts[b] as number;
    return { lo: this.lo, hi: this.hi, counts };
  }
}
