/**
 * The image-level flag thresholds that depend on the whole run (per-class self-confidence, the
 * run's entropy median and MAD), computed once the last line is in.
 */
import type { AuditAccumulator } from './accumulator.js';
import { Histogram } from './histogram.js';
import { columnIndex } from './metric-table.js';

export interface FinalThresholds {
  /**
   * Median probability the model gives class `cls` on the images it predicts `cls` that are also
   * labelled `cls`: how confident it usually is on that class. Null when there is none.
   */
  selfConfidence: (cls: number) => number | null;
  /** Label-suspect rule for images predicted `cls`: `grid.binOf(top1Prob) ≥ suspectBin(cls)`. */
  suspectBin: (cls: number) => number;
  /** Out-of-distribution rule: `grid.binOf(entropy) ≥ oodEntropyBin` (and top-1 probability under the cap). */
  oodEntropyBin: number;
  oodMedian: number | null;
  oodMad: number | null;
  /** The bins both rules are stated in. */
  grid: Histogram;
}

/**
 * The final image-level thresholds, rounded up to histogram bin edges so that the counts read from
 * the histograms and the rule applied to each kept candidate select exactly the same images.
 */
export function thresholds(acc: AuditAccumulator): FinalThresholds {
  const o = acc.options;
  const selfConfidence = (cls: number): number | null => acc.candidates.agreeing.get(cls)?.quantile(0.5) ?? null;
  const grid = new Histogram(0, 1, o.runBins);
  const suspectBin = (cls: number): number => grid.binAtOrAbove(Math.max(o.labelSuspectMinProb, o.labelSuspectRelative * (selfConfidence(cls) ?? 0)));
  const entropy = acc.run.stat(columnIndex('entropy'))?.hist ?? null;
  const median = entropy?.quantile(0.5) ?? null;
  const mad = entropy !== null && median !== null ? medianAbsoluteDeviation(entropy, median) : null;
  const relative = median !== null && mad !== null ? median + o.oodMads * mad : 0;
  return { selfConfidence, suspectBin, oodEntropyBin: grid.binAtOrAbove(Math.max(o.oodMinEntropy, relative)), oodMedian: median, oodMad: mad, grid };
}

/** Median of |x − median| from a histogram, taking each bin's values at its centre. */
export function medianAbsoluteDeviation(h: Histogram, median: number): number {
  const deviations: [number, number][] = [];
  for (let b = 0; b < h.bins; b++) {
    const c = h.counts[b];
    if (c > 0) deviations.push([Math.abs((h.edge(b) + h.edge(b + 1)) / 2 - median), c]);
  }
  deviations.sort((a, b) => a[0] - b[0]);
  let seen = 0;
  for (const [d, c] of deviations) {
    seen += c;
    if (seen >= h.total / 2) return d;
  }
  return 0;
}
