/**
 * On-disk cache of compiled ONNX graphs, keyed by a content hash of everything that shapes the
 * graph: the weights hash, the architecture (nodes and constant shapes), the CAM layer, the graph
 * kind and method, and the compiler version. A worker restart then skips compilation (VGG16:
 * several seconds and a second 553 MB copy of the weights).
 */
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelInput } from '../../model/graph/from-sequential.js';
import { toModelGraph } from '../../model/graph/from-sequential.js';
import { COMPILER_VERSION, type CompileOptions } from './compile-graph.js';

/** sha256 over the graph's inputs. Changing any of them yields another file. */
export function graphCacheKey(model: ModelInput, options: CompileOptions): string {
  const spec = toModelGraph(model);
  const constants = Object.entries(spec.constants).map(([name, c]) => [name, c.dtype, c.dims, c.dtype === 'int64' ? c.data : null]);
  const architecture = { input: spec.input, output: spec.output, nodes: spec.nodes, constants };
  const key = {
    compilerVersion: COMPILER_VERSION,
    weightsHash: spec.weightsHash,
    name: spec.name,
    inputShape: spec.inputShape,
    architecture,
    layer: options.layer,
    kind: options.kind,
    method: options.kind === 'explain' ? (options.method ?? 'gradcam') : null,
    precision: options.precision ?? 'fp32',
  };
  return createHash('sha256').update(JSON.stringify(key)).digest('hex');
}

export interface GraphCache {
  /** The directory of the graph files. */
  readonly dir: string;
  /** The cached file's path, or null on a miss. */
  lookup(key: string): Promise<string | null>;
  /** Store bytes under `key` atomically and return the path. */
  store(key: string, bytes: Uint8Array): Promise<string>;
}

export function diskGraphCache(dir: string): GraphCache {
  const pathOf = (key: string): string => join(dir, `${key}.onnx`);
  return {
    dir,
    async lookup(key) {
      try {
        // Only whole files ever get this name (write-then-rename), so a non-empty file is complete.
        const info = await stat(pathOf(key));
        return info.isFile() && info.size > 0 ? pathOf(key) : null;
      } catch {
        return null;
      }
    },
    async store(key, bytes) {
      await mkdir(dir, { recursive: true });
      // Write-then-rename: concurrent workers on one node never see a half-written graph.
      const tmp = `${pathOf(key)}.${process.pid}.${Date.now()}.tmp`;
      try {
        await writeFile(tmp, bytes);
        await rename(tmp, pathOf(key));
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
      return pathOf(key);
    },
  };
}

/** A graph cache private to one engine, in a directory of its own that `remove` deletes. */
export interface TemporaryGraphCache {
  cache: GraphCache;
  remove(): Promise<void>;
  /** Directories of processes that died without disposing their engine, deleted on creation. */
  orphansRemoved: string[];
}

const TEMPORARY_PREFIX = 'gca-onnx-graphs-';

/**
 * With the cache off (`--onnx-cache-dir off`) the engine still compiles every method's graph at
 * creation (method-graphs.ts), and keeps them on disk here rather than in memory: each graph holds
 * a copy of the weights (VGG16: 528 MiB each, 2.6 GiB for the five gradient methods), and memory
 * is what `--onnx-max-sessions` exists to save. Under the OS temporary directory (`TMPDIR`), named
 * for the process: a worker killed before dispose leaves its directory behind, and the next engine
 * created on the machine deletes those of processes no longer alive (a crash loop would otherwise
 * fill the disk).
 */
export async function temporaryGraphCache(root = tmpdir()): Promise<TemporaryGraphCache> {
  const orphansRemoved = await removeOrphans(root);
  const dir = await mkdtemp(join(root, `${TEMPORARY_PREFIX}${process.pid}-`));
  return { cache: diskGraphCache(dir), remove: () => rm(dir, { recursive: true, force: true }), orphansRemoved };
}

/** Delete the temporary caches of processes that are gone. A live one (or one we cannot tell) is kept. */
async function removeOrphans(root: string): Promise<string[]> {
  const names = await readdir(root).catch(() => [] as string[]);
  const removed: string[] = [];
  for (const name of names) {
    const pid = new RegExp(`^${TEMPORARY_PREFIX}(\\d+)-`).exec(name)?.[1];
    if (pid === undefined || Number(pid) === process.pid || isAlive(Number(pid))) continue;
    const dir = join(root, name);
    // Another engine may be deleting it at the same moment: force, and never fail creation for it.
    await rm(dir, { recursive: true, force: true }).then(
      () => removed.push(dir),
      () => undefined,
    );
  }
  return removed;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: the process exists but belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
