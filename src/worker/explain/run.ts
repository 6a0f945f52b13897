/**
 * `gradcam-audit explain`: local images → overlay, heatmap and manifest per image. Images go
 * through the engine in batches; a bad image (unreadable, corrupt, too large) fails only itself and
 * is reported, and the command exits non-zero when any image failed. Configuration and model
 * errors fail the whole command, since no image could succeed.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { AuditError, describeError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { silentLogger } from '../../shared/logger.js';
import type { ImageManifest } from '../../shared/manifest.js';
import { PACKAGE_VERSION } from '../../shared/version.js';
import type { Engine, PreprocessedImage } from '../engine/engine.js';
import { createEngine } from '../engine/factory.js';
import type { CreateEngineOptions } from '../engine/factory.js';
import type { DecodedImage } from '../image/decode.js';
import { decodeImage } from '../image/decode.js';
import { preprocess } from '../image/preprocess.js';
import { renderHeatmap, renderOverlay } from '../image/render.js';
import { loadLabels } from '../model/labels.js';
import type { LabelResolution } from '../model/labels.js';
import type { ModelSpec } from '../model/spec.js';
import { assembleManifest } from './assemble.js';
import type { ExplainCommandOptions } from './options.js';
import { outputNamesFor } from './output-names.js';
import type { OutputNames } from './output-names.js';

export interface ExplainDeps {
  logger: Logger;
  /** Load a ModelSpec from `--weights` (path, s3:// URI or URL). */
  loadSpec: (source: string) => Promise<ModelSpec>;
  createEngine: (options: CreateEngineOptions) => Promise<Engine>;
  loadLabels: (numClasses: number, file: string | undefined) => Promise<LabelResolution>;
  /** One line per image result, for people. */
  report: (line: string) => void;
  now: () => Date;
}

export interface ExplainImageOutcome {
  input: string;
  status: 'ok' | 'failed';
  manifest?: ImageManifest;
  /** Output file paths (ok only). */
  files?: string[];
  error?: string;
}

export interface ExplainSummary {
  ok: number;
  failed: number;
  outcomes: ExplainImageOutcome[];
}

export async function defaultExplainDeps(logger: Logger): Promise<ExplainDeps> {
  return {
    logger,
    loadSpec: async (source) => {
      const { loadModelSpec } = await import('../model/source.js');
      if (!source.startsWith('s3://')) return loadModelSpec(source);
      // Only an s3:// source needs the storage layer (and the AWS SDK).
      const [{ S3ObjectStore }, { loadConfig }] = await Promise.all([import('../../shared/storage/s3-store.js'), import('../../shared/config.js')]);
      const store = S3ObjectStore.fromConfig(loadConfig().s3);
      return loadModelSpec(source, { getObject: async (bucket, key) => (await store.get(bucket, key)).body });
    },
    createEngine,
    loadLabels: (numClasses, file) => loadLabels({ numClasses, file }),
    report: (line) => process.stdout.write(`${line}\n`),
    now: () => new Date(),
  };
}

interface Prepared {
  input: string;
  names: OutputNames;
  decoded: DecodedImage;
  image: PreprocessedImage;
  size: number;
  timings: Record<string, number>;
}

export async function runExplain(options: ExplainCommandOptions, deps: ExplainDeps): Promise<ExplainSummary> {
  const logger = deps.logger ?? silentLogger();
  // The same file named twice is explained once.
  const inputs = [...new Map(options.images.map((p) => [path.resolve(p), p])).values()];
  const overlayExt = options.overlayFormat === 'jpeg' ? 'jpg' : options.overlayFormat;
  const names = outputNamesFor(inputs, overlayExt);
  await mkdir(options.out, { recursive: true });

  const spec = await deps.loadSpec(options.weights);
  const engine = await deps.createEngine({ spec, engine: options.engine, layer: options.layer, backend: options.backend, logger, onnx: options.onnx });
  const outcomes: ExplainImageOutcome[] = [];
  try {
    const labels = await deps.loadLabels(engine.info.numClasses, options.labels);
    if (labels.warning) logger.warn(labels.warning);
    logger.info({ engine: engine.info.engine, backend: engine.info.backend, device: engine.info.device, layer: engine.info.layer, images: inputs.length }, 'explaining');

    for (let start = 0; start < inputs.length; start += options.batchSize) {
      const batch: Prepared[] = [];
      for (let i = start; i < Math.min(start + options.batchSize, inputs.length); i++) {
        try {
          batch.push(await prepare(inputs[i], names[i], engine, options));
        } catch (err) {
          outcomes.push(fail(inputs[i], err, deps));
        }
      }
      if (batch.length === 0) continue;
      const t0 = performance.now();
      // A failure here is not about one image (bad --targets, broken model): fail the command.
      const results = await engine.explain({ images: batch.map((b) => b.image), targets: options.targets, topK: options.topK, method: options.method, score: options.score });
      const engineMs = (performance.now() - t0) / batch.length;
      for (const [j, item] of batch.entries()) {
        try {
          item.timings.engine = engineMs;
          outcomes.push(await writeOutputs(item, results[j], engine, labels, options, deps));
        } catch (err) {
          outcomes.push(fail(item.input, err, deps));
        }
      }
    }
  } finally {
    await engine.dispose();
  }
  const failed = outcomes.filter((o) => o.status === 'failed').length;
  return { ok: outcomes.length - failed, failed, outcomes };
}

