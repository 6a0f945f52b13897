/**
 * The ONNX Runtime engine: per CAM method, one session over a graph that computes logits,
 * probabilities and the CAMs of every requested target in a single run (see compile-graph.ts); at
 * most `maxSessions` of them open (session-pool.ts). TypeScript only packs
 * inputs, unpacks outputs and applies the post-processing shared with the TF.js engine.
 */
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import type { CamMethod } from '../../../shared/explain-options.js';
import { CAM_METHODS, needsGradient } from '../../../shared/explain-options.js';
import { InvalidInputError, ModelError } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/logger.js';
import { silentLogger } from '../../../shared/logger.js';
import type { ModelInput } from '../../model/graph/from-sequential.js';
import { toModelGraph } from '../../model/graph/from-sequential.js';
import { numClassesOf } from '../../model/graph/walker.js';
import { DEFAULT_CAM_POST_OPTIONS, postProcessCam } from '../cam-post.js';
import type { CamPostOptions } from '../cam-post.js';
import type { CamMap, Engine, EngineImageResult, EngineInfo, EngineRequest, PreprocessedImage } from '../engine.js';
import { validateRequest } from '../targets.js';
import { GRAPH_IO } from './compile-graph.js';
import { diskGraphCache } from './graph-cache.js';
import type { GraphCache } from './graph-cache.js';
import { MethodGraphs } from './method-graphs.js';
import type { GraphSource, GraphStats } from './method-graphs.js';
import { resolveOnnxRuntimeOptions } from './options.js';
import type { ExecutionProvider, OnnxRuntimeOptions } from './options.js';
import { describePlacement, readProfile, removeProfile, summarizePlacement } from './placement.js';
import type { NodePlacement } from './placement.js';
import { defaultProviderEnvironment, selectProviders } from './providers.js';
import type { ProviderEnvironment } from './providers.js';
import { isOnnxSupported } from './support.js';
import { SessionPool, sessionsAtOnce } from './session-pool.js';
import type { SessionKey, SessionPoolStats } from './session-pool.js';
import { explainGradientFree } from '../gradient-free/explain.js';
import { measureFaithfulness } from '../faithfulness.js';
import type { ForwardHost, ForwardRows } from '../gradient-free/forward-host.js';
import { UNGATED } from '../native-gate.js';
import type { NativeGate } from '../native-gate.js';

export interface OnnxEngineOptions {
  /** The model: a graph, or a sequential Keras spec (converted on entry). */
  spec: ModelInput;
  /** Target: node, tensor or Keras layer name; default the feature map the head pools (walker.ts). */
  layer?: string;
  /** Runtime settings; defaults in `defaultOnnxRuntimeOptions()`. */
  runtime?: Partial<OnnxRuntimeOptions>;
  /**
   * Methods the engine must serve. Each gradient one gets its own graph, compiled when the engine
   * is created (method-graphs.ts), and its own session, opened on first use, at most
   * `runtime.maxSessions` open at once (session-pool.ts); with none of them, the
   * graph is forward-only and runs any head, differentiable or not. The gradient-free methods are
   * always served. Default: every method.
   */
  methods?: CamMethod[];
  logger?: Logger;
  /** Degenerate-map thresholds; defaults in `DEFAULT_CAM_POST_OPTIONS`. */
  camPost?: CamPostOptions;
  /** Longest wait of `dispose` for batches in flight (session-pool.ts); default `SESSION_POOL_DEFAULTS.disposeWaitMs`. */
  disposeWaitMs?: number;
  /**
   * Every call into ONNX Runtime's native code (session create, run, release) goes through it, so
   * that a thread running this engine is never ended inside one (native-gate.ts). Default: none.
   */
  nativeGate?: NativeGate;
  /** Test seams. */
  cache?: GraphCache | null;
  providerEnvironment?: ProviderEnvironment;
}

