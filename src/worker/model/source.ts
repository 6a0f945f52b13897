/**
 * Where models come from: a local path, `s3://bucket/key` or an http(s) URL, as an ONNX file,
 * Keras HDF5 or TF.js Layers. `loadModel` is the one entry point the engines and commands use
 * (`loadModelSpec` is its Keras branch restricted to sequential specs).
 *
 *
 * Remote files are cached on local disk because a worker restarts often and VGG16 is 553 MB:
 * - keyed by URL + ETag when the server tells the ETag up front (HTTP HEAD, or an injected S3
 *   `headObject`): a cached copy is reused without downloading again;
 * - otherwise downloaded and stored by content hash, which at least dedupes the disk copies.
 * Downloads go to a temporary name and are renamed into place, so a crash or a concurrent worker
 * never leaves a partial file under a final name.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { ConfigError, ModelError, NotFoundError, TransientError } from '../../shared/errors.js';
import type { Architecture } from './architecture.js';
import type { KerasTopology } from './keras-config.js';
import type { KerasArchitecture } from '../../shared/model-options.js';
import { readKerasModel } from './hdf5.js';
import type { ModelInput } from './graph/from-sequential.js';
import { importOnnx } from './graph/onnx-import.js';
import { describeSource, parseWeightSource, resolveRelative, type WeightSource } from '../../shared/model-uri.js';
import type { ModelSpec } from './spec.js';
import { readTfjsModel } from './tfjs-layers.js';

/** The storage layer's object read, injected so this module does not depend on it. */
export type GetObject = (bucket: string, key: string) => Promise<Uint8Array>;
/** Optional: the object's ETag without downloading it, for cache hits on S3. */
export type HeadObject = (bucket: string, key: string) => Promise<{ etag?: string }>;

export interface WeightSourceDeps {
  /** Required for `s3://` sources. */
  getObject?: GetObject;
  headObject?: HeadObject;
  /** Default: global `fetch`. */
  fetch?: typeof globalThis.fetch;
}

export type WeightsFormat = 'auto' | 'keras-h5' | 'tfjs-layers' | 'onnx';

export interface LoadModelOptions {
  /** Download cache. Default `$XDG_CACHE_HOME/gradcam-audit/weights`, else `~/.cache/gradcam-audit/weights`. */
  cacheDir?: string;
  /** Default `auto`: by extension (.h5/.hdf5 vs .json), else by the file's first bytes. */
  format?: WeightsFormat;
  /** Architecture for weights-only HDF5 files. Default VGG16. Ignored for TF.js models. */
  architecture?: Architecture;
  /** Topology for weights-only HDF5 files, any Keras layout. Wins over `architecture`. */
  topology?: KerasTopology;
  /** `--architecture`: a `keras.applications` layout by name for weights-only HDF5 files (applications/). Default VGG16. */
  kerasArchitecture?: KerasArchitecture;
  /** `[height, width]` of the `kerasArchitecture` layout. Default 224x224. */
  inputSize?: [number, number];
}

export function defaultWeightsCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(base, 'gradcam-audit', 'weights');
}

export { describeSource, parseWeightSource, resolveRelative, type WeightSource } from '../../shared/model-uri.js';

/** Load a model from any supported source and format: a graph for ONNX files and Keras graphs, a sequential spec for Keras chains. */
export async function loadModel(source: string, deps: WeightSourceDeps = {}, options: LoadModelOptions = {}): Promise<ModelInput> {
  const parsed = parseWeightSource(source);
  const format = options.format ?? 'auto';
  if (format === 'onnx' || (format === 'auto' && formatFromName(parsed) === 'onnx')) return loadOnnx(parsed, deps, options.cacheDir ?? defaultWeightsCacheDir());
  return loadKeras(parsed, deps, options);
}

async function loadOnnx(parsed: WeightSource, deps: WeightSourceDeps, cacheDir: string): Promise<ModelInput> {
  const bytes = await readFile(await localCopy(parsed, deps, cacheDir));
  const file = parsed.kind === 'file' ? parsed.path : parsed.kind === 's3' ? parsed.key : new URL(parsed.url).pathname;
  return importOnnx(bytes, {
    source: describeSource(parsed),
    name: basename(file).replace(/\.onnx$/i, ''),
    // External data (`model.onnx.data`) lies next to the model, in the same store.
    readExternal: async (location) => readFile(await localCopy(resolveRelative(parsed, location), deps, cacheDir)),
  });
}

