/**
 * Load a model from a path, an http(s) URL or an s3:// URI, reading S3 with the configured endpoint
 * and credentials. One place for the worker and the doctor.
 */
import type { AppConfig } from '../../shared/config.js';
import { S3ObjectStore } from '../../shared/storage/s3-store.js';
import type { ModelInput } from './graph/from-sequential.js';

export function configuredModelLoader(s3: AppConfig['s3']): (source: string) => Promise<ModelInput> {
  return async (source) => {
    const { loadModel } = await import('./source.js');
    if (!source.startsWith('s3://')) return loadModel(source);
    const store = S3ObjectStore.fromConfig(s3);
    try {
      return await loadModel(source, {
        getObject: async (bucket, key) => (await store.get(bucket, key)).body,
        headObject: async (bucket, key) => ({ etag: (await store.head(bucket, key))?.etag }),
      });
    } finally {
      store.client.destroy();
    }
  };
}
