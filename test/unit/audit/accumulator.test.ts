/**
 * The run-level analysis on synthetic runs whose answers are known: a class with a corner shortcut,
 * a clean run, flipped labels, unmatched labels, bounded evidence with exact counts, and quantiles
 * within half a bin of the exact ones.
 */
import { describe, expect, it } from 'vitest';
import { AuditAccumulator } from '../../../src/shared/audit/accumulator.js';
import { Histogram } from '../../../src/shared/audit/histogram.js';
import type { AuditLine, AuditReport } from '../../../src/shared/audit/types.js';
import { LABELS, lineFor, prng, sceneRun } from './helpers.js';

function audit(lines: AuditLine[], options = {}): AuditReport {
  const acc = new AuditAccumulator({ runId: 'test-run', now: () => new Date('2026-12-01T00:00:00Z') }, options);
  for (const l of lines) acc.add(l);
  return acc.finish();
}

describe('audit accumulator', () => {
  it('flags nothing on a clean run and summarises it', () => {
    const report = audit(sceneRun(12, 1));
    expect(report.flags).toEqual([]);
    expect(Object.values(report.flagCounts).every((n) => n === 0)).toBe(true);
    expect(report.counts).toMatchObject({ images: 60, ok: 60, withMetrics: 60, withTruth: 60, matchedTruth: 60, withBoxes: 60 });
    expect(report.classes.predicted).toHaveLength(5);
    expect(report.classes.true.map((c) => c.accuracy)).toEqual([1, 1, 1, 1, 1]);
    expect(report.metrics.pointingHit?.mean).toBe(1);
    // The diagonal of the confusion matrix holds every image.
    expect(report.confusion?.cells).toEqual(LABELS.map((_, i) => [i, i, 12]));
    expect(report.atlas).toHaveLength(256);
  });

  it('flags a class whose maps sit in a corner, with that corner, and nothing else', () => {
    const lines = sceneRun(12, 2, (s) => (s.predicted === 3 ? { ...s, cornerWeight: 1.4 } : s));
    const report = audit(lines);
    const corner = report.flags.filter((f) => f.kind === 'corner-shortcut');
    expect(corner).toHaveLength(1);
    expect(corner[0].subject).toEqual({ type: 'class', class: { index: 3, label: 'star' }, role: 'predicted' });
    expect(corner[0].evidence.corner).toBe('bottom-right');
    expect(corner[0].evidence.classMean as number).toBeGreaterThan(0.2);
    expect(corner[0].threshold).toEqual({ minExcess: 0.1, minRatio: 2, minZ: 4 });
    // The same maps leave the boxes: a background shortcut for the class, and each of its images is
    // right for the wrong reasons when the corner outweighs the object.
    const kinds = new Set(report.flags.map((f) => f.kind));
    expect([...kinds].every((k) => ['corner-shortcut', 'background-shortcut', 'right-for-wrong-reasons'].includes(k))).toBe(true);
    for (const f of report.flags.filter((f) => f.kind === 'right-for-wrong-reasons')) expect(f.subject.type === 'image' && f.subject.predicted?.index).toBe(3);
    // The class atlas shows where: its bottom-right cell is far hotter than the run's other classes'.
    const star = report.classes.predicted.find((c) => c.class.index === 3);
    const circle = report.classes.predicted.find((c) => c.class.index === 0);
    expect(star?.atlas?.[255]).toBeGreaterThan(0.5);
    expect(circle?.atlas?.[255]).toBeLessThan(0.05);
  });

  it('finds flipped labels as label suspects', () => {
    const r = prng(7);
    const flipped = new Set<string>();
    const lines = sceneRun(40, 3, (s, i) => {
      if (i % 20 !== 7) return s; // 5% of 200
      const wrong = (s.predicted + 1 + Math.floor(r() * 4)) % 5;
      flipped.add(s.key);
      return { ...s, truth: { index: wrong, box: true } };
    });
    const report = audit(lines);
    const suspects = report.flags.filter((f) => f.kind === 'label-suspect');
    expect(new Set(suspects.map((f) => (f.subject.type === 'image' ? f.subject.key : '')))).toEqual(flipped);
    expect(report.flagCounts['label-suspect']).toBe(flipped.size);
    expect(suspects[0].threshold.minProb).toBeGreaterThanOrEqual(0.5);
  });

  it('keeps a bounded number of flags per kind and counts every one', () => {
    const lines = sceneRun(40, 4, (s, i) => (i % 2 === 0 ? { ...s, degenerate: true } : s));
    const report = audit(lines, { maxFlagsPerKind: 7 });
    expect(report.flags.filter((f) => f.kind === 'degenerate-map')).toHaveLength(7);
    expect(report.flagCounts['degenerate-map']).toBe(100);
    expect(report.counts.degenerate).toBe(100);
    expect(report.flags.find((f) => f.kind === 'degenerate-map')?.evidence.reason).toBe('all-zero map');
  });

  it('reports an out-of-distribution image among confident ones', () => {
    const lines = sceneRun(20, 5);
    lines.push(lineFor({ key: 'odd.png', predicted: 2, prob: 0.24, x: 0.5, y: 0.5 }));
    const report = audit(lines);
    const ood = report.flags.filter((f) => f.kind === 'out-of-distribution');
    expect(ood.map((f) => f.subject.type === 'image' && f.subject.key)).toEqual(['odd.png']);
    expect(ood[0].evidence.entropy as number).toBeGreaterThan(0.9);
  });

  it('counts unmatched truth labels once per label and failed images apart', () => {
    const lines = sceneRun(2, 6);
    lines.push(lineFor({ key: 'a.png', predicted: 1, prob: 0.9, x: 0.5, y: 0.5, truth: { index: null, label: 'hexagon' } }));
    lines.push(lineFor({ key: 'b.png', predicted: 1, prob: 0.9, x: 0.5, y: 0.5, truth: { index: null, label: 'hexagon' } }));
    lines.push(lineFor({ key: 'c.png', predicted: 1, prob: 0.9, x: 0.5, y: 0.5, truth: { index: null, label: 'Oval' } }));
    lines.push({ key: 'broken.jpg', status: 'failed', error: 'truncated JPEG' });
    const report = audit(lines, { maxUnmatchedLabels: 1 });
    expect(report.unmatchedLabels).toEqual([{ label: 'hexagon', count: 2 }]);
    expect(report.unmatchedLabelsTruncated).toBe(1);
    expect(report.counts).toMatchObject({ images: 14, ok: 13, failed: 1, withTruth: 13, matchedTruth: 10 });
  });

  it('gives quantiles within half a bin of the exact ones', () => {
    const r = prng(9);
    const values = Array.from({ length: 5000 }, () => r() ** 2);
    const h = new Histogram(0, 1, 200);
    for (const v of values) h.add(v);
    const sorted = [...values].sort((a, b) => a - b);
    for (const q of [0.05, 0.25, 0.5, 0.75, 0.95]) {
      const exact = sorted[Math.ceil(q * sorted.length) - 1];
      expect(Math.abs((h.quantile(q) ?? NaN) - exact)).toBeLessThanOrEqual(0.5 / 200 + 1e-12);
    }
  });
});
