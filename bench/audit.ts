/**
 * Audit benchmark (not a test), two parts measured in one run:
 *
 * 1. Per-image metric cost next to the engine's: the committed demo model explains batches of
 *    64x64 scenes on the TF.js wasm backend; the metrics of each result are then computed as the
 *    worker does (`imageMetricsOf`, with a truth box), for the scenes' own size and for the same maps
 *    on larger images (224², 640x480, a 12 MP photo, whose analysis raster is capped at 256 px).
 *    Both are timed in process CPU time (the wasm backend runs on one thread, so CPU time is the
 *    work done even when other processes compete for the cores).
 * 2. The finalizer's analysis memory: manifest lines streamed through `RunAnalysis` (accumulator +
 *    Parquet encoding; the files go to a sink that discards them) for 1k, 10k and 100k images over
 *    200 classes, with the retained heap sampled after a forced GC.
 *
 *   npm run bench:audit -- [--batches 8] [--runs 100000]
 */
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { LabelMatcher } from '../src/shared/audit/label-matcher.js';
import { RunAnalysis, type AnalysisSink } from '../src/shared/audit/run-analysis.js';
import type { AuditLine } from '../src/shared/audit/types.js';
import { imageMetricsOf, lineTruthOf, resolveTruth } from '../src/worker/audit/image-audit.js';
import type { EngineImageResult } from '../src/worker/engine/engine.js';
import { createEngine } from '../src/worker/engine/factory.js';
import { preprocess } from '../src/worker/image/preprocess.js';
import { loadModelSpec } from '../src/worker/model/source.js';
import { useBackend } from '../scripts/demo-model/backend.js';
import { DEMO_CLASSES, generateImage } from '../scripts/demo-model/synth.js';
import { cpuMs, flag } from './measure.js';