export async function createOnnxEngine(options: OnnxEngineOptions): Promise<OnnxEngine> {
  const logger = options.logger ?? silentLogger();
  const gate = options.nativeGate ?? UNGATED;
  const runtime = resolveOnnxRuntimeOptions(options.runtime);
  const selection = await selectProviders(runtime.executionProviders, options.providerEnvironment ?? defaultProviderEnvironment(), runtime.deviceId);
  const providers = selection.providers;
  logger.info(
    { providers, gpus: selection.gpus, verdicts: selection.verdicts.map((v) => `${v.provider}: ${v.usable ? 'yes' : 'no'} (${v.reason})`) },
    `ONNX Runtime execution providers: ${providers.join(' > ')}`,
  );
  const graph = toModelGraph(options.spec);
  const methods = (options.methods ?? [...CAM_METHODS]).filter(needsGradient);
  const support = isOnnxSupported(graph, methods[0] ?? 'eigencam', options.layer);
  if (!support.ok) throw new ModelError(`the ONNX engine cannot run ${graph.name}: ${support.reason}`);
  const cache = options.cache !== undefined ? options.cache : runtime.cacheDir ? diskGraphCache(runtime.cacheDir) : null;
  // Every graph the engine may serve is compiled now, so serving never compiles (method-graphs.ts).
  const graphs = await MethodGraphs.create(graph, methods.length > 0 ? methods : [null], { layer: support.layer, precision: runtime.precision }, cache, logger);
  /** Open the session of one method, or of the forward-only graph, on its compiled graph. */
  const openSession = async (method: CamMethod | null, extra: ort.InferenceSession.SessionOptions = {}): Promise<{ session: ort.InferenceSession; source: GraphSource }> => {
    const { model, source } = await graphs.model(method);
    const opts = { ...sessionOptions(providers, runtime), ...extra };
    logger.info({ providers, method }, 'creating the ONNX Runtime session');
    const session = await gate.through(() => (typeof model === 'string' ? ort.InferenceSession.create(model, opts) : ort.InferenceSession.create(model, opts)));
    return { session, source };
  };

  // The first method's session opens now (so a graph or provider problem shows at start-up); the
  // others when first asked for.
  // Profile the first batch only: it is the one record of where each node ran (see placement.ts).
  const profilePrefix = runtime.checkPlacement ? join(tmpdir(), `gca-ort-placement-${process.pid}-${randomBytes(4).toString('hex')}`) : null;
  let session: ort.InferenceSession;
  try {
    ({ session } = await openSession(methods[0] ?? null, profilePrefix ? { enableProfiling: true, profileFilePrefix: profilePrefix } : {}));
  } catch (err) {
    await graphs.dispose();
    throw err;
  }
  const source = graphs.source(methods[0] ?? null);
  logger.info(
    { engine: 'onnx', providers, threads: runtime.intraOpThreads, precision: runtime.precision, layer: support.layer, method: methods[0] ?? null, cached: source.cached, compileMs: source.compileMs },
    'ONNX Runtime session ready',
  );
  const [h, w, c] = graph.inputShape;
  const outputMeta = session.outputMetadata.find((m) => m.name === GRAPH_IO.activation);
  const camShape = outputMeta && outputMeta.isTensor ? outputMeta.shape.slice(1) : [];
  const numClasses = numClassesOf(graph);
  const info: EngineInfo = {
    engine: 'onnx',
    // The precision is part of the backend's name, so every prediction's provenance carries it.
    backend: `onnx-${providers[0]}${runtime.precision === 'fp32' ? '' : `-${runtime.precision}`}`,
    device: deviceName(providers[0], runtime, selection.gpus),
    accelerator: providers[0] === 'cpu' ? 'cpu' : 'gpu',
    modelName: graph.name,
    layer: support.layer,
    inputHeight: h,
    inputWidth: w,
    numClasses,
    weightsHash: graph.weightsHash,
    precision: runtime.precision,
    sessions: sessionsAtOnce(runtime.maxSessions, methods.length),
  };
  const targetShape: [number, number, number] = [Number(camShape[1]), Number(camShape[2]), Number(camShape[0])];
  const sessions: MethodSessions = {
    methods,
    first: session,
    maxSessions: runtime.maxSessions,
    logger,
    disposeWaitMs: options.disposeWaitMs,
    gate,
    open: async (method) => {
      const opened = await openSession(method === 'forward' ? null : method);
      logger.info({ method, cached: opened.source.cached, compileMs: opened.source.compileMs }, `ONNX Runtime session for ${method} ready (one per CAM method in use)`);
      return opened.session;
    },
  };
  const engine = new OnnxEngine(sessions, graphs, info, [h, w, c], targetShape, options.camPost ?? DEFAULT_CAM_POST_OPTIONS, source);
  if (profilePrefix) info.placement = await checkPlacement(engine, session, profilePrefix, providers[0] !== 'cpu', logger);
  return engine;
}

