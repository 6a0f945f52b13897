/**
 * `gradcam-audit demo` options. Defaults in one place; the demo runs the same processes a real
 * deployment runs (worker, dashboard, enqueue), against embedded or configured services.
 */
import { join } from 'node:path';
import { ConfigError } from '../shared/errors.js';
import { parseIntInRange } from '../shared/config.js';
import { PACKAGE_ROOT } from '../shared/package-root.js';


export interface DemoOptions {
  /** Exit 0 once the run completes (also when CI=true). */
  once: boolean;
  /** Model weights: TF.js model.json or Keras .h5 (e.g. the real VGG16 file). Default: the demo model. */
  weights: string;
  /** Labels for a non-ImageNet head; default: the demo model's labels, none for other weights. */
  labels: string | undefined;
  /** Folder of sample images uploaded to the bucket (see DEMO_SAMPLES). */
  samples: string;
  /** Why a default sample folder was left out, to say so; null when the user chose the samples. */
  samplesNote: string | null;
  /** Dashboard port; 0 picks a free one. Default 3000, or a free port when 3000 is taken. */
  port: number;
  /** Where embedded S3 data and the local copy of the outputs go. Default `./demo-data`. */
  dataDir: string;
  /** Bucket used for samples and outputs. */
  bucket: string;
  engine: string;
  batchSize: number;
}

export const DEMO_MODEL = join(PACKAGE_ROOT, 'models', 'demo', 'model.json');
export const DEMO_LABELS = join(PACKAGE_ROOT, 'models', 'demo', 'labels.json');

/**
 * The bundled samples. The demo model knows five shapes: photos are out-of-distribution for it and
 * it would still give them a confident-looking shape label (a cat as "cross 59%"), which teaches the
 * wrong lesson about the audit. So the demo model audits the shapes and real VGG16 (`--weights`)
 * audits the photos, unless `--samples` says otherwise.
 */
export const DEMO_SAMPLES = Object.freeze({
  shapes: join(PACKAGE_ROOT, 'samples', 'synthetic'),
  photos: join(PACKAGE_ROOT, 'samples', 'photos'),
});

export const DEMO_DEFAULTS = Object.freeze({
  weights: DEMO_MODEL,
  port: 3000,
  dataDir: 'demo-data',
  bucket: 'gradcam-demo',
  engine: 'auto',
  batchSize: 8,
});

export interface DemoFlags {
  once?: boolean;
  weights?: string;
  labels?: string;
  samples?: string;
  port?: string;
  dataDir?: string;
  bucket?: string;
  engine?: string;
  batchSize?: string;
}

export function resolveDemoOptions(flags: DemoFlags, env: Record<string, string | undefined> = process.env): DemoOptions {
  const weights = flags.weights ?? DEMO_DEFAULTS.weights;
  const usingDemoModel = weights === DEMO_MODEL;
  const engine = flags.engine ?? DEMO_DEFAULTS.engine;
  if (!['auto', 'tfjs', 'onnx'].includes(engine)) throw new ConfigError('--engine', `expected auto, tfjs or onnx, got "${engine}"`);
  if (flags.bucket !== undefined && !/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(flags.bucket)) {
    throw new ConfigError('--bucket', `"${flags.bucket}" is not a valid bucket name`);
  }
  return {
    once: Boolean(flags.once) || env.CI === 'true' || env.CI === '1',
    weights,
    labels: flags.labels ?? (usingDemoModel ? DEMO_LABELS : undefined),
    samples: flags.samples ?? (usingDemoModel ? DEMO_SAMPLES.shapes : DEMO_SAMPLES.photos),
    samplesNote:
      flags.samples !== undefined
        ? null
        : usingDemoModel
          ? 'shapes only: the demo model knows 5 shapes, so the photos in samples/photos would be out-of-distribution inputs it labels with a shape anyway; run with --weights <vgg16 .h5> to audit them with real VGG16'
          : 'photos only: the shapes in samples/synthetic are for the bundled demo model',
    port: flags.port === undefined ? DEMO_DEFAULTS.port : parseIntInRange('--port', flags.port, 0, 65535),
    dataDir: flags.dataDir ?? DEMO_DEFAULTS.dataDir,
    bucket: flags.bucket ?? DEMO_DEFAULTS.bucket,
    engine,
    batchSize: flags.batchSize === undefined ? DEMO_DEFAULTS.batchSize : parseIntInRange('--batch-size', flags.batchSize, 1, 256),
  };
}
