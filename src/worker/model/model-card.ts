/**
 * The worker side of the model card: resolve a model's setup (card, flags, format defaults) and
 * identity with S3 access from the configuration and the ONNX engine's protobuf reader. The rules
 * themselves are in src/shared/model-setup.ts, shared with `enqueue`.
 */
import type { AppConfig } from '../../shared/config.js';
import { modelFiles, type ModelFileDeps, type ModelFiles } from '../../shared/model-files.js';
import type { ModelProvenance } from '../../shared/manifest.js';
import type { ModelOptions } from '../../shared/model-options.js';
import type { ModelPreprocessing } from '../../shared/preprocessing.js';
import { modelIdentityOf, resolveModelSetup, type ModelIdentity, type ModelSetup } from '../../shared/model-setup.js';
import type { ModelLoadHints } from './configured-loader.js';

export interface ResolvedModel {
  setup: ModelSetup;
  identity: ModelIdentity;
}

/** Setup only (`explain`: no run to match). */
export function resolveSetup(weights: string, flags: ModelOptions, files: ModelFiles): Promise<ModelSetup> {
  return resolveModelSetup(weights, flags, files);
}

/** Setup and identity (`worker`, `doctor`). */
export async function resolveModel(weights: string, flags: ModelOptions, files: ModelFiles): Promise<ResolvedModel> {
  const setup = await resolveSetup(weights, flags, files);
  return { setup, identity: await modelIdentityOf(setup, files) };
}

/** The S3 settings, or how to read them: `explain` reads the configuration only for an s3:// model. */
export type S3Settings = AppConfig['s3'] | (() => AppConfig['s3']);

/**
 * Model files with S3 access only when the model needs it (the AWS SDK is loaded lazily).
 * `release` destroys the S3 client, if one was made.
 */
export async function configuredModelFiles(weights: string, s3: S3Settings, extra: ModelFileDeps = {}): Promise<{ files: ModelFiles; release: () => void }> {
  if (!weights.startsWith('s3://')) return { files: modelFiles(extra), release: () => undefined };
  const { S3ObjectStore } = await import('../../shared/storage/s3-store.js');
  const store = S3ObjectStore.fromConfig(typeof s3 === 'function' ? s3() : s3);
  return { files: modelFiles({ ...extra, store }), release: () => store.destroy() };
}

/**
 * The model's setup (flags, then its card, then the format's defaults: `resolveModelSetup`) read
 * with S3 from the configuration, and its identity when `identity` is set (`worker`, `doctor` for
 * runs to match; `explain` has none and skips hashing the weights). The one way every command
 * resolves its model, so they cannot disagree on what the same flags and card mean.
 */
export async function resolveConfiguredModel(weights: string, flags: ModelOptions, s3: S3Settings, want: { identity: true }): Promise<ResolvedModel>;
export async function resolveConfiguredModel(weights: string, flags: ModelOptions, s3: S3Settings, want?: { identity: false }): Promise<{ setup: ModelSetup }>;
export async function resolveConfiguredModel(weights: string, flags: ModelOptions, s3: S3Settings, want: { identity: boolean } = { identity: false }): Promise<{ setup: ModelSetup; identity?: ModelIdentity }> {
  const { files, release } = await configuredModelFiles(weights, s3);
  try {
    return want.identity ? await resolveModel(weights, flags, files) : { setup: await resolveSetup(weights, flags, files) };
  } finally {
    release();
  }
}

/** What loading the weights needs of the setup: the Keras layout (flag, then card) and the card's input size. */
export function loadHintsOf(setup: ModelSetup): ModelLoadHints {
  const hints: ModelLoadHints = {};
  if (setup.architecture !== undefined) hints.architecture = setup.architecture;
  if (setup.inputSize !== undefined) hints.inputSize = setup.inputSize;
  return hints;
}

/** What a worker tells each job about its model: how to preprocess, what to record, what it is. */
export interface ServedModel {
  preprocessing: ModelPreprocessing;
  provenance: ModelProvenance;
  /** Undefined: the worker does not know its identity (tests, embedded use) and serves runs that name none. */
  identity?: ModelIdentity;
}

/** A worker built without a resolved model: Keras caffe preprocessing, as before models were described. */
export const DEFAULT_SERVED_MODEL: Readonly<ServedModel> = Object.freeze({
  preprocessing: { mode: 'caffe' as const, centerCrop: false },
  provenance: { preprocess: 'caffe' as const, centerCrop: false, labels: 'unrecorded' },
});

/** What a prediction document records of the model's preprocessing and labels. */
export function modelProvenanceOf(preprocessing: ModelPreprocessing, labelsSource: string): ModelProvenance {
  return { preprocess: preprocessing.mode, centerCrop: preprocessing.centerCrop, labels: labelsSource };
}

/** The served model of a resolved setup, once its labels are loaded. */
export function servedModelOf(resolved: ResolvedModel, labelsSource: string): ServedModel {
  const { preprocessing } = resolved.setup;
  return { preprocessing, provenance: modelProvenanceOf(preprocessing, labelsSource), identity: resolved.identity };
}
