/** Helpers shared by the model loader tests: temp dirs and spec comparison. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect } from 'vitest';
import { architectureOf } from '../../../../src/worker/model/architecture.js';
import type { ModelSpec } from '../../../../src/worker/model/spec.js';

export async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(tmpdir(), 'gradcam-model-'));
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Same layers (types, names, hyper-parameters) and bit-identical weights. */
export function expectSameSpec(actual: ModelSpec, expected: ModelSpec, options: { ignoreName?: boolean } = {}): void {
  const a = architectureOf(actual);
  const e = architectureOf(expected);
  if (!options.ignoreName) expect(a.name).toBe(e.name);
  expect(a.inputShape).toEqual(e.inputShape);
  expect(a.layers).toEqual(e.layers);
  expect(actual.weightsHash).toBe(expected.weightsHash);
  actual.layers.forEach((layer, i) => {
    const other = expected.layers[i]!;
    if ((layer.type === 'conv2d' || layer.type === 'dense') && (other.type === 'conv2d' || other.type === 'dense')) {
      expect(Buffer.from(layer.kernel.buffer, layer.kernel.byteOffset, layer.kernel.byteLength).equals(Buffer.from(other.kernel.buffer, other.kernel.byteOffset, other.kernel.byteLength)), `${layer.name} kernel`).toBe(true);
      expect(layer.bias && Array.from(layer.bias)).toEqual(other.bias && Array.from(other.bias));
    }
  });
}
