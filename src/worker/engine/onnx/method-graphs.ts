/**
 * The compiled graphs of every method an engine serves, all obtained when the engine is created,
 * so that serving never compiles. Compiling is synchronous and takes seconds on VGG16-sized models;
 * done on a method's first use it stalled whatever thread ran the engine (the main thread in
 * `explain` and `doctor`), and with the cache off every reopen after an eviction compiled again.
 *
 * Only compiling happens up front: the sessions still open on first use (session-pool.ts), since
 * each holds a copy of the weights. The graphs live in the graph cache (graph-cache.ts) when it is
 * on, else in a temporary cache private to the engine, deleted by `dispose`. Where a cache cannot
 * be written, a graph is kept in memory (one more copy of the weights, said in a warning).
 */
import type { CamMethod } from '../../../shared/explain-options.js';
import type { Logger } from '../../../shared/logger.js';
import type { ModelGraph } from '../../model/graph/ir.js';
import { compileGraph } from './compile-graph.js';
import type { CompileOptions } from './compile-graph.js';
import { graphCacheKey, temporaryGraphCache } from './graph-cache.js';
import type { GraphCache } from './graph-cache.js';

/** How a graph was obtained, for logs and benchmarks. */
export interface GraphSource {
  cached: boolean;
  path: string | null;
  compileMs: number;
}

/** What the engine's graphs cost so far, for logs, benchmarks and tests. */
export interface GraphStats {
  /** Graphs compiled by this engine (at creation, or again if a cached file vanished). */
  compiled: number;
  /** Their total compile time. */
  compileMs: number;
  /** Where the graph files are (some may be held in memory instead, where it could not be written). */
  dir: string;
  /** Whether `dir` is the engine's own temporary cache (the graph cache is off). */
  temporary: boolean;
}

/** A method's graph (null: the forward-only graph), as a file path or as the bytes themselves. */
type Model = string | Uint8Array;

interface Entry {
  key: string;
  options: CompileOptions;
  /** The bytes, where no cache could take them. */
  bytes: Uint8Array | null;
  source: GraphSource;
}

export class MethodGraphs {
  private readonly entries = new Map<CamMethod | null, Entry>();
  private compiled = 0;
  private compileMs = 0;
  private removed = false;

  private constructor(
    private readonly spec: ModelGraph,
    private readonly cache: GraphCache,
    private readonly temporary: { remove(): Promise<void> } | null,
    private readonly logger: Logger,
  ) {}

  /**
   * Compile (or find in `cache`) the graph of each of `methods` (null: the forward-only graph).
   * `cache` null: a temporary cache of the engine's own.
   */
  static async create(
    spec: ModelGraph,
    methods: ReadonlyArray<CamMethod | null>,
    base: Pick<CompileOptions, 'layer' | 'precision'>,
    cache: GraphCache | null,
    logger: Logger,
  ): Promise<MethodGraphs> {
    const temporary = cache ? null : await temporaryGraphCache();
    if (temporary && temporary.orphansRemoved.length > 0) {
      logger.info({ removed: temporary.orphansRemoved }, `deleted ${temporary.orphansRemoved.length} temporary ONNX graph cache(s) left by processes that are gone`);
    }
    const graphs = new MethodGraphs(spec, cache ?? (temporary as NonNullable<typeof temporary>).cache, temporary, logger);
    try {
      for (const method of methods) {
        const options: CompileOptions = { ...base, ...(method ? { kind: 'explain', method } : { kind: 'forward' }) };
        const key = graphCacheKey(spec, options);
        const { model, source } = await graphs.load(key, options);
        graphs.entries.set(method, { key, options, bytes: typeof model === 'string' ? null : model, source });
      }
    } catch (err) {
      await graphs.dispose();
      throw err;
    }
    const stats = graphs.stats();
    logger.info(
      { methods: methods.map((m) => m ?? 'forward'), compiled: stats.compiled, compileMs: Math.round(stats.compileMs), dir: stats.dir, temporary: stats.temporary },
      `ONNX graphs ready for ${methods.length} method(s): ${stats.compiled} compiled, ${methods.length - stats.compiled} from the cache`,
    );
    return graphs;
  }

  /** How the graph of `method` was obtained at creation. */
  source(method: CamMethod | null): GraphSource {
    return this.entry(method).source;
  }

  /**
   * The graph of `method`, to open a session on: from the cache (a file lookup) or memory, never
   * compiled unless its file vanished since creation (a cache cleanup under a running worker).
   */
  async model(method: CamMethod | null): Promise<{ model: Model; source: GraphSource }> {
    const entry = this.entry(method);
    if (entry.bytes) return { model: entry.bytes, source: { cached: true, path: null, compileMs: 0 } };
    const hit = await this.cache.lookup(entry.key);
    if (hit) return { model: hit, source: { cached: true, path: hit, compileMs: 0 } };
    this.logger.warn({ method, dir: this.cache.dir }, `the compiled ONNX graph of ${method ?? 'the forward pass'} is gone from the graph cache; compiling it again`);
    const loaded = await this.load(entry.key, entry.options);
    if (typeof loaded.model !== 'string') entry.bytes = loaded.model;
    return loaded;
  }

  stats(): GraphStats {
    return { compiled: this.compiled, compileMs: this.compileMs, dir: this.cache.dir, temporary: this.temporary !== null };
  }

  /** Delete the temporary cache, if the engine has one. Idempotent. */
  async dispose(): Promise<void> {
    this.entries.clear();
    if (this.removed || !this.temporary) return;
    this.removed = true;
    await this.temporary.remove();
  }

  private entry(method: CamMethod | null): Entry {
    const entry = this.entries.get(method);
    if (!entry) throw new Error(`no compiled ONNX graph for ${method ?? 'the forward pass'}`);
    return entry;
  }

  /** Compile, or reuse the cached graph. Returns a file path (cache) or the bytes (cache not writable). */
  private async load(key: string, options: CompileOptions): Promise<{ model: Model; source: GraphSource }> {
    const hit = await this.cache.lookup(key);
    if (hit) {
      this.logger.debug({ path: hit }, 'ONNX graph cache hit');
      return { model: hit, source: { cached: true, path: hit, compileMs: 0 } };
    }
    const started = performance.now();
    const compiled = compileGraph(this.spec, options);
    const compileMs = performance.now() - started;
    this.compiled++;
    this.compileMs += compileMs;
    this.logger.info({ layer: options.layer, kind: options.kind, method: options.method ?? null, bytes: compiled.bytes.length, compileMs: Math.round(compileMs) }, 'compiled ONNX graph');
    try {
      const path = await this.cache.store(key, compiled.bytes);
      return { model: path, source: { cached: false, path, compileMs } };
    } catch (err) {
      // A read-only or full cache must not stop the worker: run from memory and say why.
      this.logger.warn({ err, dir: this.cache.dir }, 'could not write the ONNX graph cache; keeping this graph in memory (one more copy of the weights)');
      return { model: compiled.bytes, source: { cached: false, path: null, compileMs } };
    }
  }
}
