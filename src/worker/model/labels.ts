/**
 * Class labels and top-k decoding. ImageNet labels come from `data/imagenet_class_index.json`,
 * byte-identical to the file Keras' `decode_predictions` uses. Labels repeat (134 and 517 are both
 * "crane"), so predictions always carry the index, and the wnid when known.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError } from '../../shared/errors.js';
import type { Prediction } from '../../shared/manifest.js';

export interface ClassLabel {
  wnid?: string;
  label: string;
}

export interface LabelResolution {
  /** One entry per class, or null for index-only output. */
  labels: ClassLabel[] | null;
  /** Where the labels came from (`imagenet`, a file path), or `none`. */
  source: string;
  /** Why the output is index-only, when it is. */
  warning: string | null;
}

export interface LoadLabelsOptions {
  /** Number of classes the model outputs. */
  numClasses: number;
  /** `--labels FILE`; undefined uses the ImageNet index when the model has 1000 classes. */
  file?: string;
  /** Labels already read (model card, `--labels` from S3/http, `labels.json` beside a TF.js model): used instead of `file`. */
  given?: { source: string; text: string } | null;
  /** Injected for tests; defaults to `fs.readFile` as UTF-8. */
  read?: (path: string) => Promise<string>;
}

export const IMAGENET_CLASS_INDEX_FILE = 'imagenet_class_index.json';

/**
 * Labels for a model. An explicit file must match the class count (a mismatch is a configuration
 * error: the user named the wrong file). Without a file, ImageNet labels are used for 1000-class
 * models; other heads get index-only predictions with a warning that says so.
 */
export async function loadLabels(options: LoadLabelsOptions): Promise<LabelResolution> {
  const read = options.read ?? ((path: string) => readFile(path, 'utf8'));
  if (options.given) {
    const labels = parseLabels(options.given.text, options.given.source);
    if (labels.length !== options.numClasses) {
      throw new ConfigError('--labels', `${options.given.source} has ${labels.length} labels but the model outputs ${options.numClasses} classes`);
    }
    return { labels, source: options.given.source, warning: null };
  }
  if (options.file !== undefined) {
    let text: string;
    try {
      text = await read(options.file);
    } catch (err) {
      throw new ConfigError('--labels', `cannot read ${options.file}: ${(err as Error).message}`, { cause: err });
    }
    const labels = parseLabels(text, options.file);
    if (labels.length !== options.numClasses) {
      throw new ConfigError('--labels', `${options.file} has ${labels.length} labels but the model outputs ${options.numClasses} classes`);
    }
    return { labels, source: options.file, warning: null };
  }
  if (options.numClasses !== 1000) {
    return {
      labels: null,
      source: 'none',
      warning: `the model outputs ${options.numClasses} classes, not ImageNet's 1000: predictions are index-only (pass --labels FILE to name them)`,
    };
  }
  return { labels: await loadImagenetLabels(read), source: 'imagenet', warning: null };
}

/** The 1000 ImageNet classes from the Keras class index. */
export async function loadImagenetLabels(read: (path: string) => Promise<string> = (p) => readFile(p, 'utf8')): Promise<ClassLabel[]> {
  const path = imagenetClassIndexPath();
  return parseLabels(await read(path), path);
}

/** `data/imagenet_class_index.json`, found from this module whether run from src/ or dist/. */
export function imagenetClassIndexPath(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const candidate = join(dir, 'data', IMAGENET_CLASS_INDEX_FILE);
    if (existsSync(candidate)) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new ConfigError('labels', `cannot find data/${IMAGENET_CLASS_INDEX_FILE} above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
}

/**
 * Parse labels in any of the accepted formats: a JSON array of strings, the Keras class index
 * `{"0": ["n01440764", "tench"], ...}` (keys must be exactly 0..n-1), or plain text with one label
 * per line (blank lines ignored, so a trailing newline is fine).
 */
export function parseLabels(text: string, source: string): ClassLabel[] {
  const trimmed = text.trim();
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    let value: unknown;
    try {
      value = JSON.parse(trimmed);
    } catch (err) {
      throw new ConfigError('--labels', `${source} looks like JSON but does not parse: ${(err as Error).message}`, { cause: err });
    }
    if (Array.isArray(value)) {
      return value.map((item, i) => {
        if (typeof item !== 'string') throw new ConfigError('--labels', `${source}: entry ${i} is not a string`);
        return { label: item };
      });
    }
    return parseClassIndex(value as Record<string, unknown>, source);
  }
  const lines = trimmed.split(/\r?\n/).map((l) => l.trim()).filter((l) => l.length > 0);
  if (lines.length === 0) throw new ConfigError('--labels', `${source} contains no labels`);
  return lines.map((label) => ({ label }));
}

function parseClassIndex(value: Record<string, unknown>, source: string): ClassLabel[] {
  const entries = Object.entries(value);
  const labels: ClassLabel[] = new Array<ClassLabel>(entries.length);
  for (const [key, entry] of entries) {
    const index = Number(key);
    if (!Number.isInteger(index) || index < 0 || index >= entries.length || String(index) !== key) {
      throw new ConfigError('--labels', `${source}: key "${key}" is not a class index in 0..${entries.length - 1}`);
    }
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[0] !== 'string' || typeof entry[1] !== 'string') {
      throw new ConfigError('--labels', `${source}: entry "${key}" must be [wnid, label]`);
    }
    labels[index] = { wnid: entry[0], label: entry[1] };
  }
  return labels;
}

/**
 * The k most probable classes, best first; ties go to the lower index so output is stable.
 * Labels may be null (index-only predictions).
 */
export function decodeTopK(probabilities: ArrayLike<number>, k: number, labels: readonly ClassLabel[] | null): Prediction[] {
  const n = probabilities.length;
  const count = Math.max(0, Math.min(k, n));
  const order = Array.from({ length: n }, (_, i) => i);
  // NaN sorts last so a broken output never shows up as the top class.
  const value = (i: number): number => (Number.isNaN(probabilities[i]!) ? -Infinity : probabilities[i]!);
  order.sort((a, b) => value(b) - value(a) || a - b);
  return order.slice(0, count).map((index) => {
    const label = labels?.[index];
    const prediction: Prediction = { index, probability: probabilities[index]! };
    if (label?.wnid !== undefined) prediction.wnid = label.wnid;
    if (label) prediction.label = label.label;
    return prediction;
  });
}
