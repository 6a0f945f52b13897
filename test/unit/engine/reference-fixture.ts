/**
 * Loads the committed NumPy reference (scripts/reference/gradcam_reference.py): the model it used as
 * a `ModelSpec`, its inputs as preprocessed images, and its expected outputs.
 */
import { readFileSync } from 'node:fs';
import type { LayerSpec, ModelSpec } from '../../../src/worker/model/spec.js';
import type { PreprocessedImage } from '../../../src/worker/engine/engine.js';

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
