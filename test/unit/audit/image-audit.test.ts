/**
 * The worker's per-image audit record: truth matched to the model's classes, metrics of the first
 * map in image coordinates, and what a degenerate map or an unmatched label leaves out.
 */
import { describe, expect, it } from 'vitest';
import { LabelMatcher } from '../../../src/shared/audit/label-matcher.js';
import { decodeAtlas } from '../../../src/shared/audit/image-metrics.js';
import { imageMetricsOf, lineTruthOf, resolveTruth } from '../../../src/worker/audit/image-audit.js';
import type { EngineImageResult } from '../../../src/worker/engine/engine.js';

const matcher = new LabelMatcher(['circle', 'square', 'triangle'].map((label) => ({ label })), 3);

function result(hot: number, degenerate: string | null = null): EngineImageResult {
  const grid = new Float32Array(16 * 16);
  if (degenerate === null) grid[hot] = 1;
  return { probabilities: Float32Array.from([0.1, 0.7, 0.2]), logits: null, cams: [{ classIndex: 1, score: 0.7, grid, height: 16, width: 16, rawMax: 1, rawMean: 0.01, degenerate }] };
}

describe('per-image audit record', () => {
  it('matches the truth label and scores the first map against its boxes, in image coordinates', () => {
    const truth = resolveTruth({ label: 'Square', boxes: [[150, 150, 200, 200]] }, matcher);
    expect(truth).toEqual({ label: 'Square', index: 1, boxes: [[150, 150, 200, 200]] });
    // Cell (row 14, col 14) of 16 on a 200x200 image covers x, y in [175, 187.5).
    const m = imageMetricsOf({ result: result(14 * 16 + 14), image: { width: 200, height: 200 }, truth });
    expect(m).toMatchObject({ imageWidth: 200, imageHeight: 200, top1Prob: expect.closeTo(0.7, 6), correct: true, trueRank: 1, pointingHit: true });
    expect(m.peakX as number).toBeGreaterThan(0.87);
    expect(m.cornerBottomRight as number).toBeGreaterThan(0.9);
    expect(decodeAtlas(m.atlas as string)?.length).toBe(256);
    expect(lineTruthOf(truth!)).toEqual({ label: 'Square', index: 1, boxes: 1 });
  });

  it('keeps prediction metrics but no map metrics for a degenerate map, and no truth fields for an unmatched label', () => {
    const truth = resolveTruth({ label: 'hexagon' }, matcher);
    expect(truth?.index).toBeNull();
    const m = imageMetricsOf({ result: result(0, 'all-zero map'), image: { width: 64, height: 48 }, truth });
    expect(m.top1Prob).toBeCloseTo(0.7, 6);
    expect(m.correct).toBeUndefined();
    expect(m.borderShare).toBeUndefined();
    expect(m.atlas).toBeUndefined();
    expect(m.degenerate).toBe('all-zero map');
  });
});