/**
 * The engine's sessions: each gradient method has its own graph (compiled at creation), opened on first
 * use. Each holds its own copy of the weights, so at most `maxSessions` are open (session-pool.ts).
 */
export interface MethodSessions {
  /** Gradient methods the engine serves; empty: `first` is a forward-only graph. */
  methods: readonly CamMethod[];
  /** The session of `methods[0]` (or the forward-only one), open from the start. */
  first: ort.InferenceSession;
  /** Open the session of a method (again, after an eviction); `forward`: the forward-only graph's. */
  open: (method: SessionKey) => Promise<ort.InferenceSession>;
  /** Most method sessions open at once (`OnnxRuntimeOptions.maxSessions`). */
  maxSessions: number;
  /** Longest wait of dispose for batches in flight; default `SESSION_POOL_DEFAULTS.disposeWaitMs`. */
  disposeWaitMs?: number;
  /** The gate of the engine's native calls (native-gate.ts). */
  gate: NativeGate;
  logger: Logger;
}

/**
 * Run one warm-up image with the profiler on, stop profiling and report where the nodes ran. A
 * failure here only loses the report, never the engine.
 */
async function checkPlacement(engine: OnnxEngine, session: ort.InferenceSession, prefix: string, gpuRequested: boolean, logger: Logger): Promise<NodePlacement | undefined> {
  try {
    const [h, w, c] = [engine.info.inputHeight, engine.info.inputWidth, 3];
    await engine.predict([{ data: new Float32Array(h * w * c), height: h, width: w }]);
    session.endProfiling();
    const placement = summarizePlacement(readProfile(prefix), gpuRequested);
    const line = describePlacement(placement);
    if (placement.computeOnCpu > 0) {
      logger.warn({ placement }, `ONNX Runtime ran ${placement.computeOnCpu} compute node(s) on the CPU despite a GPU provider: ${line}`);
    } else {
      logger.info({ placement }, `ONNX Runtime node placement (first batch): ${line}`);
    }
    return placement;
  } catch (err) {
    logger.warn({ err }, 'could not read ONNX Runtime node placement; continuing without the report');
    // A failed first batch leaves the profiler on; stop it so the trace is written now, not at
    // release, and delete it: no trace may outlive this check.
    try {
      session.endProfiling();
    } catch {
      // already stopped
    }
    removeProfile(prefix);
    return undefined;
  }
}

export function sessionOptions(providers: ExecutionProvider[], runtime: OnnxRuntimeOptions): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: providers.map((p) => (p === 'cpu' ? 'cpu' : { name: p, deviceId: runtime.deviceId })),
    graphOptimizationLevel: 'all',
    intraOpNumThreads: runtime.intraOpThreads,
    // The graph is one chain of large ops; inter-op parallelism would only contend for cores.
    interOpNumThreads: 1,
    executionMode: 'sequential',
  };
}

function deviceName(provider: ExecutionProvider, runtime: OnnxRuntimeOptions, gpus: string[]): string {
  if (provider === 'cpu') return `CPU (${runtime.intraOpThreads} threads)`;
  const gpu = gpus[runtime.deviceId];
  return `${provider === 'cuda' ? 'CUDA' : 'TensorRT'} device ${runtime.deviceId}${gpu ? ` (${gpu})` : ''}`;
}

export class OnnxEngine implements Engine, ForwardHost {
  private disposing: Promise<void> | null = null;
  readonly numClasses: number;
  private readonly methods: readonly CamMethod[];
  /** The gradient methods' sessions, or the forward-only graph's one (`forward`). */
  private readonly pool: SessionPool<ort.InferenceSession>;
  /** The key of the session open from the start. */
  private readonly firstKey: SessionKey;

