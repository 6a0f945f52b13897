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

/**
 * Model files with S3 access only when the model needs it (the AWS SDK is loaded lazily).
 * `release` destroys the S3 client, if one was made.
 */
export async function configuredModelFiles(weights: string, s3: AppConfig['s3'] | (() => AppConfig['s3']), extra: ModelFileDeps = {}): Promise<{ files: ModelFiles; release: () => void }> {
  if (!weights.startsWith('s3://')) return { files: modelFiles(extra), release: () => undefined };
  const { S3ObjectStore } = await import('../../shared/storage/s3-store.js');
  const store = S3ObjectStore.fromConfig(typeof s3 === 'function' ? s3() : s3);
  return { files: modelFiles({ ...extra, store }), release: () => store.destroy() };
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
