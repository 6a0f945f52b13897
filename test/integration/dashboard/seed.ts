/**
 * Puts a run into the real Redis and S3 exactly as the producer and workers leave it: a run record
 * with its jobs, original images under the source prefix, overlay/heatmap/prediction objects under
 * the output prefix at `outputKeysFor` keys, and one `recordResult` per finished image. The
 * dashboard under test reads nothing else, so no worker (and no model) is needed.
 */
import sharp from 'sharp';
import type { AuditLine } from '../../../src/shared/audit/types.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { IMAGE_MANIFEST_SCHEMA, PREDICTION_UNITS, type ImageManifest, type RunManifestLine } from '../../../src/shared/manifest.js';
import { jobIdFor } from '../../../src/shared/queue/contract.js';
import type { RunStore } from '../../../src/shared/queue/run-store.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { outputKeysFor } from '../../../src/shared/storage/output-keys.js';

export const CLASSES = [
  { index: 207, wnid: 'n02099601', label: 'golden_retriever', color: { r: 214, g: 168, b: 72 } },
  { index: 281, wnid: 'n02123045', label: 'tabby', color: { r: 120, g: 110, b: 100 } },
  { index: 817, wnid: 'n04285008', label: 'sports_car', color: { r: 200, g: 30, b: 40 } },
  { index: 948, wnid: 'n07742313', label: 'Granny_Smith', color: { r: 110, g: 190, b: 60 } },
] as const;

export interface SeedImage {
  /** Name under the source prefix, e.g. `dogs/a.png`. */
  name: string;
  status: 'ok' | 'failed';
  /** Index into CLASSES for ok images. */
  cls?: number;
  probability?: number;
  degenerate?: boolean;
  error?: string;
}

export interface SeededRun {
  runId: string;
  /** The run record's epoch: part of its job ids. */
  epoch: string;
  sourcePrefix: string;
  outputPrefix: string;
  keys: string[];
}

export interface SeedTarget {
  runs: RunStore;
  store: ObjectStore;
  bucket: string;
}

/** A plain ok result line (no outputs stored): for tests of reading lines, not of showing images. */
export const okLine = (key: string): RunManifestLine => ({ key, status: 'ok', top1: { index: 1, label: 'class 1', probability: 0.9 }, degenerate: false });

/** Create the run and register all its images as enqueued; nothing finished yet. */
export async function createSeedRun(target: SeedTarget, runId: string, names: string[], sourcePrefix = `photos/${runId}/`): Promise<SeededRun> {
  const outputPrefix = `gradcam-audit/${runId}/`;
  const { record } = await target.runs.createRun({
    id: runId,
    source: `s3://${target.bucket}/${sourcePrefix}`,
    output: `s3://${target.bucket}/${outputPrefix}`,
    options: { ...DEFAULT_EXPLAIN_OPTIONS },
    model: 'vgg16',
  });
  const keys = names.map((n) => sourcePrefix + n);
  await target.runs.addJobs(runId, keys.map((key) => ({ key })));
  await target.runs.finishEnqueue(runId);
  return { runId, epoch: record.epoch, sourcePrefix, outputPrefix, keys };
}

/** A predicted class as the seeded objects show it. */
interface SeedClass {
  index: number;
  label: string;
  wnid?: string;
  color: { r: number; g: number; b: number };
}

/** Upload an image's original and outputs, then record its result (the worker's last step). */
export async function finishImage(target: SeedTarget, run: SeededRun, image: SeedImage, now = new Date()): Promise<RunManifestLine> {
  const key = run.sourcePrefix + image.name;
  if (image.status === 'failed') {
    const original = await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 90, g: 90, b: 90 } } }).png().toBuffer();
    await target.store.put(target.bucket, key, original, { contentType: 'image/png' });
    const line: RunManifestLine = { key, status: 'failed', error: image.error ?? 'INVALID_IMAGE: truncated JPEG data' };
    await target.runs.recordResult(run.runId, line, now);
    return line;
  }
  const cls = CLASSES[image.cls ?? 0];
  const probability = image.probability ?? 0.9;
  const outputs = await putImageObjects(target, run, key, cls, probability, Boolean(image.degenerate), now);
  const line: RunManifestLine = {
    key,
    status: 'ok',
    top1: { index: cls.index, label: cls.label, probability },
    outputs: { overlay: outputs.overlayKey, heatmap: outputs.heatmapKey, prediction: outputs.predictionKey },
    degenerate: Boolean(image.degenerate),
  };
  await target.runs.recordResult(run.runId, line, now);
  return line;
}

