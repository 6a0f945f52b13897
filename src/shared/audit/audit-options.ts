/**
 * Thresholds and sizes of the run-level analysis, with their defaults in one place. Every flag
 * records the thresholds it crossed, so a reader of audit.json never needs this file to interpret one.
 */

export interface ShortcutRule {
  /** Class mean share minus the rest of the run's mean share, at least. */
  minExcess: number;
  /** Class mean share over the rest's, at least. */
  minRatio: number;
  /** Welch z of the difference of means, at least: rules out a few noisy images. */
  minZ: number;
}

export interface AuditOptions {
  /** Classes with fewer images get no class-level flags. Default 8. */
  minClassImages: number;
  /** A class whose mean corner share stands out (per corner). */
  corner: ShortcutRule;
  /** A class whose mean border-band share stands out (raised only when no corner of it is flagged). */
  border: ShortcutRule;
  /** A class whose mean energy inside its boxes is far below the rest's (ratio: class ≤ rest·(1/minRatio)). */
  background: ShortcutRule;
  /**
   * Right for the wrong reasons: a correct prediction whose map misses the boxes (pointing-game miss)
   * and puts less heat inside them than `maxEnergyOverArea` times their area share (1 = no better
   * than a uniform map). Default 1.
   */
  wrongReasonsMaxEnergyOverArea: number;
  /**
   * Label suspect: the prediction disagrees with the truth label and its probability reaches both
   * `labelSuspectMinProb` and `labelSuspectRelative` times the predicted class's self-confidence
   * (the median probability the model gives that class where prediction and label agree): a
   * per-class threshold in the spirit of Cleanlab's, so a class the model is rarely sure of still
   * gets suspects, while a flipped label, which the model predicts as confidently as any image of
   * its real class, reaches it. Defaults 0.5 and 0.5.
   */
  labelSuspectMinProb: number;
  labelSuspectRelative: number;
  /**
   * Out of distribution: top-1 probability at most min(`oodMaxProb`, run median − `oodMads`·MAD) and
   * normalised entropy at least max(`oodMinEntropy`, run median + `oodMads`·MAD).
   */
  oodMaxProb: number;
  oodMinEntropy: number;
  oodMads: number;
  /** Image-level flags kept per kind in audit.json (all are counted). Default 100. */
  maxFlagsPerKind: number;
  /** Distinct unmatched truth labels listed (the rest are counted). Default 1000. */
  maxUnmatchedLabels: number;
  /** Histogram bins of run-wide metrics. Default 200 (quantiles within 0.0025 on [0, 1]). */
  runBins: number;
  /** Histogram bins per class and metric. Default 40 (quantiles within 0.0125 on [0, 1]). */
  classBins: number;
  /** Bins of the histograms written for the report. Default 20 (must divide both). */
  reportBins: number;
}

export const DEFAULT_AUDIT_OPTIONS: Readonly<AuditOptions> = Object.freeze({
  minClassImages: 8,
  corner: Object.freeze({ minExcess: 0.1, minRatio: 2, minZ: 4 }),
  border: Object.freeze({ minExcess: 0.15, minRatio: 1.5, minZ: 4 }),
  background: Object.freeze({ minExcess: 0.2, minRatio: 2, minZ: 4 }),
  wrongReasonsMaxEnergyOverArea: 1,
  labelSuspectMinProb: 0.5,
  labelSuspectRelative: 0.5,
  oodMaxProb: 0.5,
  oodMinEntropy: 0.5,
  oodMads: 5,
  maxFlagsPerKind: 100,
  maxUnmatchedLabels: 1000,
  runBins: 200,
  classBins: 40,
  reportBins: 20,
});

export function auditOptions(overrides: Partial<AuditOptions> = {}): AuditOptions {
  const o = { ...DEFAULT_AUDIT_OPTIONS, ...overrides };
  if (o.runBins % o.reportBins !== 0 || o.classBins % o.reportBins !== 0) throw new RangeError(`reportBins ${o.reportBins} must divide runBins ${o.runBins} and classBins ${o.classBins}`);
  return o;
}
