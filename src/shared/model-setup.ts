/**
 * One model, fully described: weights, model card, flags and format defaults resolved in one place
 * (`resolveModelSetup`), for `explain`, `worker`, `doctor` and `enqueue` alike. Its identity
 * (`modelIdentityOf`) is what a run records as the model it needs and what a worker compares with
 * the model it serves (`modelMismatch`).
 *
 * Precedence for each property: flag, then model card, then the default:
 * - preprocess: for a Keras .h5 with an `architecture`, what that keras.applications layout's
 *   `preprocess_input` does (`KERAS_ARCHITECTURE_PREPROCESS`); caffe for other Keras .h5 and TF.js
 *   models (Keras' VGG16/ResNet50 convention), torch for
 *   ONNX files whose `producer_name` is `pytorch`; any other ONNX producer is ambiguous (tf2onnx
 *   exports Keras models of every convention), so a ConfigError asks for `--preprocess`;
 * - centerCrop: false; layer: the engine's default target;
 * - labels: the card's, then `labels.json` beside a TF.js `model.json`, then none (the worker uses
 *   ImageNet's for 1000-class models).
 */
import { createHash } from 'node:crypto';
import { extname } from 'node:path';
import { ConfigError } from './errors.js';
import { readModelCard, siblingOf, type FoundModelCard } from './model-card.js';
import type { ModelFiles } from './model-files.js';
import { KERAS_ARCHITECTURE_PREPROCESS, type KerasArchitecture, type ModelOptions } from './model-options.js';
import { readOnnxProducerName } from './onnx-header.js';
import { describeSource, parseWeightSource, resolveRelative, type WeightSource } from './model-uri.js';
import { PREPROCESS_MODES, type ModelPreprocessing, type PreprocessMode } from './preprocessing.js';
import { stableStringify } from './stable-json.js';

export type ModelFormat = 'keras-h5' | 'tfjs-layers' | 'onnx' | 'unknown';

export interface ModelSetup {
  /** `--weights` as given. */
  weights: string;
  format: ModelFormat;
  /** ONNX `producer_name`, when the model is an ONNX file that has one. */
  producer?: string;
  card: FoundModelCard | null;
  preprocessing: ModelPreprocessing;
  /** Where the preprocessing mode came from. */
  preprocessFrom: 'flag' | 'model card' | 'default';
  layer?: string;
  /** Layout of a Keras weights-only .h5 (flag, then card); undefined: vgg16. */
  architecture?: KerasArchitecture;
  /** Class names to use, with where they came from; null: ImageNet for 1000 classes, else index-only. */
  labels: { source: string; text: string } | null;
  inputSize?: [number, number];
  name?: string;
  version?: string;
}

/** Bytes read from the head of the weights to tell the format and the ONNX producer. */
export const SNIFF_BYTES = 64 * 1024;

export async function resolveModelSetup(weights: string, flags: ModelOptions, files: ModelFiles): Promise<ModelSetup> {
  const source = parseWeightSource(weights);
  const card = await readModelCard(weights, files);
  const c = card?.card ?? {};
  let format = formatFromName(source);
  let producer: string | undefined;
  if (format === 'onnx' || format === 'unknown') {
    const head = await files.head(source, SNIFF_BYTES);
    if (format === 'unknown') format = sniffFormat(head);
    if (format === 'onnx') producer = readOnnxProducerName(head) ?? undefined;
  }

  let preprocessFrom: ModelSetup['preprocessFrom'] = 'flag';
  let mode: PreprocessMode | undefined = flags.preprocess;
  if (mode === undefined && c.preprocess !== undefined) [mode, preprocessFrom] = [c.preprocess, 'model card'];
  const architecture = flags.architecture ?? c.architecture;
  if (mode === undefined) [mode, preprocessFrom] = [defaultPreprocess(weights, format, producer, card, architecture), 'default'];

  const setup: ModelSetup = {
    weights,
    format,
    card,
    preprocessing: { mode, centerCrop: flags.centerCrop ?? c.centerCrop ?? false },
    preprocessFrom,
    labels: await resolveLabels(source, format, flags, card, files),
  };
  if (producer !== undefined) setup.producer = producer;
  const layer = flags.layer ?? c.layer;
  if (layer !== undefined) setup.layer = layer;
  if (architecture !== undefined) setup.architecture = architecture;
  if (c.inputSize) setup.inputSize = c.inputSize;
  if (c.name !== undefined) setup.name = c.name;
  if (c.version !== undefined) setup.version = c.version;
  return setup;
}

