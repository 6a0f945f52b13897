/**
 * TF.js engine benchmark (not a test): ms/img of forward-only (`predict`) vs forward + Grad-CAM
 * (`explain`, top-1 and top-5) on full-size VGG16 (224x224, deterministic random weights: the
 * ImageNet weights cannot be downloaded here; timing does not depend on the values) with the
 * backend in use. Forward and Grad-CAM runs alternate, so a load change on a shared machine hits
 * both columns alike. Besides wall time it reports the process's CPU time per image: the wasm
 * backend runs on one thread, so CPU time is the work done and stays meaningful when other
 * processes compete for the cores (wall time then mostly measures the competition).
 *
 *   npm run bench:engine -- [--backend auto|wasm|cpu|node|node-gpu] [--batches 1,8,16] [--runs 2]
 *                           [--model vgg16|small] [--with-onnx]
 *
 * `--model file.onnx` benchmarks a user's ONNX file instead (engine-onnx-file.ts): ONNX Runtime's
 * own forward on the file vs the ONNX engine's Grad-CAM, batch 1 and 8 by default (`--threads N`:
 * ONNX Runtime's intra-op threads, default every core).
 */
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import type { PreprocessedImage } from '../src/worker/engine/engine.js';
import { createTfjsEngine } from '../src/worker/engine/tfjs/engine.js';
import { parseBackendChoice } from '../src/worker/engine/tfjs/backend.js';
import { mulberry32 } from '../src/worker/model/random-weights.js';
import type { ModelSpec } from '../src/worker/model/spec.js';
import { randomVgg16Spec, vggShapedSpec } from '../src/worker/model/vgg-shaped.js';

interface Cell {
  wall: number;
  cpu: number;
}

interface Row {
  batch: number;
  forward: Cell;
  gradcam: Cell;
  top5: Cell;
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
const medianCell = (cells: Cell[]): Cell => ({ wall: median(cells.map((c) => c.wall)), cpu: median(cells.map((c) => c.cpu)) });
const fmt = (c: Cell): string => `${c.wall.toFixed(1)} (cpu ${c.cpu.toFixed(1)})`;
const ratio = (a: Cell, b: Cell): string => `${(a.wall / b.wall).toFixed(3)} (cpu ${(a.cpu / b.cpu).toFixed(3)})`;

async function main(): Promise<void> {
  const backend = parseBackendChoice(flag('--backend') ?? 'auto');
  const batches = (flag('--batches') ?? '1,8,16').split(',').map(Number);
  const runs = Number(flag('--runs') ?? '2');
  const model = flag('--model') ?? 'vgg16';
  if (model.toLowerCase().endsWith('.onnx')) {
    const { benchOnnxFile, formatOnnxFileTable } = await import('./engine-onnx-file.js');
    const rows = await benchOnnxFile(model, { batches: (flag('--batches') ?? '1,8').split(',').map(Number), runs: Number(flag('--runs') ?? '3'), threads: flag('--threads') ? Number(flag('--threads')) : undefined, tfjs: !process.argv.includes('--no-tfjs'), log: console.log });
    console.log(`machine: ${os.cpus()[0]?.model} x${os.cpus().length}, Node ${process.version}; loadavg ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}\n`);
    console.log(formatOnnxFileTable(rows));
    return;
  }
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
    const time = async (f: () => Promise<unknown>): Promise<Cell> => {
      const s = performance.now();
      const c = process.cpuUsage();
      await f();
      const used = process.cpuUsage(c);
      return { wall: (performance.now() - s) / batch, cpu: (used.user + used.system) / 1000 / batch };
    };
    const predict = () => engine.predict(input);
    const top1 = () => engine.explain({ images: input, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' });
    const top5 = () => engine.explain({ images: input, targets: { kind: 'topk' }, topK: 5, method: 'gradcam', score: 'prob' });
    await predict();
    await top1();
    const f: Cell[] = [];
    const g: Cell[] = [];
    const g5: Cell[] = [];
    for (let r = 0; r < runs; r++) {
      f.push(await time(predict));
      g.push(await time(top1));
      g5.push(await time(top5));
    }
    const row = { batch, forward: medianCell(f), gradcam: medianCell(g), top5: medianCell(g5) };
    rows.push(row);
    console.log(`batch ${batch}: forward ${fmt(row.forward)} ms/img, Grad-CAM ${fmt(row.gradcam)} ms/img, x${ratio(row.gradcam, row.forward)}; top-5 CAMs ${fmt(row.top5)} ms/img, x${ratio(row.top5, row.forward)}; loadavg ${os.loadavg()[0].toFixed(2)}`);
  }
  await engine.dispose();

  console.log('\nms/img as wall (cpu):\n');
  console.log('| batch | forward | forward + Grad-CAM (top-1) | ratio | forward + 5 CAMs (top-5) | ratio |');
  console.log('|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(`| ${r.batch} | ${fmt(r.forward)} | ${fmt(r.gradcam)} | ${ratio(r.gradcam, r.forward)} | ${fmt(r.top5)} | ${ratio(r.top5, r.forward)} |`);
  }
  const worst = Math.max(...rows.map((r) => r.gradcam.cpu / r.forward.cpu));
  console.log(`\nworst Grad-CAM/forward CPU-time ratio ${worst.toFixed(3)} (goal <= 1.15): ${worst <= 1.15 ? 'met' : 'NOT met'}`);

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
