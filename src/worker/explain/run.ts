/**
 * `gradcam-audit explain`: local images → the run's artifacts per image (overlay, heatmap,
 * prediction document), through the same per-image core as the workers (worker/core). Images go
 * through the engine in batches (the workers' dynamic batcher); a bad image (unreadable, corrupt,
 * too large) fails only itself and is reported, and the command exits non-zero when any image
 * failed. Configuration and model errors fail the whole command, since no image could succeed.
 */
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { mapArtifactPaths } from '../../shared/artifacts.js';
import { LabelMatcher } from '../../shared/audit/label-matcher.js';
import { AuditError, describeError, InvalidInputError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import { silentLogger } from '../../shared/logger.js';
import { failedLineOf, manifestLineOf, type ImageManifest, type RunManifestLine } from '../../shared/manifest.js';
import type { ModelOptions } from '../../shared/model-options.js';
import type { ModelSetup } from '../../shared/model-setup.js';
import { describePreprocessing } from '../../shared/preprocessing.js';
import { loadHintsOf, modelProvenanceOf, resolveConfiguredModel } from '../model/model-card.js';
import { explainImage, engineRequestOf, writeArtifacts, type ImageCoreDeps } from '../core/image-core.js';
import type { Engine, EngineImageResult } from '../engine/engine.js';
import { createEngine } from '../engine/factory.js';
import type { CreateEngineOptions } from '../engine/factory.js';
import { loadLabels } from '../model/labels.js';
import type { LabelResolution } from '../model/labels.js';
import { batchTimingsOf, engineBatchRunner, type BatchItem } from '../pipeline/image-job.js';
import { DynamicBatcher } from '../pipeline/batcher.js';
import { batchKeyFor } from '../pipeline/job-keys.js';
import { loadConfig } from '../../shared/config.js';
import { PixelBudget } from '../core/pixel-budget.js';
import { configuredModelLoader, type ModelLoader } from '../model/configured-loader.js';
import { expandInputs } from './inputs.js';
import type { ExplainCommandOptions } from './options.js';
import { outputNamesFor } from './output-names.js';
import type { OutputNames } from './output-names.js';

export interface ExplainDeps {
  logger: Logger;
  /** Load the model from `--weights` (path, s3:// URI or URL). */
  loadSpec: ModelLoader;
  createEngine: (options: CreateEngineOptions) => Promise<Engine>;
  /** The model's card, flags and defaults resolved (src/shared/model-setup.ts). */
  resolveSetup: (weights: string, flags: ModelOptions) => Promise<ModelSetup>;
  loadLabels: (numClasses: number, given: ModelSetup['labels']) => Promise<LabelResolution>;
  /** One line per image result, for people. */
  report: (line: string) => void;
  now: () => Date;
  /** Decoded pixels the images in flight may hold together (config `GRADCAM_AUDIT_PIXEL_BUDGET_MP`). */
  pixelBudget: number;
}

export interface ExplainImageOutcome {
  input: string;
  status: 'ok' | 'failed';
  /** The prediction document (ok only). */
  document?: ImageManifest;
  /** Output file paths (ok only). */
  files?: string[];
  error?: string;
  /** The image's manifest line, keyed by its input path: what `--json` prints. */
  line: RunManifestLine;
}

export interface ExplainSummary {
  ok: number;
  failed: number;
  outcomes: ExplainImageOutcome[];
}

export async function defaultExplainDeps(logger: Logger): Promise<ExplainDeps> {
  return {
    logger,
    loadSpec: configuredModelLoader(() => loadConfig().s3),
    createEngine,
    resolveSetup: async (weights, flags) => (await resolveConfiguredModel(weights, flags, () => loadConfig().s3)).setup,
    loadLabels: (numClasses, given) => loadLabels({ numClasses, given }),
    report: (line) => process.stdout.write(`${line}\n`),
    now: () => new Date(),
    pixelBudget: loadConfig().pixelBudget,
  };
}

export async function runExplain(options: ExplainCommandOptions, deps: ExplainDeps): Promise<ExplainSummary> {
  const logger = deps.logger ?? silentLogger();
  const inputs = await expandInputs(options.images);
  const names = outputNamesFor(inputs, options.overlayFormat);
  await mkdir(options.out, { recursive: true });

  const setup = await deps.resolveSetup(options.weights, options);
  const spec = await deps.loadSpec(options.weights, loadHintsOf(setup));
  const engine = await deps.createEngine({ spec, engine: options.engine, layer: setup.layer, backend: options.backend, logger, onnx: options.onnx, methods: [options.method] });
  const outcomes = new Array<ExplainImageOutcome>(inputs.length);
  try {
    const labels = await deps.loadLabels(engine.info.numClasses, setup.labels);
    if (labels.warning) logger.warn(labels.warning);
    logger.info({ engine: engine.info.engine, backend: engine.info.backend, device: engine.info.device, layer: engine.info.layer, preprocess: describePreprocessing(setup.preprocessing), images: inputs.length }, 'explaining');

    // A failing engine call is not about one image (bad --targets, broken model): it fails the command.
    let engineError: unknown = null;
    const batcher = new DynamicBatcher<BatchItem, EngineImageResult>(engineBatchRunner(engine, options.batchSize), { maxBatchSize: options.batchSize, maxDelayMs: 20, isolateFailures: false });
    const core: ImageCoreDeps = {
      engine: engine.info,
      labels: labels.labels,
      matcher: new LabelMatcher(labels.labels, engine.info.numClasses),
      weightsSource: options.weights,
      model: { preprocessing: setup.preprocessing, provenance: modelProvenanceOf(setup.preprocessing, labels.source) },
      infer: async (image, opts, seed) => {
        try {
          const { result, batch } = await batcher.submit(batchKeyFor(opts, engine.info.layer), { image, request: engineRequestOf(opts), seed });
          return { result, timings: batchTimingsOf(batch) };
        } catch (err) {
          engineError ??= err;
          throw err;
        }
      },
      now: deps.now,
      budget: new PixelBudget(deps.pixelBudget),
    };
    // Two batches' worth of images in flight: one in the engine while the next decodes and the
    // previous renders and writes.
    let next = 0;
    const lane = async (): Promise<void> => {
      for (let i = next++; i < inputs.length && engineError === null; i = next++) {
        outcomes[i] = await explainOne(inputs[i], names[i], core, options, deps);
      }
    };
    await Promise.all(Array.from({ length: Math.min(inputs.length, 2 * options.batchSize) }, lane));
    if (engineError !== null) throw engineError;
  } finally {
    await engine.dispose();
  }
  const failed = outcomes.filter((o) => o.status === 'failed').length;
  return { ok: outcomes.length - failed, failed, outcomes };
}

async function explainOne(input: string, names: OutputNames, core: ImageCoreDeps, options: ExplainCommandOptions, deps: ExplainDeps): Promise<ExplainImageOutcome> {
  try {
    let t = performance.now();
    const info = await stat(input).catch((err: NodeJS.ErrnoException) => {
      throw new InvalidInputError(err.code === 'ENOENT' ? 'NOT_FOUND' : 'UNREADABLE', err.code === 'ENOENT' ? `no such file: ${input}` : `cannot read ${input}: ${err.message}`, { cause: err });
    });
    if (!info.isFile()) throw new InvalidInputError('NOT_A_FILE', `not a regular file: ${input}`);
    const bytes = await readFile(input);
    const read = performance.now() - t;

    const out = await explainImage({ bytes, source: { uri: input }, options, outputs: names.paths, timings: { read } }, core);
    const files = mapArtifactPaths(names.paths, (p) => path.join(options.out, p));
    t = performance.now();
    await writeArtifacts(
      out,
      async (spec, data) => {
        await mkdir(path.dirname(files[spec.name]), { recursive: true });
        await writeFile(files[spec.name], data);
      },
      (doc) => {
        doc.timings.write = Math.round((performance.now() - t) * 100) / 100;
      },
    );

    const doc = out.document;
    const top = doc.predictions[0];
    const what = top ? `${top.label ?? `class ${top.index}`} (${top.index}) p=${top.probability.toFixed(4)}` : 'no prediction';
    const flags = doc.targets.filter((c) => c.degenerate).map((c) => ` [class ${c.classIndex} degenerate: ${c.degenerate}]`).join('');
    deps.report(`ok      ${input} -> ${files.overlay}  ${what}${flags}`);
    return { input, status: 'ok', document: doc, files: Object.values(files), line: manifestLineOf(input, doc, doc.outputs) };
  } catch (err) {
    const error = err instanceof AuditError ? describeError(err) : ((err as Error)?.message ?? String(err));
    deps.report(`FAILED  ${input}: ${error}`);
    deps.logger.debug({ input, err }, 'image failed');
    return { input, status: 'failed', error, line: failedLineOf(input, error) };
  }
}
