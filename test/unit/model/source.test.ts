import { createHash } from 'node:crypto';
import { readFile, readdir, rename } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { createServer } from 'node:http';
import type { Server } from 'node:http';
import { join, relative } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, ModelError, NotFoundError, TransientError } from '../../../src/shared/errors.js';
import { loadModelSpec, parseWeightSource, resolveRelative } from '../../../src/worker/model/source.js';
import { vggShapedArchitecture, vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { writeKerasHdf5 } from '../../../scripts/weights/write-keras-hdf5.js';
import { writeTfjsLayers } from '../../../scripts/weights/write-tfjs-layers.js';
import { expectSameSpec, withTempDir } from './helpers/specs.js';

const OPTIONS = { inputShape: [16, 16, 3] as [number, number, number], blocks: [{ filters: 4, convs: 1 }], denseUnits: [8], classes: 3 };
const spec = vggShapedSpec({ ...OPTIONS, seed: 31 });
const arch = vggShapedArchitecture(OPTIONS);

interface FileServer {
  url: string;
  /** Request log: `METHOD /path`. */
  requests: string[];
}

let server: Server | null = null;
afterEach(async () => {
  await new Promise<void>((done) => (server ? server.close(() => done()) : done()));
  server = null;
});

/** A real HTTP server over a directory, with ETags or without, optionally cutting bodies short. */
async function serve(root: string, options: { etag: boolean; truncate?: boolean }): Promise<FileServer> {
  const requests: string[] = [];
  server = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    void (async () => {
      try {
        const body = await readFile(join(root, decodeURIComponent(req.url ?? '/')));
        const headers: Record<string, string> = { 'content-length': String(body.length) };
        if (options.etag) headers.etag = `"${createHash('md5').update(body).digest('hex')}"`;
        res.writeHead(200, headers);
        if (req.method === 'HEAD') res.end();
        else if (options.truncate) {
          // Promise the whole body, send half, then drop the connection.
          res.write(body.subarray(0, body.length >> 1), () => res.destroy());
        }
        else res.end(body);
      } catch {
        res.writeHead(404).end();
      }
    })();
  });
  await new Promise<void>((done) => server!.listen(0, '127.0.0.1', done));
  return { url: `http://127.0.0.1:${(server!.address() as AddressInfo).port}`, requests };
}