async function prepare(input: string, names: OutputNames, engine: Engine, options: ExplainCommandOptions): Promise<Prepared> {
  const timings: Record<string, number> = {};
  let t = performance.now();
  const lap = (stage: string): void => {
    const now = performance.now();
    timings[stage] = now - t;
    t = now;
  };
  const info = await stat(input).catch((err: NodeJS.ErrnoException) => {
    throw new Error(err.code === 'ENOENT' ? `no such file: ${input}` : `cannot read ${input}: ${err.message}`, { cause: err });
  });
  if (!info.isFile()) throw new Error(`not a regular file: ${input}`);
  const bytes = await readFile(input);
  lap('read');
  const decoded = await decodeImage(bytes, {}, input);
  lap('decode');
  const image = preprocess(decoded, { width: engine.info.inputWidth, height: engine.info.inputHeight, resize: options.resize });
  lap('preprocess');
  return { input, names, decoded, image, size: bytes.length, timings };
}

async function writeOutputs(
  item: Prepared,
  result: Awaited<ReturnType<Engine['explain']>>[number],
  engine: Engine,
  labels: LabelResolution,
  options: ExplainCommandOptions,
  deps: ExplainDeps,
): Promise<ExplainImageOutcome> {
  let t = performance.now();
  // The overlay and heatmap show the first target (top-1 by default); the manifest has every target.
  const first = result.cams[0];
  const cam = { grid: first.grid, width: first.width, height: first.height };
  const [overlay, heatmap] = await Promise.all([
    renderOverlay(item.decoded, cam, { colormap: options.colormap, alpha: options.alpha, format: options.overlayFormat, maxSide: options.maxSide }),
    renderHeatmap(cam),
  ]);
  item.timings.render = performance.now() - t;
  t = performance.now();
  const manifest = assembleManifest({
    source: { uri: item.input, size: item.size, format: item.decoded.format, width: item.decoded.width, height: item.decoded.height },
    result,
    engine: engine.info,
    options,
    labels: labels.labels,
    weightsSource: options.weights,
    packageVersion: PACKAGE_VERSION,
    outputs: { overlay: item.names.overlay, heatmap: item.names.heatmap, manifest: item.names.manifest },
    timings: item.timings,
    now: deps.now(),
  });
  const files = [item.names.overlay, item.names.heatmap, item.names.manifest].map((n) => path.join(options.out, n));
  await writeFile(files[0], overlay.data);
  await writeFile(files[1], heatmap.data);
  manifest.timings.write = Math.round((performance.now() - t) * 100) / 100;
  await writeFile(files[2], `${JSON.stringify(manifest, null, 2)}\n`);

  const top = manifest.predictions[0];
  const what = top ? `${top.label ?? `class ${top.index}`} (${top.index}) p=${top.probability.toFixed(4)}` : 'no prediction';
  const flags = manifest.targets.filter((c) => c.degenerate).map((c) => ` [class ${c.classIndex} degenerate: ${c.degenerate}]`).join('');
  deps.report(`ok      ${item.input} -> ${path.join(options.out, item.names.stem)}.*  ${what}${flags}`);
  return { input: item.input, status: 'ok', manifest, files };
}

function fail(input: string, err: unknown, deps: ExplainDeps): ExplainImageOutcome {
  const error = err instanceof AuditError ? describeError(err) : (err as Error)?.message ?? String(err);
  deps.report(`FAILED  ${input}: ${error}`);
  deps.logger.debug({ input, err }, 'image failed');
  return { input, status: 'failed', error };
}
