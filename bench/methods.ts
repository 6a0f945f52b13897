/**
 * CAM method and faithfulness cost benchmark (not a test), measured side by side in one run: the
 * committed demo model (64x64 input, `last_conv` 16x16x96) explains the same batches of synthetic
 * scenes with every method, and with Grad-CAM plus `--faithfulness`, on ONNX Runtime (CPU, one
 * intra-op thread, so process CPU time is the work done even when other processes compete for the
 * cores). Then the in-process parts that do not scale with the model, at VGG16's sizes: Eigen-CAM's
 * SVD of a 14x14x512 activation, and faithfulness's blur and regions on a 224x224 input.
 *
 *   npm run bench:methods -- [--batches 4]
 */
import path from 'node:path';
import { CAM_METHODS } from '../src/shared/explain-options.js';
import type { CamMethod } from '../src/shared/explain-options.js';
import { createEngine } from '../src/worker/engine/factory.js';
import { gaussianBlur, randomRegion, topRegion } from '../src/worker/engine/faithfulness.js';
import { eigenCamMap } from '../src/worker/engine/gradient-free/eigencam.js';
import { preprocess } from '../src/worker/image/preprocess.js';
import { loadModelSpec } from '../src/worker/model/source.js';
import { generateImage } from '../scripts/demo-model/synth.js';
import { cpuMs, flag } from './measure.js';

async function engineCosts(batches: number): Promise<void> {
  const spec = await loadModelSpec(path.resolve('models/demo/model.json'));
  const engine = await createEngine({ spec, layer: 'last_conv', engine: 'onnx', onnx: { intraOpThreads: 1, cacheDir: null } });
  const batchSize = 16;
  const batch = (b: number) => Array.from({ length: batchSize }, (_, i) => preprocess({ data: generateImage(7, b * batchSize + i).rgb, width: 64, height: 64 }, { width: 64, height: 64 }));
  const variants: { name: string; method: CamMethod; faithfulness: boolean }[] = [
    ...CAM_METHODS.map((method) => ({ name: method, method, faithfulness: false })),
    { name: 'gradcam + faithfulness', method: 'gradcam', faithfulness: true },
  ];
  const cpu = new Map<string, number>(variants.map((v) => [v.name, 0]));
  const forward = { ms: 0 };
  const warm = batch(99);
  for (const v of variants) await engine.explain({ images: warm, targets: { kind: 'top1' }, topK: 1, method: v.method, score: 'logit', faithfulness: v.faithfulness, forwardRows: batchSize });
  // Interleaved per batch, so drifting load hits every variant alike.
  for (let b = 0; b < batches; b++) {
    const images = batch(b);
    const f0 = cpuMs();
    await engine.predict(images);
    forward.ms += cpuMs() - f0;
    for (const v of variants) {
      const c0 = cpuMs();
      await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method: v.method, score: 'logit', faithfulness: v.faithfulness, forwardRows: batchSize });
      cpu.set(v.name, (cpu.get(v.name) ?? 0) + cpuMs() - c0);
    }
  }
  await engine.dispose();
  const n = batches * batchSize;
  const base = (cpu.get('gradcam') ?? 0) / n;
  console.log(`demo model (64x64, last_conv 16x16x96), ONNX Runtime CPU 1 thread, batch ${batchSize}, ${n} images; forward only ${(forward.ms / n).toFixed(2)} ms CPU/img`);
  console.log('| variant | ms CPU/img | vs gradcam |');
  console.log('|---|---|---|');
  for (const v of variants) {
    const per = (cpu.get(v.name) ?? 0) / n;
    console.log(`| ${v.name} | ${per.toFixed(2)} | ${(per / base).toFixed(2)}x |`);
  }
}

function vggSizedParts(): void {
  let s = 1;
  const rand = (): number => ((s = (s * 16807) % 2147483647) / 2147483647);
  const act = Float32Array.from({ length: 14 * 14 * 512 }, () => Math.max(0, rand() * 2 - 1.2) * (1 + rand()));
  const image = { data: Float32Array.from({ length: 224 * 224 * 3 }, () => rand() * 255 - 120), width: 224, height: 224 };
  const grid = Float32Array.from({ length: 196 }, () => rand());
  const time = (fn: () => unknown, reps: number): number => {
    fn();
    const c0 = cpuMs();
    for (let r = 0; r < reps; r++) fn();
    return (cpuMs() - c0) / reps;
  };
  console.log('| VGG16-sized part | ms CPU/img |');
  console.log('|---|---|');
  console.log(`| Eigen-CAM SVD, 14x14x512 activation | ${time(() => eigenCamMap(act, 14, 14, 512), 5).toFixed(1)} |`);
  console.log(`| faithfulness: blur 224x224x3 (σ 9 px) | ${time(() => gaussianBlur(image, 0.04 * 224), 5).toFixed(1)} |`);
  console.log(`| faithfulness: top 20% region + random rectangle | ${time(() => (topRegion(grid, 14, 14, 224, 224, 0.2), randomRegion(224, 224, 0.2, 7)), 10).toFixed(1)} |`);
}

await engineCosts(flag('--batches', 4));
vggSizedParts();
