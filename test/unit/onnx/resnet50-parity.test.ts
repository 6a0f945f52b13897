/**
 * Full-size ResNet50 exported by PyTorch (random weights, 224x224): the ONNX engine against
 * PyTorch autograd, every CAM method at layer4's output, probabilities within 1e-4 and CAMs within
 * 1e-3. Opt-in (`npm run test:parity-resnet50`, or GRADCAM_PARITY_RESNET50=/tmp/resnet50.onnx)
 * because the 100 MB file is made on demand (the npm script does this when it is missing):
 *   /usr/bin/python3 scripts/onnx-fixtures/export_torchvision.py resnet50 /tmp/resnet50.onnx --reference
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CAM_METHODS, needsGradient } from '../../../src/shared/explain-options.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { loadModel } from '../../../src/worker/model/source.js';

const file = process.env.GRADCAM_PARITY_RESNET50;

describe.runIf(file !== undefined)('full-size ResNet50 from PyTorch: ONNX engine vs autograd', () => {
  let engine: Engine;
  const reference = file ? (JSON.parse(readFileSync(`${file}.reference.json`, 'utf8')) as { images: number[][]; results: Array<{ probabilities: number[]; top1: number; cams: Record<string, number[]> }> }) : null;
  beforeAll(async () => {
    engine = await createOnnxEngine({ spec: await loadModel(file!), cache: null });
  }, 600_000);
  afterAll(async () => {
    await engine?.dispose();
  });

  it('layer4 7x7 CAMs and probabilities agree for every method', async () => {
    expect(engine.info.layer).toBe('/layer4/layer4.2/relu_2/Relu_output_0');
    const images = reference!.images.map((d) => ({ data: Float32Array.from(d), height: 224, width: 224 }));
    // Its PyTorch reference holds the gradient methods (scorecam here would be 2,048 forwards per image).
    for (const method of CAM_METHODS.filter(needsGradient)) {
      const results = await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method, score: 'prob' });
      results.forEach((r, i) => {
        const want = reference!.results[i];
        r.probabilities.forEach((p, k) => expect(Math.abs(p - want.probabilities[k])).toBeLessThan(1e-4));
        expect(r.cams[0].classIndex).toBe(want.top1);
        const max = Math.max(...want.cams[method]);
        r.cams[0].grid.forEach((v, k) => expect(Math.abs(v - (max > 0 ? want.cams[method][k] / max : 0)), `${method} image ${i}`).toBeLessThan(1e-3));
      });
    }
  }, 600_000);
});
