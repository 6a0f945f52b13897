/**
 * Load a model from a path, an http(s) URL or an s3:// URI, reading S3 with the configured endpoint
 * and credentials. One place for the worker and the doctor.
 */
import type { AppConfig } from '../../shared/config.js';
import type { KerasArchitecture } from '../../shared/model-options.js';
import type { ModelInput } from './graph/from-sequential.js';

/** What a command knows about the model beyond its location (from flags and the model card). */
export interface ModelLoadHints {
  /** Layout of a Keras weights-only .h5 (`--architecture`). */
  architecture?: KerasArchitecture;
  /** `[height, width]` of a layout built by `--architecture` (model card `inputSize`); default 224x224. */
  inputSize?: [number, number];
}

/** Loads the model a command serves; the worker, `explain` and the doctor take one, so tests can inject theirs. */
export type ModelLoader = (source: string, hints?: ModelLoadHints) => Promise<ModelInput>;

/**
 * @param s3 the S3 settings, or a function that reads them: read (and the storage layer with the AWS
 *   SDK imported) only for an s3:// source, so `explain` on local files never pays for either.
 */
export function configuredModelLoader(s3: AppConfig['s3'] | (() => AppConfig['s3'])): ModelLoader {
  return async (source, hints = {}) => {
    const { loadModel } = await import('./source.js');
    const options = { kerasArchitecture: hints.architecture, inputSize: hints.inputSize };
    if (!source.startsWith('s3://')) return loadModel(source, {}, options);
    const { S3ObjectStore } = await import('../../shared/storage/s3-store.js');
    // HEAD first: a copy cached from the same ETag is reused instead of downloaded again.
    const store = S3ObjectStore.fromConfig(typeof s3 === 'function' ? s3() : s3);
    try {
      return await loadModel(
        source,
        {
          getObject: async (bucket, key) => (await store.get(bucket, key)).body,
          headObject: async (bucket, key) => ({ etag: (await store.head(bucket, key))?.etag }),
        },
        options,
      );
    } finally {
      store.destroy();
    }
  };
}