/** Load a sequential Keras model (HDF5 or TF.js Layers) as a spec; other Keras topologies are refused (use `loadModel`). */
export async function loadModelSpec(source: string, deps: WeightSourceDeps = {}, options: LoadModelOptions = {}): Promise<ModelSpec> {
  const parsed = parseWeightSource(source);
  const model = await loadKeras(parsed, deps, options);
  if ('nodes' in model) throw new ModelError(`${describeSource(parsed)}: model "${model.name}" is not a sequential chain; load it with loadModel`);
  return model;
}

async function loadKeras(parsed: WeightSource, deps: WeightSourceDeps, options: LoadModelOptions): Promise<ModelInput> {
  const cacheDir = options.cacheDir ?? defaultWeightsCacheDir();
  const label = describeSource(parsed);
  let format = options.format ?? 'auto';
  if (format === 'auto') format = formatFromName(parsed);
  if (format === 'onnx') throw new ConfigError('--weights', `${label} is an ONNX file; load it with loadModel`);
  if (format === 'tfjs-layers') return loadTfjs(parsed, deps, cacheDir);
  // HDF5 needs a real file: h5wasm reads the host file system directly.
  const local = await localCopy(parsed, deps, cacheDir);
  if (format === 'auto') format = await sniffFormat(local, label);
  if (format === 'tfjs-layers') return loadTfjs(parsed, deps, cacheDir, await readFile(local, 'utf8'));
  const topology = options.topology ?? (options.architecture ? { kind: 'sequential' as const, architecture: options.architecture } : undefined);
  return readKerasModel(local, { source: label, topology, architecture: options.kerasArchitecture, inputSize: options.inputSize });
}

function formatFromName(source: WeightSource): WeightsFormat {
  const name = source.kind === 'file' ? source.path : source.kind === 's3' ? source.key : new URL(source.url).pathname;
  const ext = extname(name).toLowerCase();
  if (ext === '.h5' || ext === '.hdf5') return 'keras-h5';
  if (ext === '.json') return 'tfjs-layers';
  if (ext === '.onnx') return 'onnx';
  if (ext === '.keras') {
    throw new ConfigError('--weights', `${name}: Keras 3 .keras archives are not supported; save weights as .h5 (model.save_weights("x.weights.h5") is Keras 3 too) or convert to TF.js Layers`);
  }
  return 'auto';
}

async function sniffFormat(path: string, label: string): Promise<WeightsFormat> {
  const handle = await open(path, 'r');
  try {
    const head = Buffer.alloc(8);
    const { bytesRead } = await handle.read(head, 0, 8, 0);
    if (bytesRead >= 8 && head.toString('latin1') === '\x89HDF\r\n\x1a\n') return 'keras-h5';
    if (head.subarray(0, bytesRead).toString('utf8').trimStart().startsWith('{')) return 'tfjs-layers';
  } finally {
    await handle.close();
  }
  throw new ModelError(`${label}: neither a Keras HDF5 file nor a TF.js model.json (name it .h5 or .json, or check the file)`);
}

async function loadTfjs(parsed: WeightSource, deps: WeightSourceDeps, cacheDir: string, text?: string): Promise<ModelInput> {
  // model.json is small and is what changes when a model is replaced: always read it fresh.
  const modelJson = text ?? Buffer.from(await readBytes(parsed, deps)).toString('utf8');
  const readShard = async (relative: string): Promise<Uint8Array> => {
    const shard = resolveRelative(parsed, relative);
    return readFile(await localCopy(shard, deps, cacheDir));
  };
  return readTfjsModel(modelJson, readShard, { source: describeSource(parsed) });
}

/** The bytes of a (small) file from any source, uncached. */
async function readBytes(source: WeightSource, deps: WeightSourceDeps): Promise<Uint8Array> {
  if (source.kind === 'file') return readLocal(source.path);
  if (source.kind === 's3') return requireGetObject(deps)(source.bucket, source.key);
  const response = await httpGet(source.url, deps);
  return new Uint8Array(await response.arrayBuffer());
}

async function readLocal(path: string): Promise<Uint8Array> {
  await requireWeightsFile(path);
  return readFile(path);
}

/**
 * A local weights path must be a readable file. A directory is a common slip (the folder of a
 * TF.js export): name it and the weights files inside it, rather than fail on EISDIR.
 */