function defaultPreprocess(weights: string, format: ModelFormat, producer: string | undefined, card: FoundModelCard | null, architecture: KerasArchitecture | undefined): PreprocessMode {
  if (format === 'keras-h5') return architecture ? KERAS_ARCHITECTURE_PREPROCESS[architecture] : 'caffe';
  if (format === 'tfjs-layers') return 'caffe';
  const where = card ? `or set "preprocess" in its model card ${card.uri}` : `or put {"preprocess": "..."} in a model card beside it (${describeCardHint(weights)})`;
  if (format === 'onnx') {
    if (producer?.toLowerCase() === 'pytorch') return 'torch';
    throw new ConfigError(
      '--preprocess',
      `${weights} is an ONNX file ${producer ? `made by "${producer}"` : 'without a producer name'}, not exported from PyTorch, so how its inputs were normalised during training is unknown: ` +
        `pass --preprocess ${PREPROCESS_MODES.join('|')} (tf2onnx/Keras: caffe for VGG/ResNet, tf for MobileNet/Inception, none for Keras EfficientNet, which rescales inside the model; raw when the graph expects 0-1 pixels) ${where}`,
    );
  }
  throw new ConfigError('--preprocess', `cannot tell the format of ${weights} (not Keras HDF5, TF.js or ONNX by name or content), so its preprocessing is unknown: pass --preprocess ${PREPROCESS_MODES.join('|')} ${where}`);
}

function describeCardHint(weights: string): string {
  const source = parseWeightSource(weights);
  const name = describeSource(source);
  return name.replace(/(\.[A-Za-z0-9]+)?$/, '.model.json');
}

export function formatFromName(source: WeightSource): ModelFormat {
  const name = source.kind === 'file' ? source.path : source.kind === 's3' ? source.key : new URL(source.url).pathname;
  const ext = extname(name).toLowerCase();
  if (ext === '.h5' || ext === '.hdf5') return 'keras-h5';
  if (ext === '.json') return 'tfjs-layers';
  if (ext === '.onnx') return 'onnx';
  return 'unknown';
}

function sniffFormat(head: Uint8Array): ModelFormat {
  if (head.length >= 8 && Buffer.from(head.subarray(0, 8)).toString('latin1') === '\x89HDF\r\n\x1a\n') return 'keras-h5';
  if (Buffer.from(head.subarray(0, 64)).toString('utf8').trimStart().startsWith('{')) return 'tfjs-layers';
  // A ModelProto starts with ir_version (field 1, varint): tag byte 0x08.
  if (head[0] === 0x08) return 'onnx';
  return 'unknown';
}

async function resolveLabels(weights: WeightSource, format: ModelFormat, flags: ModelOptions, card: FoundModelCard | null, files: ModelFiles): Promise<ModelSetup['labels']> {
  const readText = async (source: WeightSource, what: string): Promise<{ source: string; text: string }> => {
    const bytes = await files.read(source);
    if (bytes === null) throw new ConfigError(what, `labels file not found: ${describeSource(source)}`);
    return { source: describeSource(source), text: Buffer.from(bytes).toString('utf8') };
  };
  if (flags.labels !== undefined) return readText(parseWeightSource(flags.labels), '--labels');
  const labels = card?.card.labels;
  if (Array.isArray(labels)) return { source: card!.uri, text: JSON.stringify(labels) };
  if (typeof labels === 'string') {
    const target = /^[a-z][a-z0-9+.-]*:\/\//i.test(labels) ? parseWeightSource(labels) : resolveRelative(card!.source, labels);
    return readText(target, `model card ${card!.uri}: "labels"`);
  }
  if (format === 'tfjs-layers') {
    const beside = siblingOf(weights, 'labels.json');
    const bytes = await files.read(beside);
    if (bytes !== null) return { source: describeSource(beside), text: Buffer.from(bytes).toString('utf8') };
  }
  return null;
}

/**
 * What a run records as the model it needs and a worker compares with the model it serves. Two
 * setups with equal identities compute the same maps: same weight bytes (fingerprint), same input
 * preprocessing, same class names, same target layer.
 */
