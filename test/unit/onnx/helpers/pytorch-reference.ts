/**
 * The PyTorch autograd references of the small ONNX fixtures (test/fixtures/onnx/reference.json,
 * written by scripts/onnx-fixtures/make_fixtures.py), shared by the float32 and float16 parity tests.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { CamMethod } from '../../../../src/shared/explain-options.js';
import type { PreprocessedImage } from '../../../../src/worker/engine/engine.js';

export const ONNX_FIXTURES_DIR = join(import.meta.dirname, '../../../fixtures/onnx');

export interface PytorchReference {
  images: number[][];
  height: number;
  width: number;
  models: Record<string, { file: string; target: string; camHeight: number; camWidth: number; results: Array<{ probabilities: number[]; logits: number[]; top1: number; cams: Record<string, number[]> }> }>;
}

export const pytorchReference = JSON.parse(readFileSync(join(ONNX_FIXTURES_DIR, 'reference.json'), 'utf8')) as PytorchReference;

/** The reference's input images, preprocessed as the engines take them. */
export const referenceImages: PreprocessedImage[] = pytorchReference.images.map((d) => ({ data: Float32Array.from(d), height: pytorchReference.height, width: pytorchReference.width }));

/** The gradient methods the reference holds. */
export const REFERENCE_METHODS: CamMethod[] = ['gradcam', 'gradcam++', 'hirescam', 'xgradcam', 'layercam'];

/** A raw CAM divided by its maximum (all zeros stay zeros), as the engines return maps. */
export function normalised(map: readonly number[]): number[] {
  const max = Math.max(...map);
  return map.map((v) => (max > 0 ? v / max : 0));
}
