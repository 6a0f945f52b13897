/**
 * The flag rules. Class-level rules compare a predicted class's mean map statistics with the rest
 * of the run (the run minus that class); image-level rules select among the candidates the
 * accumulator kept. Every flag carries the evidence and the thresholds that raised it. Rules and
 * severities are documented in docs/audit-metrics.md.
 */
import type { AuditAccumulator, MetricStats } from './accumulator.js';
import type { ShortcutRule } from './audit-options.js';
import { CORNERS, type CornerName } from './image-metrics.js';
import { columnIndex, cornerMetricName, METRICS_EXTRA_KEYS, metricText } from './metric-table.js';
import { round } from './numbers.js';
import { thresholds } from './thresholds.js';
import type { AuditFlag, AuditLine, ClassRef, ImageMetrics } from './types.js';

export interface ImageCandidate {
  line: Pick<AuditLine, 'key' | 'top1' | 'truth' | 'outputs' | 'degenerate'>;
  metrics: ImageMetrics | undefined;
}

const CORNER_WORDS: Record<CornerName, string> = { topLeft: 'top-left', topRight: 'top-right', bottomLeft: 'bottom-left', bottomRight: 'bottom-right' };

interface Contrast {
  classMean: number;
  restMean: number;
  classImages: number;
  restImages: number;
  z: number;
}

/** Class vs rest of the run for one metric; null when either side has fewer than two values. */
function contrast(cls: MetricStats | undefined, run: MetricStats | undefined): Contrast | null {
  if (cls === undefined || run === undefined) return null;
  const nr = run.n - cls.n;
  if (cls.n < 2 || nr < 2) return null;
  const restSum = run.sum - cls.sum;
  const restSq = run.sumSq - cls.sumSq;
  const restMean = restSum / nr;
  const restVar = Math.max(0, (restSq - (restSum * restSum) / nr) / (nr - 1));
  const classMean = cls.sum / cls.n;
  const se = Math.sqrt(cls.variance / cls.n + restVar / nr);
  const diff = classMean - restMean;
  const z = se > 0 ? diff / se : diff === 0 ? 0 : Math.sign(diff) * Infinity;
  return { classMean, restMean, classImages: cls.n, restImages: nr, z };
}

/** Does the class stand out above (`higher`) or below the rest by every measure of the rule? */
function standsOut(c: Contrast, rule: ShortcutRule, higher: boolean): boolean {
  const [a, b, z] = higher ? [c.classMean, c.restMean, c.z] : [c.restMean, c.classMean, -c.z];
  return a - b >= rule.minExcess && a >= rule.minRatio * b && z >= rule.minZ;
}

function contrastEvidence(c: Contrast): AuditFlag['evidence'] {
  return { classMean: round(c.classMean), restMean: round(c.restMean), classImages: c.classImages, restImages: c.restImages, z: Number.isFinite(c.z) ? round(c.z) : c.z > 0 ? 'inf' : '-inf' };
}

function ruleThreshold(rule: ShortcutRule): Record<string, number> {
  return { minExcess: rule.minExcess, minRatio: rule.minRatio, minZ: rule.minZ };
}

function pct(x: number): string {
  return `${(x * 100).toFixed(x < 0.1 ? 1 : 0)}%`;
}

function name(c: ClassRef): string {
  return c.label !== undefined ? `"${c.label}"` : `#${c.index}`;
}

export function classFlags(acc: AuditAccumulator): AuditFlag[] {
  const o = acc.options;
  const flags: AuditFlag[] = [];
  const sorted = [...acc.predicted.entries()].sort(([a], [b]) => a - b);
  for (const [index, g] of sorted) {
    if (g.count < o.minClassImages) continue;
    const cls = acc.classRef(index);
    const subject = { type: 'class' as const, class: cls, role: 'predicted' as const };
    const stat = (metric: string): [MetricStats | undefined, MetricStats | undefined] => [g.stat(columnIndex(metric)), acc.run.stat(columnIndex(metric))];
    let cornerFlagged = false;
    for (const corner of CORNERS) {
      const c = contrast(...stat(cornerMetricName(corner)));
      if (c === null || !standsOut(c, o.corner, true)) continue;
      cornerFlagged = true;
      flags.push({
        kind: 'corner-shortcut',
        severity: round(c.classMean - c.restMean),
        subject,
        evidence: { corner: CORNER_WORDS[corner], metric: cornerMetricName(corner), ...contrastEvidence(c) },
        threshold: ruleThreshold(o.corner),
        message: `class ${name(cls)} puts ${pct(c.classMean)} of its heat in the ${CORNER_WORDS[corner]} corner, against ${pct(c.restMean)} for the rest of the run: the model may recognise it by something in that corner (a watermark, a logo, a frame)`,
      });
    }
    if (!cornerFlagged) {
      const c = contrast(...stat('borderShare'));
      if (c !== null && standsOut(c, o.border, true)) {
        flags.push({
          kind: 'border-shortcut',
          severity: round(c.classMean - c.restMean),
          subject,
          evidence: { metric: 'borderShare', ...contrastEvidence(c) },
          threshold: ruleThreshold(o.border),
          message: `class ${name(cls)} puts ${pct(c.classMean)} of its heat in the outer border band, against ${pct(c.restMean)} for the rest of the run: the model may recognise it by the background or the frame`,
        });
      }
    }
    const e = contrast(...stat('boxEnergy'));
    if (e !== null && standsOut(e, o.background, false)) {
      flags.push({
        kind: 'background-shortcut',
        severity: round(e.restMean - e.classMean),
        subject,
        evidence: { metric: 'boxEnergy', ...contrastEvidence(e) },
        threshold: ruleThreshold(o.background),
        message: `class ${name(cls)} puts only ${pct(e.classMean)} of its heat inside the annotated boxes, against ${pct(e.restMean)} for the rest of the run: the model looks at the background for it`,
      });
    }
  }
  return flags.sort((a, b) => b.severity - a.severity);
}

