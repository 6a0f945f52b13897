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
import { GRAPH_IO, camOutputName, compileGraph } from '../src/worker/engine/onnx/compile-graph.js';
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
  /** gradcam / forward. */
  ratio: number;
  engineExplainMsPerImage: number;
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

/** Median ms of `runs` calls after one warm-up. */
async function time(runs: number, fn: () => Promise<unknown>): Promise<number> {
  await fn();
  const samples: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

export async function benchOnnx(options: OnnxBenchOptions, spec: ModelSpec = randomVgg16Spec({ seed: 1, inputStd: 64 })): Promise<OnnxBenchRow[]> {
  const runtime = resolveOnnxRuntimeOptions({ intraOpThreads: options.threads, cacheDir: null });
  const opts = sessionOptions(['cpu'], runtime);
  const forward = new Map<number, number>();
  const gradcam = new Map<number, number>();

  // One session at a time: VGG16 holds 553 MB of weights per session.
  {
    const bytes = compileGraph(spec, { layer: 'block5_conv3', kind: 'forward' }).bytes;
    const session = await ort.InferenceSession.create(bytes, opts);
    for (const b of options.batches) {
      const feeds = { [GRAPH_IO.images]: batchTensor(images(b, b)) };
      forward.set(b, (await time(options.runs, () => session.run(feeds))) / b);
    }
    await session.release();
  }
  {
    const bytes = compileGraph(spec, { layer: 'block5_conv3', kind: 'explain', methods: ['gradcam'] }).bytes;
    const session = await ort.InferenceSession.create(bytes, opts);
    for (const b of options.batches) {
      const feeds = {
        [GRAPH_IO.images]: batchTensor(images(b, b)),
        [GRAPH_IO.targets]: new ort.Tensor('int64', new BigInt64Array(b).fill(-1n), [b, 1]),
        [GRAPH_IO.scoreIsProb]: new ort.Tensor('bool', [true], [1]),
      };
      const fetches = [GRAPH_IO.probabilities, GRAPH_IO.logits, GRAPH_IO.classes, GRAPH_IO.scores, GRAPH_IO.gradMaxAbs, camOutputName('gradcam')];
      gradcam.set(b, (await time(options.runs, () => session.run(feeds, fetches))) / b);
    }
    await session.release();
  }
  const engineMs = new Map<number, number>();
  {
    // The engine as workers use it: all five methods compiled in, post-processing included.
    const dir = mkdtempSync(join(tmpdir(), 'onnx-bench-'));
    const engine = await createOnnxEngine({ spec, runtime: { intraOpThreads: options.threads, cacheDir: dir } });
    for (const b of options.batches) {
      const imgs = images(b, b);
      engineMs.set(b, (await time(options.runs, () => engine.explain({ images: imgs, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' }))) / b);
    }
    await engine.dispose();
    rmSync(dir, { recursive: true, force: true });
  }
  return options.batches.map((batch) => ({
    batch,
    forwardMsPerImage: forward.get(batch)!,
    gradcamMsPerImage: gradcam.get(batch)!,
    ratio: gradcam.get(batch)! / forward.get(batch)!,
    engineExplainMsPerImage: engineMs.get(batch)!,
  }));
}

export function formatOnnxTable(rows: OnnxBenchRow[], threads: number): string {
  const lines = [
    `ONNX Runtime ${ort.env.versions.common}, CPU EP, ${threads} intra-op threads, ${cpus()[0]?.model ?? 'unknown CPU'}`,
    '| batch | forward ms/img | Grad-CAM graph ms/img | ratio | OnnxEngine.explain ms/img |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.batch} | ${r.forwardMsPerImage.toFixed(1)} | ${r.gradcamMsPerImage.toFixed(1)} | ${r.ratio.toFixed(3)} | ${r.engineExplainMsPerImage.toFixed(1)} |`),
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
