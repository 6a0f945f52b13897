/**
 * Where model files live: a local path, `s3://bucket/key` or an http(s) URL, and files beside one
 * (TF.js shards, the model card, labels), resolved in the same scheme. Shared because the producer
 * names the model of a run as well as the worker that loads it.
 */
import { dirname, join, posix, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConfigError, ModelError } from './errors.js';

export type WeightSource = { kind: 'file'; path: string } | { kind: 's3'; bucket: string; key: string } | { kind: 'http'; url: string };

export function parseWeightSource(source: string): WeightSource {
  if (source.startsWith('s3://')) {
    const rest = source.slice(5);
    const slash = rest.indexOf('/');
    if (slash <= 0 || slash === rest.length - 1) throw new ConfigError('--weights', `"${source}" is not s3://bucket/key`);
    return { kind: 's3', bucket: rest.slice(0, slash), key: rest.slice(slash + 1) };
  }
  if (/^https?:\/\//i.test(source)) {
    try {
      return { kind: 'http', url: new URL(source).toString() };
    } catch (err) {
      throw new ConfigError('--weights', `"${source}" is not a valid URL`, { cause: err });
    }
  }
  if (source.startsWith('file://')) return { kind: 'file', path: fileURLToPath(source) };
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(source)) throw new ConfigError('--weights', `unsupported scheme in "${source}" (use a path, s3:// or http(s)://)`);
  return { kind: 'file', path: resolve(source) };
}

export function describeSource(source: WeightSource): string {
  if (source.kind === 'file') return source.path;
  if (source.kind === 's3') return `s3://${source.bucket}/${source.key}`;
  return source.url;
}

/** A path from a model.json (a shard) resolved against model.json's location, in the same scheme. */
export function resolveRelative(base: WeightSource, relative: string): WeightSource {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(relative) || relative.startsWith('/')) {
    throw new ModelError(`${describeSource(base)}: shard path "${relative}" must be relative to model.json`);
  }
  if (base.kind === 'file') return { kind: 'file', path: join(dirname(base.path), relative) };
  if (base.kind === 'http') return { kind: 'http', url: new URL(relative, base.url).toString() };
  const key = posix.normalize(posix.join(posix.dirname(base.key), relative));
  if (key.startsWith('../')) throw new ModelError(`s3://${base.bucket}/${base.key}: shard path "${relative}" leaves the bucket`);
  return { kind: 's3', bucket: base.bucket, key };
}
