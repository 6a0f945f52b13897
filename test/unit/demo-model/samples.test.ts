/**
 * The committed sample images: small in total, licensed, and the synthetic ones decode and resize
 * through the worker's own path (decode + PIL-NEAREST to the model input) to exactly the scene the
 * generator draws, so the demo shows the model what it was trained on.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeImage } from '../../../src/worker/image/decode.js';
import { resizeForModel } from '../../../src/worker/image/preprocess.js';
import { DEMO_ARCHITECTURE } from '../../../scripts/demo-model/architecture.js';
import { DEFAULT_SAMPLE_OPTIONS } from '../../../scripts/demo-model/sample-options.js';
import { generateImage } from '../../../scripts/demo-model/synth.js';

const ROOT = 'samples';

async function totalSize(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    total += entry.isDirectory() ? await totalSize(p) : (await stat(p)).size;
  }
  return total;
}

interface GroundTruth {
  seed: number;
  images: Record<string, { class: string; box: [number, number, number, number] }>;
}

describe('demo samples', () => {
  it('stay under 3 MB and every photograph has a licence entry', async () => {
    expect(await totalSize(ROOT)).toBeLessThan(3 * 1024 * 1024);
    const licences = await readFile(path.join(ROOT, 'LICENSES.md'), 'utf8');
    const photos = await readdir(path.join(ROOT, 'photos'));
    expect(photos.length).toBeGreaterThanOrEqual(3);
    for (const photo of photos) expect(licences).toContain(`\`${photo}\``);
  });

  it('synthetic samples resize back to the exact generated scenes', async () => {
    const truth = JSON.parse(await readFile(path.join(ROOT, 'synthetic', 'ground-truth.json'), 'utf8')) as GroundTruth;
    const names = Object.keys(truth.images).sort();
    expect(names.length).toBe(DEFAULT_SAMPLE_OPTIONS.count);
    for (const name of names.slice(0, 5)) {
      const index = Number(name.slice(0, 2));
      const scene = generateImage(truth.seed, index);
      expect(truth.images[name]?.class).toBe(scene.className);
      const k = DEFAULT_SAMPLE_OPTIONS.upscale;
      expect(truth.images[name]?.box).toEqual([scene.box.x0 * k, scene.box.y0 * k, scene.box.x1 * k, scene.box.y1 * k]);
      const decoded = await decodeImage(await readFile(path.join(ROOT, 'synthetic', name)));
      const size = DEMO_ARCHITECTURE.inputSize;
      const resized = resizeForModel(decoded, size, size, 'nearest');
      expect(Buffer.from(resized.data).equals(Buffer.from(scene.rgb))).toBe(true);
    }
  });
});
