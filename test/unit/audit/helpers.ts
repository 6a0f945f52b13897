/**
 * Synthetic manifest lines for the audit tests, built with the real metric functions from maps with
 * known structure: a blob on the object, optionally a second blob in a corner.
 */
import { atlasBytes, mapMetrics, predictionMetrics, type Box } from '../../../src/shared/audit/image-metrics.js';
import { toMetricsRecord } from '../../../src/shared/audit/metric-table.js';
import type { AuditLine } from '../../../src/shared/audit/types.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';

/** Deterministic PRNG (the project's mulberry32). */
export const prng = mulberry32;

export const LABELS = ['circle', 'square', 'triangle', 'star', 'cross'];

/** A 16x16 grid with Gaussian blobs at normalised positions, max 1. */
export function blobGrid(blobs: { x: number; y: number; sigma: number; weight: number }[], size = 16): Float32Array {
  const g = new Float32Array(size * size);
  for (let i = 0; i < size; i++) {
    for (let j = 0; j < size; j++) {
      const u = (j + 0.5) / size;
      const v = (i + 0.5) / size;
      let s = 0;
      for (const b of blobs) s += b.weight * Math.exp(-((u - b.x) ** 2 + (v - b.y) ** 2) / (2 * b.sigma ** 2));
      g[i * size + j] = s;
    }
  }
  let max = 0;
  for (const v of g) max = Math.max(max, v);
  for (let i = 0; i < g.length; i++) g[i] = Math.round((g[i] / max) * 1e4) / 1e4;
  return g;
}

/** Softmax-like probabilities with `p` on `top` and the rest spread evenly. */
export function probsFor(top: number, p: number, classes = LABELS.length): Float32Array {
  const out = new Float32Array(classes).fill((1 - p) / (classes - 1));
  out[top] = p;
  return out;
}

export interface SceneSpec {
  key: string;
  predicted: number;
  prob: number;
  /** Object centre and box (normalised) on a 64x64 image. */
  x: number;
  y: number;
  /** Extra heat in the bottom-right corner with this weight (0: none). */
  cornerWeight?: number;
  truth?: { index: number | null; label?: string; box?: boolean };
  degenerate?: boolean;
}

export function lineFor(s: SceneSpec): AuditLine {
  const size = 64;
  const blobs = [{ x: s.x, y: s.y, sigma: 0.08, weight: 1 }];
  if (s.cornerWeight) blobs.push({ x: 0.93, y: 0.93, sigma: 0.05, weight: s.cornerWeight });
  const grid = blobGrid(blobs);
  const map = { grid, gridHeight: 16, gridWidth: 16, degenerate: s.degenerate ? 'all-zero map' : null };
  const half = 10;
  const boxes: Box[] | undefined = s.truth?.box ? [[s.x * size - half, s.y * size - half, s.x * size + half, s.y * size + half]] : undefined;
  const probs = probsFor(s.predicted, s.prob);
  const trueIndex = s.truth?.index ?? undefined;
  const atlas = atlasBytes(map);
  return {
    key: s.key,
    status: 'ok',
    top1: { index: s.predicted, label: LABELS[s.predicted], probability: s.prob },
    degenerate: s.degenerate === true,
    outputs: { overlay: `s3://out/run/overlays/${s.key}.jpg`, prediction: `s3://out/run/predictions/${s.key}.json` },
    ...(s.truth ? { truth: { label: s.truth.label ?? LABELS[s.truth.index ?? 0], index: s.truth.index, boxes: boxes?.length ?? 0 } } : {}),
    metrics: toMetricsRecord({
      image: { width: size, height: size },
      prediction: predictionMetrics(probs, trueIndex === null ? undefined : trueIndex),
      map: s.degenerate ? null : mapMetrics(map, size, size, boxes),
      atlas: s.degenerate ? null : atlas,
      degenerate: s.degenerate ? 'all-zero map' : null,
    }),
  };
}

/** A run of `perClass` images per class; objects at random positions away from the corners. */
export function sceneRun(perClass: number, seed: number, edit: (s: SceneSpec, i: number) => SceneSpec = (s) => s): AuditLine[] {
  const r = prng(seed);
  const out: AuditLine[] = [];
  for (let i = 0; i < perClass * LABELS.length; i++) {
    const cls = i % LABELS.length;
    const base: SceneSpec = {
      key: `img/${String(i).padStart(5, '0')}.png`,
      predicted: cls,
      prob: 0.9 + 0.09 * r(),
      x: 0.3 + 0.4 * r(),
      y: 0.3 + 0.4 * r(),
      truth: { index: cls, box: true },
    };
    out.push(lineFor(edit(base, i)));
  }
  return out;
}