/** The original, overlay, heatmap and prediction JSON of one ok image, at the worker's keys. */
async function putImageObjects(target: SeedTarget, run: SeededRun, key: string, cls: SeedClass, probability: number, degenerate: boolean, now: Date) {
  const original = await sharp({ create: { width: 96, height: 64, channels: 3, background: cls.color } }).png().toBuffer();
  await target.store.put(target.bucket, key, original, { contentType: 'image/png' });
  const out = outputKeysFor(run.outputPrefix, key, 'jpeg');
  // A visible "heat" blob in the overlay, so screenshots look like real Grad-CAM output.
  const blob = Buffer.from(
    `<svg xmlns="http://www.w3.org/2000/svg" width="96" height="64"><defs><radialGradient id="g"><stop offset="0" stop-color="#fde725" stop-opacity="0.9"/><stop offset="0.5" stop-color="#21918c" stop-opacity="0.6"/><stop offset="1" stop-color="#440154" stop-opacity="0.35"/></radialGradient></defs><rect width="96" height="64" fill="url(#g)"/></svg>`,
  );
  const overlay = await sharp(original).composite([{ input: blob }]).jpeg({ quality: 85 }).toBuffer();
  const heatmap = await sharp(blob).png().toBuffer();
  const grid = Array.from({ length: 14 * 14 }, (_, i) => {
    const y = Math.floor(i / 14) - 6.5;
    const x = (i % 14) - 6.5;
    return degenerate ? 0 : Math.round(Math.exp(-(x * x + y * y) / 18) * 1e4) / 1e4;
  });
  const others = CLASSES.filter((c) => c.index !== cls.index).slice(0, 3);
  const rest = (1 - probability) / 4;
  const manifest: ImageManifest = {
    schema: IMAGE_MANIFEST_SCHEMA,
    source: { uri: `s3://${target.bucket}/${key}`, bucket: target.bucket, key, etag: 'etag', size: original.length, format: 'png', width: 96, height: 64 },
    provenance: {
      modelName: 'vgg16',
      weightsSource: 'test',
      weightsHash: 'sha256:0123456789abcdef',
      layer: 'block5_conv3',
      preprocess: 'caffe',
      centerCrop: false,
      labels: 'imagenet',
      method: 'gradcam',
      score: 'prob',
      resize: 'nearest',
      engine: 'tfjs',
      backend: 'wasm',
      device: 'cpu',
      packageVersion: '0.1.0',
    },
    predictions: [
      { index: cls.index, ...(cls.wnid ? { wnid: cls.wnid } : {}), label: cls.label, probability },
      ...others.map((c, i) => ({ index: c.index, wnid: c.wnid, label: c.label, probability: rest * (1.5 - i * 0.25) })),
      { index: 1, wnid: 'n01443537', label: 'goldfish', probability: rest / 4 },
    ],
    targets: [
      {
        classIndex: cls.index,
        ...(cls.wnid ? { wnid: cls.wnid } : {}),
        label: cls.label,
        score: probability,
        gridHeight: 14,
        gridWidth: 14,
        grid,
        rawMax: degenerate ? 0 : 0.0123,
        rawMean: degenerate ? 0 : 0.0031,
        degenerate: degenerate ? 'all-zero map: saturated softmax; try --score logit' : null,
      },
    ],
    outputs: { overlay: `s3://${target.bucket}/${out.overlay}`, heatmap: `s3://${target.bucket}/${out.heatmap}`, prediction: `s3://${target.bucket}/${out.prediction}` },
    metrics: { top1Prob: probability },
    timings: { download: 3, decode: 2, infer: 80, render: 5, upload: 4 },
    units: PREDICTION_UNITS,
    run: { runId: run.runId, workerId: 'test-worker', jobId: jobIdFor(run.runId, run.epoch, key) },
    createdAt: now.toISOString(),
  };
  await target.store.put(target.bucket, out.overlay, overlay, { contentType: 'image/jpeg' });
  await target.store.put(target.bucket, out.heatmap, heatmap, { contentType: 'image/png' });
  await target.store.put(target.bucket, out.prediction, JSON.stringify(manifest), { contentType: 'application/json' });
  return { overlayKey: out.overlay, heatmapKey: out.heatmap, predictionKey: out.prediction, uri: (k: string) => `s3://${target.bucket}/${k}` };
}

