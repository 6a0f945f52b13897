/**
 * The per-image audit metrics and the run-comparison similarity against the committed NumPy
 * reference (scripts/reference/audit_metrics_reference.py): fixed maps, image sizes below and above
 * the analysis side, boxes inside, overlapping, on the border and holding no pixel centre, ties.
 * Discrete results (peak, pointing hit, atlas bytes) must match exactly, sums to 1e-9.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { atlasBytes, DEFAULT_METRIC_OPTIONS, mapMetrics, predictionMetrics, type Box, type MapMetrics, type PredictionMetrics } from '../../../src/shared/audit/image-metrics.js';
import { mapSimilarity } from '../../../src/shared/audit/map-similarity.js';

interface Case {
  name: string;
  grid: number[];
  gh: number;
  gw: number;
  width: number;
  height: number;
  boxes: Box[];
  probabilities: number[];
  trueClass: number | null;
  degenerate: string | null;
  expected: { prediction: PredictionMetrics; map: MapMetrics | null; atlas: number[] | null };
}
interface Reference {
  options: typeof DEFAULT_METRIC_OPTIONS;
  cases: Case[];
  similarity: { a: number[]; b: number[]; expected: { rankCorrelation: number | null; topIou: number } }[];
}

const ref = JSON.parse(readFileSync(new URL('../../fixtures/reference/audit_metrics_expected.json', import.meta.url), 'utf8')) as Reference;

/** Compare numbers to `tol`, everything else exactly. */
function expectClose(actual: unknown, expected: unknown, where: string, tol = 1e-9): void {
  if (typeof expected === 'number') {
    expect(typeof actual, where).toBe('number');
    expect(Math.abs((actual as number) - expected), `${where}: ${String(actual)} vs ${expected}`).toBeLessThanOrEqual(tol);
  } else if (expected !== null && typeof expected === 'object' && !Array.isArray(expected)) {
    expect(Object.keys(actual as object).sort(), where).toEqual(Object.keys(expected).sort());
    for (const [k, v] of Object.entries(expected)) expectClose((actual as Record<string, unknown>)[k], v, `${where}.${k}`, tol);
  } else {
    expect(actual, where).toEqual(expected);
  }
}

describe('audit metrics against the NumPy reference', () => {
  it('uses the same options as the reference', () => {
    expect(ref.options).toEqual({ ...DEFAULT_METRIC_OPTIONS });
    expect(ref.cases.length).toBeGreaterThan(30);
  });

  it.each(ref.cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const probs = Float32Array.from(c.probabilities);
    expectClose(predictionMetrics(probs, c.trueClass ?? undefined), c.expected.prediction, 'prediction', 1e-6);
    const map = { grid: Float32Array.from(c.grid), gridHeight: c.gh, gridWidth: c.gw, degenerate: c.degenerate };
    expectClose(mapMetrics(map, c.width, c.height, c.boxes), c.expected.map, 'map');
    const atlas = atlasBytes(map);
    expect(atlas === null ? null : [...atlas]).toEqual(c.expected.atlas);
  });

  it('map similarity matches on every pair', () => {
    for (const [i, p] of ref.similarity.entries()) expectClose(mapSimilarity(p.a, p.b), p.expected, `pair ${i}`, 1e-12);
  });
});