  constructor(
    private readonly sessions: MethodSessions,
    private readonly graphs: MethodGraphs,
    readonly info: EngineInfo,
    readonly inputShape: [number, number, number],
    /** The target activation `[h, w, channels]`. */
    private readonly targetShape: [number, number, number],
    private readonly camPost: CamPostOptions,
    /** Whether the first method's graph came from the cache, and how long compiling it took. */
    readonly graphSource: GraphSource,
  ) {
    this.numClasses = info.numClasses;
    this.methods = sessions.methods;
    this.firstKey = this.methods[0] ?? 'forward';
    // A forward-only engine has one session, never evicted: the pool still pins it under runs, so
    // that dispose waits for them.
    this.pool = new SessionPool(sessions.open, { maxSessions: sessions.maxSessions, disposeWaitMs: sessions.disposeWaitMs, gate: sessions.gate }, sessions.logger);
    this.pool.adopt(this.firstKey, sessions.first);
  }

  /** Graphs compiled by this engine and where they are (all of them at creation: serving never compiles). */
  graphStats(): GraphStats {
    return this.graphs.stats();
  }

  /** Open method sessions, how many were opened and evicted so far, runs in flight. */
  sessionStats(): SessionPoolStats {
    return this.pool.stats();
  }

  async predict(images: PreprocessedImage[]): Promise<Float32Array[]> {
    if (images.length === 0) return [];
    return (await this.forward(images, false)).probabilities;
  }

  /**
   * ForwardHost. The most recently used method's explain graph runs with a top-1 target (any
   * method's graph computes the same logits and activations): the head backward costs ~1% of the
   * conv stack, far less than keeping a session (and a copy of the weights) for forward only.
   */
  async forward(images: PreprocessedImage[], activations: boolean): Promise<ForwardRows> {
    const fetches: string[] = [GRAPH_IO.logits, GRAPH_IO.probabilities, ...(activations ? [GRAPH_IO.activation] : [])];
    const runOn = (session: ort.InferenceSession): Promise<ort.InferenceSession.ReturnType> => this.run(session, images, images.map(() => [-1]), true, fetches);
    const out = await this.pool.use(this.pool.mostRecent() ?? this.firstKey, runOn);
    const rows: ForwardRows = { probabilities: this.rows(out[GRAPH_IO.probabilities], images.length), logits: this.rows(out[GRAPH_IO.logits], images.length) };
    if (activations) rows.activations = { ...channelsLast(out[GRAPH_IO.activation].data as Float32Array, images.length, this.targetShape), height: this.targetShape[0], width: this.targetShape[1], channels: this.targetShape[2] };
    return rows;
  }

  async explain(request: EngineRequest): Promise<EngineImageResult[]> {
    const results = await this.explainBatch(request);
    return request.faithfulness ? measureFaithfulness(request, results, this) : results;
  }

  private async explainBatch(request: EngineRequest): Promise<EngineImageResult[]> {
    validateRequest(request, this.info.numClasses);
    const n = request.images.length;
    if (!needsGradient(request.method)) return n === 0 ? [] : explainGradientFree(request, this, this.camPost);
    if (!this.methods.includes(request.method)) {
      const served = this.methods.length > 0 ? `serves ${this.methods.join(', ')}` : 'a forward-only graph, which serves eigencam and scorecam';
      throw new ModelError(`this ONNX engine does not serve CAM method ${request.method} (${served})`);
    }
    if (n === 0) return [];
    const targetRow = graphTargets(request, this.info.numClasses);
    const camName = GRAPH_IO.cam;
    const out = await this.pool.use(request.method, (session) =>
      this.run(session, request.images, request.images.map(() => targetRow), request.score === 'prob', [
        GRAPH_IO.logits,
        GRAPH_IO.probabilities,
        GRAPH_IO.classes,
        GRAPH_IO.scores,
        GRAPH_IO.gradMaxAbs,
        camName,
      ]),
    );
    const probs = this.rows(out[GRAPH_IO.probabilities], n);
    const logits = this.rows(out[GRAPH_IO.logits], n);
    const classes = out[GRAPH_IO.classes].data as BigInt64Array;
    const scores = out[GRAPH_IO.scores].data as Float32Array;
    const gradMax = out[GRAPH_IO.gradMaxAbs].data as Float32Array;
    const maps = out[camName].data as Float32Array;
    const [h, w] = this.targetShape;
    const t = targetRow.length;
    return probs.map((p, i) => {
      const cams: CamMap[] = [];
      for (let j = 0; j < t; j++) {
        const r = i * t + j;
        const classIndex = Number(classes[r]);
        cams.push(
          postProcessCam(
            maps.slice(r * h * w, (r + 1) * h * w),
            { classIndex, score: scores[r], scoreMode: request.score, probability: p[classIndex], gradientMaxAbs: gradMax[r], height: h, width: w },
            this.camPost,
          ),
        );
      }
      return { probabilities: p, logits: logits[i], cams };
    });
  }

