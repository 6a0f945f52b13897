/**
 * TF.js engine benchmark (not a test): ms/img of forward-only (`predict`) vs forward + Grad-CAM
 * (`explain`, top-1 and top-5) on full-size VGG16 (224x224, deterministic random weights: the
 * ImageNet weights cannot be downloaded here; timing does not depend on the values) with the
 * backend in use. Forward and Grad-CAM runs alternate, so a load change on a shared machine hits
 * both columns alike.
 *
 *   npm run bench:engine -- [--backend auto|wasm|cpu|node|node-gpu] [--batches 1,8,16] [--runs 2]
 *                           [--model vgg16|small] [--with-onnx]
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { PreprocessedImage } from '../src/worker/engine/engine.js';
import { createTfjsEngine } from '../src/worker/engine/tfjs/engine.js';
import { parseBackendChoice } from '../src/worker/engine/tfjs/backend.js';
import { mulberry32 } from '../src/worker/model/random-weights.js';
import type { ModelSpec } from '../src/worker/model/spec.js';
import { randomVgg16Spec, vggShapedSpec } from '../src/worker/model/vgg-shaped.js';

interface Row {
  batch: number;
  forward: number;
  gradcam: number;
  top5: number;
}

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function images(n: number, h: number, w: number, seed: number): PreprocessedImage[] {
  const next = mulberry32(seed);
  return Array.from({ length: n }, () => {
    const data = new Float32Array(h * w * 3);
    for (let i = 0; i < data.length; i++) data[i] = (next() * 2 - 1) * 120;
    return { data, height: h, width: w };
  });
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function main(): Promise<void> {
  const backend = parseBackendChoice(flag('--backend') ?? 'auto');
  const batches = (flag('--batches') ?? '1,8,16').split(',').map(Number);
  const runs = Number(flag('--runs') ?? '2');
  const model = flag('--model') ?? 'vgg16';
  let t = performance.now();
  const spec: ModelSpec = model === 'small' ? vggShapedSpec({ inputShape: [224, 224, 3], inputStd: 64 }) : randomVgg16Spec({ seed: 1, inputStd: 64 });
  const specMs = performance.now() - t;
  t = performance.now();
  const engine = await createTfjsEngine({ spec, backend });
  const buildMs = performance.now() - t;
  const [h, w] = spec.inputShape;
  console.log(`model ${spec.name} (${model}), backend ${engine.info.backend}, device ${engine.info.device}, target ${engine.info.layer}`);
  console.log(`machine: ${os.cpus()[0]?.model} x${os.cpus().length}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}; loadavg ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`);
  console.log(`random weights ${specMs.toFixed(0)} ms, engine build ${buildMs.toFixed(0)} ms; ${runs} timed runs per cell after one warm-up\n`);

  const rows: Row[] = [];
  for (const batch of batches) {
    const input = images(batch, h, w, batch);
    const time = async (f: () => Promise<unknown>): Promise<number> => {
      const s = performance.now();
      await f();
      return (performance.now() - s) / batch;
    };
    const predict = () => engine.predict(input);
    const top1 = () => engine.explain({ images: input, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' });
    const top5 = () => engine.explain({ images: input, targets: { kind: 'topk' }, topK: 5, method: 'gradcam', score: 'prob' });
    await predict();
    await top1();
    const f: number[] = [];
    const g: number[] = [];
    const g5: number[] = [];
    for (let r = 0; r < runs; r++) {
      f.push(await time(predict));
      g.push(await time(top1));
      g5.push(await time(top5));
    }
    const row = { batch, forward: median(f), gradcam: median(g), top5: median(g5) };
    rows.push(row);
    console.log(`batch ${batch}: forward ${row.forward.toFixed(1)} ms/img, Grad-CAM ${row.gradcam.toFixed(1)} ms/img (x${(row.gradcam / row.forward).toFixed(3)}), top-5 CAMs ${row.top5.toFixed(1)} ms/img (x${(row.top5 / row.forward).toFixed(3)})`);
  }
  await engine.dispose();

  console.log('\n| batch | forward ms/img | forward + Grad-CAM ms/img | ratio | top-5 CAMs ms/img | ratio |');
  console.log('|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.batch} | ${r.forward.toFixed(1)} | ${r.gradcam.toFixed(1)} | ${(r.gradcam / r.forward).toFixed(3)} | ${r.top5.toFixed(1)} | ${(r.top5 / r.forward).toFixed(3)} |`);
  }
  const worst = Math.max(...rows.map((r) => r.gradcam / r.forward));
  console.log(`\nworst Grad-CAM/forward ratio ${worst.toFixed(3)} (goal <= 1.15): ${worst <= 1.15 ? 'met' : 'NOT met'}`);

  if (process.argv.includes('--with-onnx')) {
    // Optional side-by-side with the ONNX engine's own benchmark, on the same weights.
    const path = './engine-onnx.js';
    const onnx = (await import(path)) as {
      benchOnnx: (o: { batches: number[]; runs: number; threads: number }, spec: ModelSpec) => Promise<unknown[]>;
      formatOnnxTable: (rows: unknown[], threads: number) => string;
    };
    const threads = os.availableParallelism();
    console.log(`\nONNX Runtime engine, same weights:\n${onnx.formatOnnxTable(await onnx.benchOnnx({ batches, runs, threads }, spec), threads)}`);
  }
}

await main();
