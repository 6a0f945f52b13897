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
  /** Folder of sample images uploaded to the bucket. */
  samples: string;
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

export const DEMO_DEFAULTS = Object.freeze({
  weights: DEMO_MODEL,
  samples: join(PACKAGE_ROOT, 'samples'),
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
    samples: flags.samples ?? DEMO_DEFAULTS.samples,
    port: flags.port === undefined ? DEMO_DEFAULTS.port : parseIntInRange('--port', flags.port, 0, 65535),
    dataDir: flags.dataDir ?? DEMO_DEFAULTS.dataDir,
    bucket: flags.bucket ?? DEMO_DEFAULTS.bucket,
    engine,
    batchSize: flags.batchSize === undefined ? DEMO_DEFAULTS.batchSize : parseIntInRange('--batch-size', flags.batchSize, 1, 256),
  };
}