/**
 * A finished, audited run: each line (with its metrics and truth, e.g. from the audit tests'
 * `sceneRun`) gets its image and outputs under the run's prefixes (two runs given the same
 * `sourcePrefix` audit the same keys, as `compare` needs) and is recorded as a worker would, then `finalize` (the real finalizer with the analysis) writes manifest.jsonl,
 * summary.json, audit.json, metrics.parquet and report.html.
 */
export async function seedAuditRun(target: SeedTarget, runId: string, lines: AuditLine[], finalize: (runId: string) => Promise<unknown>, sourcePrefix?: string): Promise<SeededRun> {
  const run = await createSeedRun(target, runId, lines.map((l) => l.key), sourcePrefix);
  const palette = [CLASSES[0].color, CLASSES[1].color, CLASSES[2].color, CLASSES[3].color, { r: 60, g: 90, b: 200 }];
  for (const l of lines) {
    const key = run.sourcePrefix + l.key;
    if (l.status !== 'ok' || l.top1 === undefined) {
      await target.runs.recordResult(runId, { ...l, key } as RunManifestLine);
      continue;
    }
    const cls = { index: l.top1.index, label: l.top1.label ?? `class ${l.top1.index}`, color: palette[l.top1.index % palette.length] };
    const o = await putImageObjects(target, run, key, cls, l.top1.probability, l.degenerate === true, new Date());
    const line = { ...l, key, outputs: { overlay: o.uri(o.overlayKey), heatmap: o.uri(o.heatmapKey), prediction: o.uri(o.predictionKey) } };
    await target.runs.recordResult(runId, line as RunManifestLine);
  }
  await finalize(runId);
  return run;
}

export async function seedRun(target: SeedTarget, runId: string, images: SeedImage[]): Promise<SeededRun> {
  const run = await createSeedRun(target, runId, images.map((i) => i.name));
  for (const image of images) await finishImage(target, run, image);
  return run;
}

/** A mixed run used by several tests: 3 classes, two failures, one degenerate map. */
export function mixedImages(): SeedImage[] {
  return [
    { name: 'dogs/rex.png', status: 'ok', cls: 0, probability: 0.93 },
    { name: 'dogs/bella.png', status: 'ok', cls: 0, probability: 0.55 },
    { name: 'dogs/max with space.png', status: 'ok', cls: 0, probability: 0.31 },
    { name: 'cats/tom.png', status: 'ok', cls: 1, probability: 0.88 },
    { name: 'cats/kitty+1%.png', status: 'ok', cls: 1, probability: 0.999, degenerate: true },
    { name: 'cars/zoom.png', status: 'ok', cls: 2, probability: 0.71 },
    { name: 'bad/truncated.jpg', status: 'failed', error: 'INVALID_IMAGE: truncated JPEG data' },
    { name: 'bad/flaky.png', status: 'failed', error: 'TRANSIENT: S3 request failed with HTTP 503' },
  ];
}

/**
 * Finish the images of a run one by one every `intervalMs`, as a worker would: used by the live
 * progress tests. Resolves when every image is recorded or `stop()` was called.
 */
export function simulateProgress(target: SeedTarget, run: SeededRun, images: SeedImage[], intervalMs: number): { done: Promise<void>; stop(): void } {
  let stopped = false;
  const done = (async () => {
    for (const image of images) {
      if (stopped) return;
      await finishImage(target, run, image);
      await new Promise((r) => setTimeout(r, intervalMs));
    }
  })();
  return {
    done,
    stop() {
      stopped = true;
    },
  };
}
