/**
 * Reading what sits beside a model's weights (model card, labels) and telling which version of the
 * weights a source holds, from a local path, S3 or http(s). Both the producer (`enqueue` names the
 * model a run needs) and the worker (which checks it serves that model) use this, so the same
 * source always yields the same fingerprint. Weights themselves are loaded, and cached, by
 * `src/worker/model/source.ts`.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, readFile, stat } from 'node:fs/promises';
import { ConfigError, NotFoundError, TransientError } from './errors.js';
import { describeSource, type WeightSource } from './model-uri.js';
import type { ObjectStore } from './storage/object-store.js';

/** Model cards and labels are small; anything larger is not one. */
export const MAX_SIDE_FILE_BYTES = 4 * 1024 * 1024;

export interface ModelFileDeps {
  /** Needed for s3:// sources. */
  store?: Pick<ObjectStore, 'get' | 'getStream' | 'head'>;
  /** Default: global `fetch`. */
  fetch?: typeof globalThis.fetch;
}

export interface ModelFiles {
  /** A small file's bytes, or null when it does not exist. */
  read(source: WeightSource): Promise<Uint8Array | null>;
  /** Up to `bytes` leading bytes of a file that may be large (format and ONNX producer sniffing). */
  head(source: WeightSource, bytes: number): Promise<Uint8Array>;
  /**
   * Which version of the file this is: `etag:<ETag>` for S3 and for http(s) servers that send an
   * ETag, else `sha256:<hex>` of the content. Equal fingerprints mean the same bytes.
   */
  fingerprint(source: WeightSource): Promise<string>;
}

export function modelFiles(deps: ModelFileDeps = {}): ModelFiles {
  const doFetch = deps.fetch ?? ((input: string, init?: RequestInit) => fetch(input, init));
  const store = (): NonNullable<ModelFileDeps['store']> => {
    if (!deps.store) throw new ConfigError('--weights', 's3:// models need S3 access (AWS_* settings), but no S3 client was configured');
    return deps.store;
  };
  const httpGet = async (url: string, init?: RequestInit): Promise<Response | null> => {
    let response: Response;
    try {
      response = await doFetch(url, init);
    } catch (err) {
      throw new TransientError(`cannot reach ${url}: ${(err as Error).message}`, { cause: err });
    }
    if (response.status === 404 || response.status === 410) return null;
    if (!response.ok) throw new TransientError(`${url} answered HTTP ${response.status}`);
    return response;
  };

  return {
    async read(source) {
      if (source.kind === 'file') {
        try {
          const bytes = await readFile(source.path);
          if (bytes.length > MAX_SIDE_FILE_BYTES) throw new ConfigError('model card', `${source.path} is ${bytes.length} bytes; a model card or labels file is at most ${MAX_SIDE_FILE_BYTES}`);
          return bytes;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return null;
          throw err;
        }
      }
      if (source.kind === 's3') {
        try {
          return (await store().get(source.bucket, source.key, { maxBytes: MAX_SIDE_FILE_BYTES })).body;
        } catch (err) {
          if (err instanceof NotFoundError) return null;
          throw err;
        }
      }
      const response = await httpGet(source.url);
      return response ? new Uint8Array(await response.arrayBuffer()) : null;
    },

    async head(source, bytes) {
      if (source.kind === 'file') {
        await requireFile(source.path);
        const handle = await open(source.path, 'r').catch((err: NodeJS.ErrnoException) => {
          if (err.code === 'ENOENT') throw new NotFoundError(`weights file not found: ${source.path}`, { cause: err });
          throw err;
        });
        try {
          const buffer = Buffer.alloc(bytes);
          const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
          return buffer.subarray(0, bytesRead);
        } finally {
          await handle.close();
        }
      }
      if (source.kind === 's3') {
        const { stream } = await store().getStream(source.bucket, source.key);
        return takeHead(stream, bytes, () => stream.destroy());
      }
      const response = await httpGet(source.url, { headers: { range: `bytes=0-${bytes - 1}` } });
      if (!response?.body) throw new NotFoundError(`model not found: ${source.url}`);
      const reader = response.body.getReader();
      const chunks: Uint8Array[] = [];
      let got = 0;
      while (got < bytes) {
        const { done, value } = await reader.read();
        if (done) break;
        chunks.push(value);
        got += value.length;
      }
      await reader.cancel().catch(() => undefined);
      return Buffer.concat(chunks).subarray(0, bytes);
    },

    async fingerprint(source) {
      if (source.kind === 's3') {
        const head = await store().head(source.bucket, source.key);
        if (!head) throw new NotFoundError(`weights not found: ${describeSource(source)}`);
        return `etag:${head.etag}`;
      }
      if (source.kind === 'http') {
        const response = await httpGet(source.url, { method: 'HEAD' }).catch(() => null);
        const etag = response?.headers.get('etag');
        // A weak ETag (W/"...") promises equivalence, not identical bytes: hash the content instead.
        if (etag && !etag.startsWith('W/')) return `etag:${etag.replace(/^"|"$/g, '')}`;
        const full = await httpGet(source.url);
        if (!full) throw new NotFoundError(`weights not found: ${source.url}`);
        return `sha256:${createHash('sha256').update(new Uint8Array(await full.arrayBuffer())).digest('hex')}`;
      }
      await requireFile(source.path);
      const hash = createHash('sha256');
      try {
        for await (const chunk of createReadStream(source.path)) hash.update(chunk as Buffer);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`weights file not found: ${source.path}`, { cause: err });
        throw err;
      }
      return `sha256:${hash.digest('hex')}`;
    },
  };
}

/** A local weights path must be a file; a directory (a TF.js export folder) is a common slip. */
async function requireFile(path: string): Promise<void> {
  const info = await stat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') throw new NotFoundError(`weights file not found: ${path}`, { cause: err });
    throw new ConfigError('--weights', `cannot read ${path}: ${err.message}`, { cause: err });
  });
  if (info.isDirectory()) throw new ConfigError('--weights', `${path} is a directory, not a weights file; pass the .h5, .onnx or TF.js model.json inside it`);
  if (!info.isFile()) throw new ConfigError('--weights', `${path} is not a regular file`);
}

async function takeHead(stream: AsyncIterable<unknown>, bytes: number, stop: () => void): Promise<Uint8Array> {
  const chunks: Buffer[] = [];
  let got = 0;
  for await (const chunk of stream) {
    const buffer = Buffer.from(chunk as Uint8Array);
    chunks.push(buffer);
    got += buffer.length;
    if (got >= bytes) break;
  }
  stop();
  return Buffer.concat(chunks).subarray(0, bytes);
}