async function metricCost(batches: number): Promise<void> {
  await useBackend('wasm');
  const spec = await loadModelSpec(path.resolve('models/demo/model.json'));
  const engine = await createEngine({ spec, layer: 'last_conv', backend: 'wasm' });
  const matcher = new LabelMatcher(DEMO_CLASSES.map((label) => ({ label })), DEMO_CLASSES.length);
  const batchSize = 16;
  const sizes: [string, number, number][] = [
    ['64x64 (scene)', 64, 64],
    ['224x224', 224, 224],
    ['640x480', 640, 480],
    ['4032x3024', 4032, 3024],
  ];
  let engineCpu = 0;
  let engineWall = 0;
  const metricCpu = new Map<string, number>(sizes.map(([n]) => [n, 0]));
  let images = 0;
  // Warm-up batch (kernel compilation) outside the measurement.
  const warm = Array.from({ length: batchSize }, (_, i) => generateImage(99, i));
  const warmResults = await engine.explain({ images: warm.map((im) => preprocess({ data: im.rgb, width: 64, height: 64 }, { width: 64, height: 64 })), targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' });
  // ... and the metric code's JIT warm-up too: a worker computes metrics for millions of images.
  for (let r = 0; r < 20; r++) for (const [, w, h] of sizes) for (const result of warmResults) imageMetricsOf({ result, image: { width: w, height: h }, truth: { label: 'x', index: 0, boxes: [[1, 1, w / 2, h / 2]] } });
  for (let b = 0; b < batches; b++) {
    const scenes = Array.from({ length: batchSize }, (_, i) => generateImage(7, b * batchSize + i));
    const inputs = scenes.map((im) => preprocess({ data: im.rgb, width: 64, height: 64 }, { width: 64, height: 64 }));
    const c0 = cpuMs();
    const w0 = performance.now();
    const results: EngineImageResult[] = await engine.explain({ images: inputs, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' });
    engineCpu += cpuMs() - c0;
    engineWall += performance.now() - w0;
    for (const [name, w, h] of sizes) {
      const m0 = cpuMs();
      results.forEach((result, i) => {
        const s = scenes[i];
        const sx = w / 64;
        const sy = h / 64;
        const truth = resolveTruth({ label: s.className, boxes: [[s.box.x0 * sx, s.box.y0 * sy, s.box.x1 * sx, s.box.y1 * sy]] }, matcher);
        imageMetricsOf({ result, image: { width: w, height: h }, truth });
        if (truth) lineTruthOf(truth);
      });
      metricCpu.set(name, (metricCpu.get(name) ?? 0) + cpuMs() - m0);
    }
    images += batchSize;
  }
  await engine.dispose();
  const perEngine = engineCpu / images;
  console.log(`demo model, TF.js wasm, batch ${batchSize}, ${images} images: engine ${perEngine.toFixed(2)} ms CPU/img (${(engineWall / images).toFixed(2)} ms wall/img)`);
  console.log('| image size | metrics, ms CPU/img | metrics / engine time |');
  console.log('|---|---|---|');
  for (const [name] of sizes) {
    const per = (metricCpu.get(name) ?? 0) / images;
    console.log(`| ${name} | ${per.toFixed(3)} | ${((per / perEngine) * 100).toFixed(1)}% |`);
  }
}

/** A small pool of realistic lines (real metric records), re-keyed and re-classed per image. */
function linePool(): AuditLine[] {
  const grid = new Float32Array(256);
  const pool: AuditLine[] = [];
  for (let k = 0; k < 64; k++) {
    grid.fill(0);
    for (let i = 0; i < 256; i++) grid[i] = Math.exp(-(((i % 16) - (k % 16)) ** 2 + (Math.floor(i / 16) - ((k * 7) % 16)) ** 2) / 8);
    const probs = new Float32Array(200).fill(0.1 / 199);
    probs[k % 200] = 0.9;
    const result: EngineImageResult = { probabilities: probs, logits: null, cams: [{ classIndex: k % 200, score: 0.9, grid: grid.slice(), height: 16, width: 16, rawMax: 1, rawMean: 0.1, degenerate: null }] };
    const truth = { label: String(k % 200), index: k % 200, boxes: [[10, 10, 40, 40]] as [number, number, number, number][] };
    pool.push({ key: '', status: 'ok', top1: { index: k % 200, label: `class ${k % 200}`, probability: 0.9 }, degenerate: false, truth: lineTruthOf(truth), metrics: imageMetricsOf({ result, image: { width: 640, height: 480 }, truth }) });
  }
  return pool;
}

async function analysisMemory(sizes: number[]): Promise<void> {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  const pool = linePool();
  const discard: AnalysisSink = {
    location: 'discarded',
    put: (_name, body) => pipeline(body, new Writable({ write: (_c, _e, cb) => cb() })),
  };
  console.log('\n| results | retained heap, 2nd quarter | retained heap, last quarter | peak retained | lines/s |');
  console.log('|---|---|---|---|---|');
  for (const n of sizes) {
    gc();
    const base = process.memoryUsage().heapUsed;
    const analysis = new RunAnalysis({ runId: `bench-${n}`, sink: discard, rowGroupSize: 10_000 });
    const samples: number[] = [];
    const every = Math.max(1, Math.floor(n / 40));
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      const p = pool[i % pool.length];
      const cls = (i * 7919) % 200;
      await analysis.add({ ...p, key: `images/${String(i).padStart(9, '0')}.jpg`, top1: { index: cls, label: `class ${cls}`, probability: 0.9 }, truth: { label: String((i * 31) % 200), index: (i * 31) % 200, boxes: 1 } });
      if (i % every === every - 1) {
        gc();
        samples.push(process.memoryUsage().heapUsed - base);
      }
    }
    await analysis.finish();
    const secs = (performance.now() - t0) / 1000;
    const q = Math.floor(samples.length / 4);
    const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / Math.max(1, xs.length);
    const mib = (x: number) => `${(x / 2 ** 20).toFixed(1)} MiB`;
    console.log(`| ${n.toLocaleString('en')} | ${mib(mean(samples.slice(q, 2 * q)))} | ${mib(mean(samples.slice(3 * q)))} | ${mib(Math.max(...samples))} | ${Math.round(n / secs).toLocaleString('en')} |`);
  }
}

const batches = flag('--batches', 8);
const largest = flag('--runs', 100_000);
await metricCost(batches);
await analysisMemory([1000, 10_000, largest].filter((n, i, a) => a.indexOf(n) === i));