async function requireWeightsFile(path: string): Promise<void> {
  let info: Awaited<ReturnType<typeof stat>>;
  try {
    info = await stat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`weights file not found: ${path}`, { cause: err });
    throw new ConfigError('--weights', `cannot read ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (info.isFile()) return;
  if (!info.isDirectory()) throw new ConfigError('--weights', `${path} is not a regular file`);
  const inside = (await readdir(path).catch(() => [] as string[])).filter((n) => n === 'model.json' || /\.(h5|hdf5)$/i.test(n)).sort();
  const hint = inside.length > 0 ? `; did you mean ${inside.slice(0, 3).map((n) => join(path, n)).join(' or ')}?` : '; pass a Keras .h5 file or a TF.js model.json';
  throw new ConfigError('--weights', `${path} is a directory, not a weights file${hint}`);
}

/** A local path holding the file: the file itself, or a cached download. */
async function localCopy(source: WeightSource, deps: WeightSourceDeps, cacheDir: string): Promise<string> {
  if (source.kind === 'file') {
    await requireWeightsFile(source.path);
    return source.path;
  }
  const label = describeSource(source);
  const name = safeName(basename(source.kind === 's3' ? source.key : new URL(source.url).pathname) || 'weights');
  const etag = await remoteEtag(source, deps);
  if (etag) {
    const path = join(cacheDir, sha256(`${label}\n${etag}`), name);
    if (await exists(path)) return path;
    await download(source, deps, path);
    return path;
  }
  // No ETag: download, then file the copy under its content hash.
  const temp = join(cacheDir, `.incoming-${randomBytes(8).toString('hex')}`, name);
  const hash = await download(source, deps, temp);
  const path = join(cacheDir, `sha256-${hash}`, name);
  if (await exists(path)) {
    await rm(dirname(temp), { recursive: true, force: true });
  } else {
    await mkdir(dirname(path), { recursive: true });
    await rename(temp, path);
    await rm(dirname(temp), { recursive: true, force: true });
  }
  return path;
}

async function remoteEtag(source: WeightSource, deps: WeightSourceDeps): Promise<string | null> {
  if (source.kind === 's3') return deps.headObject ? ((await deps.headObject(source.bucket, source.key)).etag ?? null) : null;
  if (source.kind !== 'http') return null;
  try {
    const response = await (deps.fetch ?? fetch)(source.url, { method: 'HEAD' });
    return response.ok ? response.headers.get('etag') : null;
  } catch {
    // Some servers refuse HEAD; the GET that follows reports real failures.
    return null;
  }
}

/** Download to `path` (atomically: temp name, then rename); returns the sha256 of the content. */
async function download(source: WeightSource, deps: WeightSourceDeps, path: string): Promise<string> {
  await mkdir(dirname(path), { recursive: true });
  const temp = `${path}.part-${process.pid}-${randomBytes(4).toString('hex')}`;
  const hash = createHash('sha256');
  try {
    if (source.kind === 's3') {
      const bytes = await requireGetObject(deps)(source.bucket, source.key);
      hash.update(bytes);
      const handle = await open(temp, 'w');
      try {
        await handle.writeFile(bytes);
      } finally {
        await handle.close();
      }
    } else if (source.kind === 'http') {
      const response = await httpGet(source.url, deps);
      const expected = Number(response.headers.get('content-length') ?? Number.NaN);
      let received = 0;
      const tap = new Transform({
        transform(chunk: Buffer, _enc, done) {
          received += chunk.length;
          hash.update(chunk);
          done(null, chunk);
        },
      });
      try {
        await pipeline(Readable.fromWeb(response.body as WebReadableStream), tap, createWriteStream(temp));
      } catch (err) {
        throw new TransientError(`download of ${source.url} broke off after ${received} bytes: ${(err as Error).message}`, { cause: err });
      }
      if (Number.isFinite(expected) && received !== expected) {
        throw new TransientError(`download of ${source.url} is truncated: ${received} of ${expected} bytes`);
      }
    }
    await rename(temp, path);
  } finally {
    await rm(temp, { force: true });
  }
  return hash.digest('hex');
}

async function httpGet(url: string, deps: WeightSourceDeps): Promise<Response> {
  let response: Response;
  try {
    response = await (deps.fetch ?? fetch)(url);
  } catch (err) {
    throw new TransientError(`cannot reach ${url}: ${(err as Error).message}`, { cause: err });
  }
  if (response.ok && response.body) return response;
  const reason = `${url} answered HTTP ${response.status}`;
  if (response.status === 404 || response.status === 410) throw new NotFoundError(`weights not found: ${reason}`);
  if (response.status >= 500 || response.status === 429) throw new TransientError(reason);
  throw new ModelError(`cannot download weights: ${reason}`);
}

function requireGetObject(deps: WeightSourceDeps): GetObject {
  if (!deps.getObject) throw new ConfigError('--weights', 's3:// weights need S3 access, but no getObject was provided');
  return deps.getObject;
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** A file name safe for the cache directory whatever the remote key was. */
function safeName(name: string): string {
  return name.replace(/[^A-Za-z0-9._-]/g, '_').replace(/^\.+/, '_') || 'weights';
}
