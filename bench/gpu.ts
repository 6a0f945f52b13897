/**
 * GPU benchmark (not a test): the first command to run on a GPU node. It answers "how close to the
 * limit": the ONNX engine's img/s at each batch size next to ONNX Runtime's own forward pass of the
 * same model on the same provider (the Grad-CAM overhead), the GPU memory each batch size takes, and
 * the CPU work around each image (decode, preprocess, render, upload) with the cores it takes to keep
 * the GPU fed at the measured rate.
 *
 *   npm run bench:gpu -- [--weights SRC | --model vgg16|small] [--layer NAME] [--batches 1,8,32,64] [--runs 5]
 *                        [--images 32] [--image-size 1024x768] [--providers auto|cuda|tensorrt]
 *                        [--device-id 0] [--precision fp32,fp16] [--upload s3://bucket/prefix/] [--allow-cpu] [--record]
 *
 * Without `--weights` the model is VGG16 with seeded random weights (speed does not depend on the
 * weights); `--model small` is a tiny VGG-shaped net for trying the command. Engine timings alternate explain and forward within each round so both see the same
 * machine. Stage times are per image, on this process's main thread and libuv pool, as the worker
 * runs them. On a machine where no GPU provider starts it exits 2 with each provider's reason;
 * `--allow-cpu` runs it on the CPU anyway (to try the command, not to measure a GPU).
 */
import { appendFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { loadConfig } from '../src/shared/config.js';
import { ConfigError, toError } from '../src/shared/errors.js';
import { S3ObjectStore } from '../src/shared/storage/s3-store.js';
import { parseS3Prefix } from '../src/shared/storage/uri.js';
import { gpuMemoryMiB } from '../src/worker/engine/batch-size.js';
import type { Engine, PreprocessedImage } from '../src/worker/engine/engine.js';
import { createOnnxEngine } from '../src/worker/engine/onnx/engine.js';
import { FP16_PARITY, parityDiff, type ParityDiff } from '../src/worker/doctor/engine-checks.js';
import { PRECISIONS, parseExecutionProviders, type OnnxPrecision } from '../src/worker/engine/onnx/options.js';
import { defaultProviderEnvironment, selectProviders } from '../src/worker/engine/onnx/providers.js';
import { decodeImage } from '../src/worker/image/decode.js';
import { preprocess } from '../src/worker/image/preprocess.js';
import { heatmapSize, renderHeatmap, renderOverlay } from '../src/worker/image/render.js';
import { configuredModelLoader } from '../src/worker/model/configured-loader.js';
import type { ModelInput } from '../src/worker/model/graph/from-sequential.js';
import { mulberry32 } from '../src/worker/model/random-weights.js';
import { randomVgg16Spec, vggShapedSpec } from '../src/worker/model/vgg-shaped.js';

/** Benchmark settings; defaults in one place. */
export interface GpuBenchOptions {
  weights?: string;
  /** Seeded model when no weights are given. */
  model: 'vgg16' | 'small';
  layer?: string;
  batches: number[];
  /** Timed rounds per batch size, after one warm-up round. */
  runs: number;
  /** Source images for the stage timings (decode, preprocess, render, upload). */
  images: number;
  imageWidth: number;
  imageHeight: number;
  providers: string;
  deviceId: number;
  /** Trunk precisions to measure, side by side (`--precision fp32,fp16`); the first serves the stage timings. */
  precisions: OnnxPrecision[];
  upload?: string;
  allowCpu: boolean;
  record: boolean;
}

export const GPU_BENCH_DEFAULTS: Readonly<GpuBenchOptions> = Object.freeze({
  model: 'vgg16' as const,
  batches: [1, 8, 32, 64],
  runs: 5,
  images: 32,
  imageWidth: 1024,
  imageHeight: 768,
  providers: 'auto',
  deviceId: 0,
  precisions: ['fp32'] as OnnxPrecision[],
  allowCpu: false,
  record: false,
});

export function parseGpuBenchArgs(argv: string[]): GpuBenchOptions {
  const o: GpuBenchOptions = { ...GPU_BENCH_DEFAULTS, batches: [...GPU_BENCH_DEFAULTS.batches] };
  const positiveInts = (flag: string, v: string): number[] => {
    const out = v.split(',').map((s) => Number(s.trim()));
    if (out.length === 0 || out.some((n) => !Number.isInteger(n) || n < 1 || n > 4096)) throw new ConfigError(flag, `expected positive integers separated by commas, got "${v}"`);
    return out;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new ConfigError(flag, 'needs a value');
      return v;
    };
    switch (flag) {
      case '--weights': o.weights = value(); break;
      case '--model': {
        const m = value();
        if (m !== 'vgg16' && m !== 'small') throw new ConfigError(flag, `expected vgg16 or small, got "${m}"`);
        o.model = m;
        break;
      }
      case '--layer': o.layer = value(); break;
      case '--batches': o.batches = positiveInts(flag, value()); break;
      case '--runs': o.runs = positiveInts(flag, value())[0]!; break;
      case '--images': o.images = positiveInts(flag, value())[0]!; break;
      case '--image-size': {
        const m = /^(\d+)x(\d+)$/.exec(value());
        if (!m) throw new ConfigError(flag, 'expected WIDTHxHEIGHT, e.g. 1024x768');
        [o.imageWidth, o.imageHeight] = [Number(m[1]), Number(m[2])];
        break;
      }
      case '--providers': o.providers = value(); break;
      case '--device-id': {
        const v = value();
        if (!/^\d+$/.test(v)) throw new ConfigError(flag, `expected a device ordinal (0, 1, ...), got "${v}"`);
        o.deviceId = Number(v);
        break;
      }
      case '--precision': {
        const list = value().split(',').map((p) => p.trim());
        if (list.length === 0 || list.some((p) => !(PRECISIONS as readonly string[]).includes(p))) throw new ConfigError(flag, `expected ${PRECISIONS.join(' and/or ')} separated by commas, got "${list.join(',')}"`);
        o.precisions = [...new Set(list)] as OnnxPrecision[];
        break;
      }
      case '--upload': o.upload = value(); break;
      case '--allow-cpu': o.allowCpu = true; break;
      case '--record': o.record = true; break;
      default: throw new ConfigError(flag, 'unknown flag; see the comment at the top of bench/gpu.ts');
    }
  }
  return o;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Synthetic photos: smooth gradients plus noise, so JPEG decode costs what a photo costs. */
async function sourceImages(n: number, width: number, height: number): Promise<Buffer[]> {
  const rand = mulberry32(7);
  return Promise.all(
    Array.from({ length: n }, async (_, k) => {
      const px = Buffer.alloc(width * height * 3);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const i = (y * width + x) * 3;
          px[i] = ((x * 255) / width + k * 13 + rand() * 40) & 255;
          px[i + 1] = ((y * 255) / height + rand() * 40) & 255;
          px[i + 2] = ((x + y) * 0.2 + rand() * 40) & 255;
        }
      }
      return sharp(px, { raw: { width, height, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    }),
  );
}

export interface EngineRow {
  precision: OnnxPrecision;
  batch: number;
  explainImgPerSec: number;
  forwardImgPerSec: number;
  /** explain / forward, wall time per batch. */
  ratio: number;
  gpuMemoryMiB: number | null;
}

export interface StageRow {
  stage: 'decode' | 'preprocess' | 'engine' | 'render' | 'upload';
  msPerImage: number | null;
}

async function engineRows(engine: Engine, precision: OnnxPrecision, images: PreprocessedImage[], o: GpuBenchOptions): Promise<EngineRow[]> {
  const rows: EngineRow[] = [];
  for (const b of o.batches) {
    const batch = Array.from({ length: b }, (_, i) => images[i % images.length]!);
    const explain = () => engine.explain({ images: batch, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' });
    const forward = () => engine.predict(batch);
    await explain();
    await forward();
    const e: number[] = [];
    const f: number[] = [];
    for (let r = 0; r < o.runs; r++) {
      let t = performance.now();
      await explain();
      e.push(performance.now() - t);
      t = performance.now();
      await forward();
      f.push(performance.now() - t);
    }
    const [em, fm] = [median(e), median(f)];
    const mem = await gpuMemoryMiB(o.deviceId);
    rows.push({ precision, batch: b, explainImgPerSec: (b * 1000) / em, forwardImgPerSec: (b * 1000) / fm, ratio: em / fm, gpuMemoryMiB: mem?.used ?? null });
    process.stderr.write(`${precision} batch ${b}: ${((b * 1000) / em).toFixed(1)} img/s explain, ${((b * 1000) / fm).toFixed(1)} img/s forward\n`);
  }
  return rows;
}

export interface GpuBenchResult {
  engine: EngineRow[];
  stages: StageRow[];
  provider: string;
  device: string;
  coresToFeed: number;
  /** With fp32 and fp16 both measured: fp16's results against fp32's on the same images. */
  parity: (ParityDiff & { images: number }) | null;
}

export async function runGpuBench(o: GpuBenchOptions, log: (line: string) => void): Promise<GpuBenchResult | { noGpu: string }> {
  const requested = parseExecutionProviders(o.providers);
  const selection = await selectProviders(requested, defaultProviderEnvironment(), o.deviceId);
  const onGpu = selection.providers[0] !== 'cpu';
  if (!onGpu && !o.allowCpu) {
    const reasons = selection.verdicts.filter((v) => v.provider !== 'cpu').map((v) => `  ${v.provider}: ${v.reason}`);
    return {
      noGpu: [
        `bench:gpu: no GPU provider of ONNX Runtime starts on this machine${selection.gpus.length > 0 ? ` (the driver reports ${selection.gpus.join(', ')})` : ' (no NVIDIA GPU reported by the driver)'}:`,
        ...reasons,
        'Run it on a GPU node (the `gpu` image in deploy/, or a checkout there with onnxruntime-node\'s CUDA provider installed),',
        'or pass --allow-cpu to try the command on the CPU (that measures the CPU, not a GPU).',
      ].join('\n'),
    };
  }
  const model: ModelInput = o.weights
    ? await configuredModelLoader(loadConfig().s3)(o.weights)
    : o.model === 'small'
      ? vggShapedSpec({ seed: 1, inputShape: [64, 64, 3] })
      : randomVgg16Spec({ seed: 1, inputStd: 64 });
  const start = (precision: OnnxPrecision): Promise<Engine> =>
    createOnnxEngine({
      spec: model,
      layer: o.layer,
      runtime: { executionProviders: selection.providers, deviceId: o.deviceId, cacheDir: null, checkPlacement: onGpu, precision },
    });
  const engine = await start(o.precisions[0]!);
  const info = engine.info;
  log(`model ${info.modelName} (${info.inputWidth}x${info.inputHeight}, layer ${info.layer}) on ${info.device} [${info.backend}]`);
  try {
    // Stage times per image, as the worker runs them, on the configured source size.
    const sources = await sourceImages(o.images, o.imageWidth, o.imageHeight);
    const times = { decode: [] as number[], preprocess: [] as number[], render: [] as number[], upload: [] as number[] };
    const decoded = [];
    const preprocessed: PreprocessedImage[] = [];
    for (const bytes of sources) {
      let t = performance.now();
      const d = await decodeImage(bytes);
      times.decode.push(performance.now() - t);
      t = performance.now();
      preprocessed.push(preprocess(d, { width: info.inputWidth, height: info.inputHeight }));
      times.preprocess.push(performance.now() - t);
      decoded.push(d);
    }
    const sample = { images: preprocessed.slice(0, Math.min(8, preprocessed.length)), targets: { kind: 'top1' as const }, topK: 5, method: 'gradcam' as const, score: 'prob' as const };
    const engine1 = await engineRows(engine, o.precisions[0]!, preprocessed, o);
    const results = await engine.explain(sample);
    const byPrecision = new Map([[o.precisions[0]!, results]]);
    // Further precisions one at a time, each engine released before the next loads.
    for (const precision of o.precisions.slice(1)) {
      const other = await start(precision);
      try {
        log(`${precision}: ${other.info.backend}`);
        engine1.push(...(await engineRows(other, precision, preprocessed, o)));
        byPrecision.set(precision, await other.explain(sample));
      } finally {
        await other.dispose();
      }
    }
    const fp32 = byPrecision.get('fp32');
    const fp16 = byPrecision.get('fp16');
    const parity = fp32 && fp16 ? { ...parityDiff(fp16, fp32), images: sample.images.length } : null;
    const store = o.upload ? S3ObjectStore.fromConfig(loadConfig().s3) : null;
    const target = o.upload ? parseS3Prefix(o.upload, '--upload') : null;
    for (const [i, d] of decoded.entries()) {
      const cam = results[i % results.length]!.cams[0]!;
      let t = performance.now();
      const [overlay, heatmap] = await Promise.all([
        renderOverlay(d, cam),
        renderHeatmap(cam, { size: heatmapSize(d.width, d.height, Math.max(info.inputWidth, info.inputHeight)) }),
      ]);
      times.render.push(performance.now() - t);
      if (store && target) {
        t = performance.now();
        await Promise.all([
          store.put(target.bucket, posix.join(target.key, `bench-gpu/${i}.jpg`), overlay.data, { contentType: 'image/jpeg' }),
          store.put(target.bucket, posix.join(target.key, `bench-gpu/${i}.png`), heatmap.data, { contentType: 'image/png' }),
        ]);
        times.upload.push(performance.now() - t);
      }
    }
    store?.destroy();
    const best = engine1.filter((r) => r.precision === o.precisions[0]).reduce((a, r) => (r.explainImgPerSec > a.explainImgPerSec ? r : a));
    const stages: StageRow[] = [
      { stage: 'decode', msPerImage: median(times.decode) },
      { stage: 'preprocess', msPerImage: median(times.preprocess) },
      { stage: 'engine', msPerImage: 1000 / best.explainImgPerSec },
      { stage: 'render', msPerImage: median(times.render) },
      { stage: 'upload', msPerImage: times.upload.length > 0 ? median(times.upload) : null },
    ];
    // Decode, preprocess and render are CPU work; uploads mostly wait on the network.
    const cpuMs = median(times.decode) + median(times.preprocess) + median(times.render);
    const coresToFeed = (best.explainImgPerSec * cpuMs) / 1000;
    return { engine: engine1, stages, provider: selection.providers[0]!, device: info.device, coresToFeed, parity };
  } finally {
    await engine.dispose();
  }
}

export function formatGpuBench(r: GpuBenchResult, o: GpuBenchOptions): string {
  const total = r.stages.reduce((s, x) => s + (x.msPerImage ?? 0), 0);
  return [
    `${r.device} (${r.provider}), ${availableParallelism()} CPU cores; ${o.images} source images ${o.imageWidth}x${o.imageHeight} JPEG`,
    '',
    '| precision | batch | Grad-CAM img/s | forward img/s | ratio (Grad-CAM / forward time) | GPU memory MiB |',
    '|---|---:|---:|---:|---:|---:|',
    ...r.engine.map((e) => `| ${e.precision} | ${e.batch} | ${e.explainImgPerSec.toFixed(1)} | ${e.forwardImgPerSec.toFixed(1)} | ${e.ratio.toFixed(3)} | ${e.gpuMemoryMiB ?? 'n/a'} |`),
    '',
    '| stage | ms/img | share |',
    '|---|---:|---:|',
    ...r.stages.map((s) => `| ${s.stage} | ${s.msPerImage === null ? 'not measured (--upload s3://...)' : s.msPerImage.toFixed(2)} | ${s.msPerImage === null ? '' : `${((100 * s.msPerImage) / total).toFixed(0)}%`} |`),
    '',
    `CPU cores to feed the engine at its best rate (decode + preprocess + render): ${r.coresToFeed.toFixed(1)}`,
    ...(r.parity
      ? [
          '',
          `fp16 vs fp32 on ${r.parity.images} images (Grad-CAM, top-1): max |Δp| ${r.parity.probability.toExponential(2)} (tolerance ${FP16_PARITY.probability}), ` +
            `max |ΔCAM| ${r.parity.cam.toExponential(2)} (tolerance ${FP16_PARITY.cam}), top-1 mismatches ${r.parity.top1Mismatches}`,
        ]
      : []),
  ].join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  try {
    const o = parseGpuBenchArgs(process.argv.slice(2));
    const r = await runGpuBench(o, (line) => process.stderr.write(`${line}\n`));
    if ('noGpu' in r) {
      process.stderr.write(`${r.noGpu}\n`);
      process.exit(2);
    }
    const table = formatGpuBench(r, o);
    process.stdout.write(`${table}\n`);
    if (o.record) {
      const cmd = `npm run bench:gpu -- ${process.argv.slice(2).join(' ')}`.trim();
      appendFileSync(join(fileURLToPath(new URL('..', import.meta.url)), 'docs', 'benchmarks.md'), `\n### bench:gpu (${new Date().toISOString().slice(0, 10)})\n\n\`${cmd}\`\n\n${table}\n`);
    }
    process.exit(0);
  } catch (err) {
    const e = toError(err);
    process.stderr.write(`bench:gpu: ${e instanceof ConfigError ? e.message : (e.stack ?? e.message)}\n`);
    process.exit(2);
  }
}
