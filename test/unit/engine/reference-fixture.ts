/**
 * Loads the committed NumPy reference (scripts/reference/gradcam_reference.py): the model it used as
 * a `ModelSpec`, its inputs as preprocessed images, and its expected outputs.
 */
import { readFileSync } from 'node:fs';
import type { LayerSpec, ModelSpec } from '../../../src/worker/model/spec.js';
import type { Engine, PreprocessedImage } from '../../../src/worker/engine/engine.js';
import type { CamMethod, ScoreMode } from '../../../src/shared/explain-options.js';
import { expect } from 'vitest';

const dir = new URL('../../fixtures/reference/', import.meta.url);

interface WeightEntry {
  name: string;
  kernelOffset: number;
  kernelShape: number[];
  biasOffset: number;
  biasShape: number[];
}

interface ReferenceModelJson {
  name: string;
  inputShape: [number, number, number];
  batch: number;
  targetLayer: string;
  layers: Array<Record<string, unknown> & { type: string; name: string }>;
  weights: WeightEntry[];
}

export interface ReferenceCam {
  classIndex: number;
  rawMax: number;
  rawMean: number;
  degenerate: boolean;
  grid: number[];
}

export interface ReferenceExpected {
  epsilon: number;
  targetShape: [number, number, number];
  logits: number[][];
  probabilities: number[][];
  /** cams[score][method][image][class] */
  cams: Record<string, Record<string, ReferenceCam[][]>>;
}

function floats(name: string): Float32Array {
  const buf = readFileSync(new URL(name, dir));
  // Copy into an aligned buffer: Node's pooled Buffers may start at an odd offset.
  const out = new Float32Array(buf.byteLength / 4);
  new Uint8Array(out.buffer).set(buf);
  return out;
}

/** `prefix`: `gradcam` (VGG16-style flatten head) or `gradcam_gap` (global average pooling head). */
export function loadReference(prefix = 'gradcam'): { spec: ModelSpec; layer: string; images: PreprocessedImage[]; expected: ReferenceExpected } {
  const model = JSON.parse(readFileSync(new URL(`${prefix}_model.json`, dir), 'utf8')) as ReferenceModelJson;
  const weights = floats(`${prefix}_weights.bin`);
  const byName = new Map(model.weights.map((w) => [w.name, w]));
  const size = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);
  const layers = model.layers.map((l): LayerSpec => {
    const w = byName.get(l.name);
    if (!w) return l as unknown as LayerSpec;
    return {
      ...(l as unknown as LayerSpec),
      kernel: weights.slice(w.kernelOffset, w.kernelOffset + size(w.kernelShape)),
      bias: weights.slice(w.biasOffset, w.biasOffset + size(w.biasShape)),
    } as LayerSpec;
  });
  const spec: ModelSpec = { name: model.name, inputShape: model.inputShape, layers, weightsHash: 'reference', source: `test/fixtures/reference/${prefix}` };
  const inputs = floats(`${prefix}_inputs.bin`);
  const [h, w, c] = model.inputShape;
  const images = Array.from({ length: model.batch }, (_, i) => ({ data: inputs.slice(i * h * w * c, (i + 1) * h * w * c), height: h, width: w }));
  const expected = JSON.parse(readFileSync(new URL(`${prefix}_expected.json`, dir), 'utf8')) as ReferenceExpected;
  return { spec, layer: model.targetLayer, images, expected };
}

export type Reference = ReturnType<typeof loadReference>;

/**
 * Explain every reference image for every class with `method` and `score`, and compare each CAM
 * with the reference: degenerate flag, raw max and mean within 1e-3 relative, normalised grid
 * within 1e-3. Returns how many non-degenerate maps were compared, so callers can insist that the
 * fixture exercises real maps. Shared by every engine's reference test.
 */
export async function compareWithReference(engine: Engine, ref: Reference, method: CamMethod, score: ScoreMode, forwardRows?: number): Promise<{ compared: number; images: number }> {
  const classes = ref.expected.probabilities[0].map((_, c) => c);
  const results = await engine.explain({ images: ref.images, targets: { kind: 'indices', indices: classes }, topK: 1, method, score, ...(forwardRows ? { forwardRows } : {}) });
  let compared = 0;
  results.forEach((r, i) => {
    expect(r.cams.map((c) => c.classIndex)).toEqual(classes);
    r.cams.forEach((cam, c) => {
      const want = ref.expected.cams[score][method][i][c];
      expect(cam.degenerate !== null).toBe(want.degenerate);
      expect(Math.abs(cam.rawMax - want.rawMax)).toBeLessThanOrEqual(1e-3 * Math.abs(want.rawMax) + 1e-9);
      expect(Math.abs(cam.rawMean - want.rawMean)).toBeLessThanOrEqual(1e-3 * Math.abs(want.rawMax) + 1e-9);
      let worst = 0;
      cam.grid.forEach((v, j) => (worst = Math.max(worst, Math.abs(v - want.grid[j]))));
      expect(worst).toBeLessThan(1e-3);
      if (!want.degenerate) compared++;
    });
  });
  return { compared, images: results.length };
}
