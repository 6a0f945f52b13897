/**
 * The model card: a small JSON file beside the weights that says what the weights alone cannot
 * (how inputs are preprocessed, what the classes are called, which layer to explain), so nobody
 * has to repeat those flags on every `explain`, `worker` and `enqueue`. Flags override it.
 *
 * Where it is looked for, in the weights' own location (path, s3:// or http(s)):
 *   1. `<weights name without extension>.model.json`  (`resnet50.onnx` → `resnet50.model.json`,
 *      `vgg16.h5` → `vgg16.model.json`, a TF.js `model.json` → `model.model.json`);
 *   2. for an `.onnx` file, also `model.json` in the same folder.
 *
 * Schema (`gradcam-audit/model-card@1`; every field optional, unknown fields are refused so a typo
 * never goes unnoticed):
 *   {
 *     "schema": "gradcam-audit/model-card@1",
 *     "name": "resnet50-defects", "version": "2026-11-03",
 *     "preprocess": "torch",            // caffe | tf | torch | raw | none
 *     "centerCrop": true,               // torchvision eval geometry
 *     "labels": "labels.json",          // a file beside the card, or an inline array of names
 *     "layer": "layer4",                // Grad-CAM target
 *     "architecture": "resnet50",       // layout of a Keras weights-only .h5 (vgg16 | resnet50 | mobilenetv2 | densenet121 | efficientnetb0)
 *     "inputSize": [224, 224]           // [height, width] for models with a free input size
 *   }
 */
import { dirname, join } from 'node:path';
import { ConfigError } from './errors.js';
import type { ModelFiles } from './model-files.js';
import { parseKerasArchitecture, parseLayerName, parsePreprocessMode, type KerasArchitecture } from './model-options.js';
import { describeSource, parseWeightSource, type WeightSource } from './model-uri.js';
import type { PreprocessMode } from './preprocessing.js';

export const MODEL_CARD_SCHEMA = 'gradcam-audit/model-card@1';

export interface ModelCard {
  name?: string;
  version?: string;
  preprocess?: PreprocessMode;
  centerCrop?: boolean;
  /** A labels file relative to the card (or any path/URI), or the class names themselves. */
  labels?: string | string[];
  layer?: string;
  /** Layout of a Keras weights-only .h5. */
  architecture?: KerasArchitecture;
  /** `[height, width]`. */
  inputSize?: [number, number];
}

const FIELDS = new Set(['schema', 'name', 'version', 'preprocess', 'centerCrop', 'labels', 'layer', 'architecture', 'inputSize']);

/** Candidate card locations for a weights source, most specific first. */
export function modelCardCandidates(weights: string): WeightSource[] {
  const source = parseWeightSource(weights);
  const name = source.kind === 'file' ? source.path : source.kind === 's3' ? source.key : new URL(source.url).pathname;
  const base = name.slice(name.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  const names = [`${stem}.model.json`];
  if (base.toLowerCase().endsWith('.onnx')) names.push('model.json');
  return names.map((n) => siblingOf(source, n));
}

/** `name` in the same folder as `source`, in the same scheme. */
export function siblingOf(source: WeightSource, name: string): WeightSource {
  if (source.kind === 'file') return { kind: 'file', path: join(dirname(source.path), name) };
  if (source.kind === 's3') return { kind: 's3', bucket: source.bucket, key: `${source.key.slice(0, source.key.lastIndexOf('/') + 1)}${name}` };
  return { kind: 'http', url: new URL(name, source.url).toString() };
}

export interface FoundModelCard {
  /** Where the card was read from. */
  uri: string;
  source: WeightSource;
  card: ModelCard;
}

/** The first card found beside `weights`, or null when there is none. */
export async function readModelCard(weights: string, files: ModelFiles): Promise<FoundModelCard | null> {
  for (const candidate of modelCardCandidates(weights)) {
    const bytes = await files.read(candidate);
    if (bytes === null) continue;
    const uri = describeSource(candidate);
    return { uri, source: candidate, card: parseModelCard(Buffer.from(bytes).toString('utf8'), uri) };
  }
  return null;
}

/** Parse and validate a card; every error names the file and the field. */
export function parseModelCard(text: string, where: string): ModelCard {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('model card', `${where} is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new ConfigError('model card', `${where} must be a JSON object`);
  const raw = value as Record<string, unknown>;
  const bad = (field: string, expected: string): never => {
    throw new ConfigError('model card', `${where}: "${field}" must be ${expected}, got ${JSON.stringify(raw[field])}`);
  };
  for (const key of Object.keys(raw)) {
    if (!FIELDS.has(key)) throw new ConfigError('model card', `${where}: unknown field "${key}" (known: ${[...FIELDS].join(', ')})`);
  }
  if (raw.schema !== undefined && raw.schema !== MODEL_CARD_SCHEMA) bad('schema', `"${MODEL_CARD_SCHEMA}"`);
  const card: ModelCard = {};
  for (const key of ['name', 'version'] as const) {
    if (raw[key] === undefined) continue;
    if (typeof raw[key] !== 'string' || raw[key] === '' || (raw[key] as string).length > 200) bad(key, 'a non-empty string of at most 200 characters');
    card[key] = raw[key] as string;
  }
  if (raw.preprocess !== undefined) {
    if (typeof raw.preprocess !== 'string') bad('preprocess', 'caffe, tf, torch or raw');
    card.preprocess = parsePreprocessMode(raw.preprocess as string, `${where}: "preprocess"`);
  }
  if (raw.centerCrop !== undefined) {
    if (typeof raw.centerCrop !== 'boolean') bad('centerCrop', 'true or false');
    card.centerCrop = raw.centerCrop as boolean;
  }
  if (raw.labels !== undefined) {
    const labels = raw.labels;
    if (typeof labels === 'string' && labels !== '') card.labels = labels;
    else if (Array.isArray(labels) && labels.length > 0 && labels.every((l) => typeof l === 'string')) card.labels = labels as string[];
    else bad('labels', 'a labels file name or a non-empty array of class names');
  }
  if (raw.layer !== undefined) {
    if (typeof raw.layer !== 'string') bad('layer', 'a layer name');
    card.layer = parseLayerName(raw.layer as string, `${where}: "layer"`);
  }
  if (raw.architecture !== undefined) {
    if (typeof raw.architecture !== 'string') bad('architecture', 'a keras.applications name');
    card.architecture = parseKerasArchitecture(raw.architecture as string, `${where}: "architecture"`);
  }
  if (raw.inputSize !== undefined) {
    const size = raw.inputSize as unknown[];
    if (!Array.isArray(size) || size.length !== 2 || !size.every((n) => Number.isInteger(n) && (n as number) >= 8 && (n as number) <= 8192)) bad('inputSize', '[height, width], integers from 8 to 8192');
    card.inputSize = [size[0] as number, size[1] as number];
  }
  return card;
}