  /** Refuse new work, wait (bounded) for the batches in flight, release the sessions. Idempotent. */
  dispose(): Promise<void> {
    this.disposing ??= (async () => {
      try {
        await this.pool.dispose();
      } finally {
        // After the sessions: a session may still be reading its graph file.
        await this.graphs.dispose();
      }
    })();
    return this.disposing;
  }

  private async run(
    session: ort.InferenceSession,
    images: PreprocessedImage[],
    targets: number[][],
    scoreIsProb: boolean,
    fetches: string[],
  ): Promise<ort.InferenceSession.ReturnType> {
    const [h, w, c] = this.inputShape;
    const size = h * w * c;
    images.forEach((img, i) => {
      if (img.height !== h || img.width !== w || img.data.length !== size) {
        throw new InvalidInputError(
          'INPUT_SHAPE',
          `image ${i} is ${img.width}x${img.height} with ${img.data.length} values; the model expects ${w}x${h}x${c} = ${size} (resize it in preprocessing)`,
        );
      }
    });
    // One image is fed as it is (ONNX Runtime only reads inputs); a batch is packed into one array.
    let batch = images[0].data;
    if (images.length > 1) {
      batch = new Float32Array(images.length * size);
      images.forEach((img, i) => batch.set(img.data, i * size));
    }
    const t = targets[0].length;
    const feeds: Record<string, ort.Tensor> = { [GRAPH_IO.images]: new ort.Tensor('float32', batch, [images.length, h, w, c]) };
    // A forward-only graph has no target or score inputs.
    if (this.methods.length > 0) {
      feeds[GRAPH_IO.targets] = new ort.Tensor('int64', BigInt64Array.from(targets.flat(), (v) => BigInt(v)), [images.length, t]);
      feeds[GRAPH_IO.scoreIsProb] = new ort.Tensor('bool', [scoreIsProb], [1]);
    }
    return this.sessions.gate.through(() => session.run(feeds, fetches));
  }

  private rows(tensor: ort.Tensor, n: number): Float32Array[] {
    const data = tensor.data as Float32Array;
    const c = data.length / n;
    return Array.from({ length: n }, (_, i) => data.slice(i * c, (i + 1) * c));
  }
}

/** `[N, C, h, w]` → one channels-last `[h, w, C]` array per image. */
function channelsLast(data: Float32Array, n: number, [h, w, c]: [number, number, number]): { data: Float32Array[] } {
  const plane = h * w;
  return {
    data: Array.from({ length: n }, (_, i) => {
      const out = new Float32Array(plane * c);
      const base = i * plane * c;
      for (let k = 0; k < c; k++) for (let p = 0; p < plane; p++) out[p * c + k] = data[base + k * plane + p];
      return out;
    }),
  };
}

/**
 * One targets row for every image: explicit class indices as given, top-1 / top-k as ranks
 * (−1 = best, −2 = second, …) that the graph resolves with TopK on its own probabilities.
 */
export function graphTargets(request: Pick<EngineRequest, 'targets' | 'topK'>, numClasses: number): number[] {
  switch (request.targets.kind) {
    case 'top1':
      return [-1];
    case 'topk':
      return Array.from({ length: Math.min(request.topK, numClasses) }, (_, r) => -(r + 1));
    case 'indices':
      return [...request.targets.indices];
  }
}