describe('weight sources', () => {
  it('parses paths, s3:// and http(s) sources and resolves shards relative to model.json', () => {
    expect(parseWeightSource('s3://models/vgg/model.json')).toEqual({ kind: 's3', bucket: 'models', key: 'vgg/model.json' });
    expect(parseWeightSource('https://x.test/a/model.json')).toEqual({ kind: 'http', url: 'https://x.test/a/model.json' });
    expect(parseWeightSource('file:///tmp/w.h5')).toEqual({ kind: 'file', path: '/tmp/w.h5' });
    expect(() => parseWeightSource('s3://bucket-only')).toThrow(ConfigError);
    expect(() => parseWeightSource('gs://b/k')).toThrow(/unsupported scheme/);
    expect(resolveRelative({ kind: 's3', bucket: 'b', key: 'm/v1/model.json' }, 'group1-shard1of2.bin')).toEqual({ kind: 's3', bucket: 'b', key: 'm/v1/group1-shard1of2.bin' });
    expect(resolveRelative({ kind: 'http', url: 'https://x.test/a/model.json' }, 'shard.bin')).toEqual({ kind: 'http', url: 'https://x.test/a/shard.bin' });
    expect(() => resolveRelative({ kind: 's3', bucket: 'b', key: 'model.json' }, '../../etc/passwd')).toThrow(/leaves the bucket/);
    expect(() => resolveRelative({ kind: 'http', url: 'https://x.test/model.json' }, 'https://evil.test/x.bin')).toThrow(/must be relative/);
  });

  it('detects the format by content when the name does not tell', async () => {
    await withTempDir(async (dir) => {
      await writeKerasHdf5(join(dir, 'weights.bin'), spec, { style: 'modern' });
      expectSameSpec(await loadModelSpec(join(dir, 'weights.bin'), {}, { architecture: arch }), spec);
      await expect(loadModelSpec(join(dir, 'nothing.h5'))).rejects.toBeInstanceOf(NotFoundError);
      await expect(loadModelSpec(join(dir, 'model.keras'))).rejects.toThrow(/Keras 3 \.keras archives are not supported/);
    });
  });

  it('loads s3:// HDF5 and TF.js models through an injected getObject, and caches by ETag', async () => {
    await withTempDir(async (dir) => {
      await writeKerasHdf5(join(dir, 'src', 'w.h5'), spec, { style: 'legacy' });
      await writeTfjsLayers(join(dir, 'src', 'tfjs'), spec, { shardBytes: 2048 });
      const gets: string[] = [];
      const getObject = async (bucket: string, key: string): Promise<Uint8Array> => {
        gets.push(`${bucket}/${key}`);
        if (bucket !== 'models') throw new NotFoundError(`no bucket ${bucket}`);
        return readFile(join(dir, 'src', key));
      };
      const headObject = async (_bucket: string, key: string): Promise<{ etag: string }> => ({ etag: `"v1-${key}"` });
      const cacheDir = join(dir, 'cache');
      const h5 = await loadModelSpec('s3://models/w.h5', { getObject, headObject }, { cacheDir, architecture: arch });
      expectSameSpec(h5, spec);
      expect(h5.source).toBe('s3://models/w.h5');
      await loadModelSpec('s3://models/w.h5', { getObject, headObject }, { cacheDir, architecture: arch });
      expect(gets.filter((g) => g === 'models/w.h5')).toHaveLength(1);

      const tfjs = await loadModelSpec('s3://models/tfjs/model.json', { getObject, headObject }, { cacheDir });
      expectSameSpec(tfjs, spec);
      expect(gets.some((g) => g === 'models/tfjs/group1-shard5of5.bin')).toBe(true);
      await expect(loadModelSpec('s3://models/w.h5', {}, { cacheDir })).rejects.toThrow(/no getObject was provided/);
    });
  });

  it('without an ETag, stores s3 downloads under their content hash', async () => {
    await withTempDir(async (dir) => {
      await writeKerasHdf5(join(dir, 'w.h5'), spec, { style: 'modern' });
      const bytes = await readFile(join(dir, 'w.h5'));
      const cacheDir = join(dir, 'cache');
      await loadModelSpec('s3://b/w.h5', { getObject: async () => bytes }, { cacheDir, architecture: arch });
      expect(await readdir(cacheDir)).toEqual([`sha256-${createHash('sha256').update(bytes).digest('hex')}`]);
    });
  });

  it('downloads over HTTP once per ETag and resolves TF.js shards relative to the URL', async () => {
    await withTempDir(async (dir) => {
      await writeKerasHdf5(join(dir, 'w.h5'), spec, { style: 'legacy' });
      await writeTfjsLayers(join(dir, 'm'), spec, { shardBytes: 4096 });
      const http = await serve(dir, { etag: true });
      const cacheDir = join(dir, 'cache');
      expectSameSpec(await loadModelSpec(`${http.url}/w.h5`, {}, { cacheDir, architecture: arch }), spec);
      expectSameSpec(await loadModelSpec(`${http.url}/w.h5`, {}, { cacheDir, architecture: arch }), spec);
      expect(http.requests.filter((r) => r === 'GET /w.h5')).toHaveLength(1);
      expect(http.requests.filter((r) => r === 'HEAD /w.h5')).toHaveLength(2);
      expectSameSpec(await loadModelSpec(`${http.url}/m/model.json`, {}, { cacheDir }), spec);
      expect(http.requests).toContain('GET /m/group1-shard3of3.bin');
      await expect(loadModelSpec(`${http.url}/missing.h5`, {}, { cacheDir })).rejects.toBeInstanceOf(NotFoundError);
    });
  });

  it('treats a body cut short as a transient failure and caches nothing', async () => {
    await withTempDir(async (dir) => {
      await writeKerasHdf5(join(dir, 'w.h5'), spec, { style: 'legacy' });
      const http = await serve(dir, { etag: false, truncate: true });
      const cacheDir = join(dir, 'cache');
      const err = await loadModelSpec(`${http.url}/w.h5`, {}, { cacheDir, architecture: arch }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(TransientError);
      expect((err as Error).message).toMatch(/w\.h5/);
      const left = await readdir(cacheDir, { recursive: true });
      expect(left.filter((f) => f.endsWith('.h5')).map((f) => relative(cacheDir, join(cacheDir, f)))).toEqual([]);
    });
  });

  it('names --weights when it points at a directory, and suggests the weights files inside it', async () => {
    await withTempDir(async (dir) => {
      await writeTfjsLayers(join(dir, 'tfjs'), spec);
      for (const path of [join(dir, 'tfjs'), dir]) {
        const err = await loadModelSpec(path, {}, {}).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ConfigError);
        expect((err as ConfigError).variable).toBe('--weights');
        expect((err as Error).message).toContain(`${path} is a directory`);
        expect((err as Error).message).not.toContain('EISDIR');
      }
      const inside = await loadModelSpec(join(dir, 'tfjs'), {}, {}).catch((e: Error) => e.message);
      expect(inside).toContain(join(dir, 'tfjs', 'model.json'));
      // A directory named like a weights file is no better.
      const named = join(dir, 'tfjs.h5');
      await rename(join(dir, 'tfjs'), named);
      await expect(loadModelSpec(named, {}, {})).rejects.toThrow(`${named} is a directory`);
    });
  });

  it('reports a file forced into the wrong format as a model error', async () => {
    await withTempDir(async (dir) => {
      await writeKerasHdf5(join(dir, 'w.h5'), spec, { style: 'legacy' });
      await rename(join(dir, 'w.h5'), join(dir, 'w.weights'));
      await expect(loadModelSpec(join(dir, 'w.weights'), {}, { format: 'tfjs-layers' })).rejects.toBeInstanceOf(ModelError);
    });
  });
});