export interface ModelIdentity {
  /** `--weights` as named (for people; matching uses the fingerprint). */
  weights: string;
  /** `etag:...` or `sha256:...` of the weights (TF.js: of model.json and every shard). */
  fingerprint: string;
  preprocess: PreprocessMode;
  centerCrop: boolean;
  /** The declared target layer, or null for the model's default target. */
  layer: string | null;
  /** sha256 of the class names, or null when none were given (ImageNet for 1000 classes). */
  labels: string | null;
  /**
   * For a Keras .h5: the layout a file without topology (weights-only) is read with and its input
   * size, `resnet50 224x224` (`--architecture`, then the card, else vgg16; the card's `inputSize`,
   * else 224x224): the same weights read as another layout are another model. Enqueue cannot tell
   * a weights-only file from a full model without reading it, so it is recorded for every .h5
   * (give a full-model file's workers and runs the same flags, or none). Null for ONNX and TF.js,
   * which describe themselves. Absent in runs enqueued before it was recorded: not compared.
   */
  architecture?: string | null;
  /** From the model card, for people. */
  name?: string;
  version?: string;
}

/** The fields two identities must agree on, in the order a mismatch names them. */
const MATCHED_FIELDS = ['fingerprint', 'preprocess', 'centerCrop', 'layer', 'labels', 'architecture'] as const;

export async function modelIdentityOf(setup: ModelSetup, files: ModelFiles): Promise<ModelIdentity> {
  const identity: ModelIdentity = {
    weights: setup.weights,
    fingerprint: await weightsFingerprint(setup, files),
    preprocess: setup.preprocessing.mode,
    centerCrop: setup.preprocessing.centerCrop,
    layer: setup.layer ?? null,
    labels: setup.labels ? `sha256:${createHash('sha256').update(setup.labels.text).digest('hex')}` : null,
    architecture: kerasLayoutOf(setup),
  };
  if (setup.name !== undefined) identity.name = setup.name;
  if (setup.version !== undefined) identity.version = setup.version;
  return identity;
}

/** `<layout> <h>x<w>` for a Keras .h5 (see `ModelIdentity.architecture`), else null. */
function kerasLayoutOf(setup: ModelSetup): string | null {
  if (setup.format !== 'keras-h5') return null;
  const [h, w] = setup.inputSize ?? [224, 224];
  return `${setup.architecture ?? 'vgg16'} ${h}x${w}`;
}

/** A TF.js model is model.json plus its shards: a replaced shard is another model. */
async function weightsFingerprint(setup: ModelSetup, files: ModelFiles): Promise<string> {
  const source = parseWeightSource(setup.weights);
  if (setup.format !== 'tfjs-layers') return files.fingerprint(source);
  const bytes = await files.read(source);
  if (bytes === null) throw new ConfigError('--weights', `TF.js model not found: ${describeSource(source)}`);
  const manifest = (JSON.parse(Buffer.from(bytes).toString('utf8')) as { weightsManifest?: Array<{ paths?: string[] }> }).weightsManifest ?? [];
  const hash = createHash('sha256').update(bytes);
  for (const path of manifest.flatMap((group) => group.paths ?? [])) hash.update('\0').update(await files.fingerprint(resolveRelative(source, path)));
  return `tfjs:${hash.digest('hex')}`;
}

/** A short stable key of the matched fields, for logs and metrics labels. */
export function modelKeyOf(identity: ModelIdentity): string {
  const picked = Object.fromEntries(MATCHED_FIELDS.map((f) => [f, identity[f]]));
  return createHash('sha256').update(stableStringify(picked)).digest('hex').slice(0, 12);
}

/** Null when `served` computes what `required` asks for, else a reason naming every difference. */
export function modelMismatch(required: ModelIdentity, served: ModelIdentity): string | null {
  // A run recorded before `architecture` existed (undefined) names no layout.
  const differences = MATCHED_FIELDS.filter((f) => required[f] !== served[f] && !(f === 'architecture' && required[f] === undefined)).map((f) => {
    if (f === 'fingerprint') return `weights ${describeModel(required)} (${required.fingerprint}) vs ${describeModel(served)} (${served.fingerprint})`;
    return `${f} ${JSON.stringify(required[f])} vs ${JSON.stringify(served[f])}`;
  });
  return differences.length === 0 ? null : `the run needs another model than this worker serves: ${differences.join('; ')} (run vs worker)`;
}

function describeModel(identity: ModelIdentity): string {
  const named = identity.name ? ` "${identity.name}${identity.version ? `@${identity.version}` : ''}"` : '';
  return `${identity.weights}${named}`;
}

/** The identity as stored (a JSON-safe plain object with sorted keys). */
export function serializeModelIdentity(identity: ModelIdentity): string {
  return stableStringify(identity);
}