function imageSubject(acc: AuditAccumulator, c: ImageCandidate): AuditFlag['subject'] {
  const l = c.line;
  const truthIndex = l.truth?.index ?? null;
  return {
    type: 'image',
    key: l.key,
    ...(l.top1 ? { predicted: acc.classRef(l.top1.index) } : {}),
    ...(truthIndex !== null ? { truth: acc.classRef(truthIndex) } : {}),
    ...(l.outputs?.overlay ? { overlay: l.outputs.overlay } : {}),
    ...(l.outputs?.prediction ? { prediction: l.outputs.prediction } : {}),
  };
}

function top<T extends { severity: number }>(items: T[], n: number): T[] {
  return items.sort((a, b) => b.severity - a.severity).slice(0, n);
}

export function imageFlags(acc: AuditAccumulator): AuditFlag[] {
  const o = acc.options;
  const t = thresholds(acc);
  const cand = acc.candidates;
  const out: AuditFlag[] = [];

  const suspects: AuditFlag[] = [];
  for (const [cls, s] of cand.suspects) {
    const bin = t.suspectBin(cls);
    const selfConfidence = t.selfConfidence(cls);
    for (const { item } of s.top.sorted()) {
      const prob = num(item.metrics, 'top1Prob');
      if (prob === null || t.grid.binOf(prob) < bin) continue;
      const subject = imageSubject(acc, item);
      const trueProb = num(item.metrics, 'trueProb');
      suspects.push({
        kind: 'label-suspect',
        severity: round(prob - (trueProb ?? 0)),
        subject,
        evidence: { predictedProb: round(prob), trueProb: trueProb === null ? null : round(trueProb), trueRank: num(item.metrics, 'trueRank'), label: item.line.truth?.label ?? null },
        threshold: { minProb: round(t.grid.edge(bin)), classSelfConfidence: selfConfidence === null ? 0 : round(selfConfidence) },
        message: `${subject.type === 'image' ? subject.key : ''}: labelled ${name(acc.classRef(item.line.truth?.index ?? -1))} but predicted ${name(acc.classRef(cls))} with probability ${prob.toFixed(3)} (the true label gets ${(trueProb ?? 0).toFixed(3)}): check the label`,
      });
    }
  }
  out.push(...top(suspects, o.maxFlagsPerKind));

  for (const { item } of cand.ood.sorted()) {
    const prob = num(item.metrics, 'top1Prob');
    const entropy = num(item.metrics, 'entropy');
    if (prob === null || entropy === null || t.grid.binOf(entropy) < t.oodEntropyBin) continue;
    const subject = imageSubject(acc, item);
    out.push({
      kind: 'out-of-distribution',
      severity: round(entropy),
      subject,
      evidence: { top1Prob: round(prob), entropy: round(entropy), runEntropyMedian: t.oodMedian === null ? null : round(t.oodMedian), runEntropyMad: t.oodMad === null ? null : round(t.oodMad) },
      threshold: { maxTop1Prob: o.oodMaxProb, minEntropy: round(t.grid.edge(t.oodEntropyBin)) },
      message: `${subject.type === 'image' ? subject.key : ''}: the model is unsure (top-1 probability ${prob.toFixed(3)}, normalised entropy ${entropy.toFixed(3)}): the image may be unlike the training data`,
    });
  }

  for (const { severity, item } of cand.wrongReasons.sorted()) {
    const energy = num(item.metrics, 'boxEnergy');
    const area = num(item.metrics, 'boxArea');
    const prob = num(item.metrics, 'top1Prob');
    const subject = imageSubject(acc, item);
    out.push({
      kind: 'right-for-wrong-reasons',
      severity: round(severity),
      subject,
      evidence: { boxEnergy: energy === null ? null : round(energy), boxArea: area === null ? null : round(area), pointingHit: false, top1Prob: prob === null ? null : round(prob) },
      threshold: { maxEnergyOverArea: o.wrongReasonsMaxEnergyOverArea },
      message: `${subject.type === 'image' ? subject.key : ''}: predicted correctly, but the map's peak is outside the boxes and only ${pct(energy ?? 0)} of its heat is inside them (they cover ${pct(area ?? 0)} of the image)`,
    });
  }

  for (const { item } of cand.degenerate.sorted()) {
    const subject = imageSubject(acc, item);
    const reason = metricText(item.metrics, METRICS_EXTRA_KEYS.degenerate) ?? null;
    out.push({
      kind: 'degenerate-map',
      severity: 1,
      subject,
      evidence: { reason },
      threshold: {},
      message: `${subject.type === 'image' ? subject.key : ''}: the map carries no information${reason ? ` (${reason})` : ''}`,
    });
  }
  return out;
}

function num(m: ImageMetrics | undefined, key: string): number | null {
  const v = m?.[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}
