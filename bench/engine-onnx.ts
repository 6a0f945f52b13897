/**
 * ONNX Runtime engine benchmark on full-size VGG16 (random weights, 224x224): ms/img of the
 * forward-only graph vs. the Grad-CAM graph (raw session runs, same session options), and of the
 * whole `OnnxEngine.explain` call (packing, post-processing). Usable standalone
 * (`npx tsx bench/engine-onnx.ts [--batches 1,8] [--runs 3] [--threads N]`) or from bench/engine.ts
 * via `benchOnnx`, so both engines are reported side by side.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { PreprocessedImage } from '../src/worker/engine/engine.js';
import { GRAPH_IO, compileGraph } from '../src/worker/engine/onnx/compile-graph.js';
import { createOnnxEngine, sessionOptions } from '../src/worker/engine/onnx/engine.js';
import { resolveOnnxRuntimeOptions } from '../src/worker/engine/onnx/options.js';
import { mulberry32 } from '../src/worker/model/random-weights.js';
import type { ModelSpec } from '../src/worker/model/spec.js';
import { randomVgg16Spec } from '../src/worker/model/vgg-shaped.js';

export interface OnnxBenchOptions {
  batches: number[];
  /** Timed runs per batch size (after one warm-up run). */
  runs: number;
  threads: number;
}

export interface OnnxBenchRow {
  batch: number;
  forwardMsPerImage: number;
  gradcamMsPerImage: number;
  /** gradcam / forward (wall time). */
  ratio: number;
  engineExplainMsPerImage: number;
  /**
   * Process CPU time per image (all ORT threads). On a shared machine wall time mostly measures
   * the competition; CPU time is the work done, so its ratio is the fair one.
   */
  cpu: { forward: number; gradcam: number; engineExplain: number; ratio: number };
}

function images(n: number, seed: number): PreprocessedImage[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => {
    const data = new Float32Array(224 * 224 * 3);
    for (let i = 0; i < data.length; i++) data[i] = (rand() * 2 - 1) * 120;
    return { data, height: 224, width: 224 };
  });
}

function batchTensor(imgs: PreprocessedImage[]): ort.Tensor {
  const flat = new Float32Array(imgs.length * 224 * 224 * 3);
  imgs.forEach((img, i) => flat.set(img.data, i * img.data.length));
  return new ort.Tensor('float32', flat, [imgs.length, 224, 224, 3]);
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/**
 * Median ms of each function over `runs` rounds after one warm-up round. The functions alternate
 * within a round, so on a shared machine both see the same load and their ratio stays meaningful.
 */
async function timeInterleaved(runs: number, fns: Array<() => Promise<unknown>>): Promise<Array<{ wall: number; cpu: number }>> {
  for (const fn of fns) await fn();
  const wall: number[][] = fns.map(() => []);
  const cpu: number[][] = fns.map(() => []);
  for (let r = 0; r < runs; r++) {
    for (const [i, fn] of fns.entries()) {
      const c0 = process.cpuUsage();
      const t0 = performance.now();
      await fn();
      wall[i].push(performance.now() - t0);
      const c = process.cpuUsage(c0);
      cpu[i].push((c.user + c.system) / 1000);
    }
  }
  return fns.map((_, i) => ({ wall: median(wall[i]), cpu: median(cpu[i]) }));
}

export async function benchOnnx(options: OnnxBenchOptions, spec: ModelSpec = randomVgg16Spec({ seed: 1, inputStd: 64 })): Promise<OnnxBenchRow[]> {
  const runtime = resolveOnnxRuntimeOptions({ intraOpThreads: options.threads, cacheDir: null });
  const opts = sessionOptions(['cpu'], runtime);
  const forward = await ort.InferenceSession.create(compileGraph(spec, { layer: 'block5_conv3', kind: 'forward' }).bytes, opts);
  const gradcam = await ort.InferenceSession.create(compileGraph(spec, { layer: 'block5_conv3', kind: 'explain', method: 'gradcam' }).bytes, opts);
  // The engine as workers use it (every method served, gradcam's session open), post-processing included.
  const dir = mkdtempSync(join(tmpdir(), 'onnx-bench-'));
  const engine = await createOnnxEngine({ spec, runtime: { intraOpThreads: options.threads, cacheDir: dir } });
  const rows: OnnxBenchRow[] = [];
  try {
    for (const b of options.batches) {
      const imgs = images(b, b);
      const x = batchTensor(imgs);
      const explainFeeds = {
        [GRAPH_IO.images]: x,
        [GRAPH_IO.targets]: new ort.Tensor('int64', new BigInt64Array(b).fill(-1n), [b, 1]),
        [GRAPH_IO.scoreIsProb]: new ort.Tensor('bool', [true], [1]),
      };
      const fetches = [GRAPH_IO.probabilities, GRAPH_IO.logits, GRAPH_IO.classes, GRAPH_IO.scores, GRAPH_IO.gradMaxAbs, GRAPH_IO.cam];
      const [f, g, e] = await timeInterleaved(options.runs, [
        () => forward.run({ [GRAPH_IO.images]: x }),
        () => gradcam.run(explainFeeds, fetches),
        () => engine.explain({ images: imgs, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' }),
      ]);
      rows.push({
        batch: b,
        forwardMsPerImage: f.wall / b,
        gradcamMsPerImage: g.wall / b,
        ratio: g.wall / f.wall,
        engineExplainMsPerImage: e.wall / b,
        cpu: { forward: f.cpu / b, gradcam: g.cpu / b, engineExplain: e.cpu / b, ratio: g.cpu / f.cpu },
      });
    }
  } finally {
    await forward.release();
    await gradcam.release();
    await engine.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  return rows;
}

export function formatOnnxTable(rows: OnnxBenchRow[], threads: number): string {
  const lines = [
    `ONNX Runtime ${ort.env.versions.common}, CPU EP, ${threads} intra-op threads, ${cpus()[0]?.model ?? 'unknown CPU'}`,
    'ms/img as wall (cpu: process CPU time over all ORT threads):',
    '| batch | forward | Grad-CAM graph | ratio | OnnxEngine.explain | ratio |',
    '|---:|---:|---:|---:|---:|---:|',
    ...rows.map(
      (r) =>
        `| ${r.batch} | ${r.forwardMsPerImage.toFixed(1)} (cpu ${r.cpu.forward.toFixed(1)}) | ${r.gradcamMsPerImage.toFixed(1)} (cpu ${r.cpu.gradcam.toFixed(1)}) | ` +
        `${r.ratio.toFixed(3)} (cpu ${r.cpu.ratio.toFixed(3)}) | ${r.engineExplainMsPerImage.toFixed(1)} (cpu ${r.cpu.engineExplain.toFixed(1)}) | ` +
        `${(r.engineExplainMsPerImage / r.forwardMsPerImage).toFixed(3)} (cpu ${(r.cpu.engineExplain / r.cpu.forward).toFixed(3)}) |`,
    ),
  ];
  return lines.join('\n');
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const threads = Number(arg('--threads') ?? availableParallelism());
  const options: OnnxBenchOptions = {
    batches: (arg('--batches') ?? '1,8').split(',').map(Number),
    runs: Number(arg('--runs') ?? 3),
    threads,
  };
  const t0 = performance.now();
  const spec = randomVgg16Spec({ seed: 1, inputStd: 64 });
  process.stderr.write(`random VGG16 weights in ${Math.round(performance.now() - t0)} ms\n`);
  const rows = await benchOnnx(options, spec);
  process.stdout.write(`${formatOnnxTable(rows, threads)}\n`);
}
