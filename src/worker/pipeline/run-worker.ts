/**
 * `gradcam-audit worker` wired from flags and the environment: load the model once, connect to
 * Redis and S3, start the pipeline worker and the metrics server, and drain on SIGTERM/SIGINT.
 */
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import { ConfigError, describeError } from '../../shared/errors.js';
import { usableCores } from '../../shared/cores.js';
import { tuneWorkerHeap } from './heap-growth.js';
import type { AppConfig } from '../../shared/config.js';
import { parseEnum, parseIntInRange } from '../../shared/config.js';
import type { Logger } from '../../shared/logger.js';
import { removeHeartbeat, writeHeartbeat, type WorkerHeartbeat } from '../../shared/queue/heartbeat.js';
import { keySpaceOf } from '../../shared/queue/keys.js';
import { createRedis, waitForRedis } from '../../shared/queue/redis.js';
import { RunStore } from '../../shared/queue/run-store.js';
import { s3RunAnalyser } from '../../shared/audit/s3-analysis.js';
import { finalizeRun, s3StreamUploader, sweepUnfinalized, type FinalizerDeps } from '../../shared/run-finalizer.js';
import { S3ObjectStore } from '../../shared/storage/s3-store.js';
import { raceTimeout } from '../../shared/timeout.js';
import { PACKAGE_VERSION } from '../../shared/version.js';
import { AUTO_BATCH, autoBatchSize, gpuFreeBytes, modelMemory } from '../engine/batch-size.js';
import type { EngineChoice } from '../engine/factory.js';
import { createEngine, parseEngineChoice } from '../engine/factory.js';
import { parseOnnxFlags, type OnnxRuntimeOptions, type RawOnnxFlags } from '../engine/onnx/options.js';
import { listNvidiaGpus, parseBackendChoice, type BackendChoice } from '../engine/tfjs/backend-choice.js';
import { workerStartupReport } from '../doctor/run.js';
import { listDriverGpus } from '../engine/onnx/providers.js';
import { configuredModelLoader, type ModelLoader } from '../model/configured-loader.js';
import { loadLabels } from '../model/labels.js';
import { loadHintsOf, resolveConfiguredModel, servedModelOf } from '../model/model-card.js';
import { parseModelOptionFlags, type ModelOptions, type RawModelOptionFlags } from '../../shared/model-options.js';
import { modelKeyOf } from '../../shared/model-setup.js';
import { describePreprocessing } from '../../shared/preprocessing.js';
import { createThreadedEngine } from './engine-thread.js';
import type { MetricsServer } from './metrics.js';
import { answerMetricsRequests, startMetricsServer } from './metrics.js';
import type { PipelineOptions } from './options.js';
import { defaultWorkerId, PIPELINE_DEFAULTS, resolvePipelineOptions, s3SocketsFor, workerEngineThreads } from './options.js';
import { PipelineWorker } from './pipeline-worker.js';
import { parseProcesses, PROCESS_ENV, processCores, processSlot, slottedWorkerId, superviseWorkers } from './worker-processes.js';

export const ENGINE_THREAD_MODES = ['auto', 'on', 'off'] as const;

/** Longest wait for each resource released at shutdown (metrics server, connections; the engine: see `releaseAll`). */
const RELEASE_STEP_MS = 1_000;
export type EngineThreadMode = (typeof ENGINE_THREAD_MODES)[number];

/** Resolve `auto`: a thread on CPU-only machines, the main thread where a GPU is visible. */
export async function useEngineThread(mode: EngineThreadMode, listGpus: () => Promise<string[]> = listNvidiaGpus): Promise<boolean> {
  if (mode !== 'auto') return mode === 'on';
  return (await listGpus()).length === 0;
}

/** Raw flag values as commander hands them over. */
export interface RawWorkerFlags extends RawOnnxFlags, RawModelOptionFlags {
  weights?: string;
  engine?: string;
  backend?: string;
  batchSize?: string;
  maxBatchDelayMs?: string;
  prefetch?: string;
  concurrencyUpload?: string;
  metricsPort?: string;
  metricsHost?: string;
  drainTimeoutMs?: string;
  workerId?: string;
  lockDurationMs?: string;
  stalledIntervalMs?: string;
  maxStalledCount?: string;
  engineThread?: string;
  requireGpu?: boolean;
  processes?: string;
}

export interface WorkerCommandOptions {
  weights: string;
  /** The model's properties from flags (`--preprocess`, `--center-crop`, `--labels`, `--layer`); the model card fills the rest. */
  model: ModelOptions;
  engine: EngineChoice;
  backend: BackendChoice;
  /**
   * Where the engine computes (`--engine-thread`). `on`: a worker thread, so the main thread keeps
   * doing I/O during a batch. `off`: the main thread. `auto` (default): a thread unless an NVIDIA
   * GPU is visible, because tfjs-node-gpu's native addon is loaded once per process and its kernels
   * already run asynchronously on the device.
   */
  engineThread: EngineThreadMode;
  /** ONNX Runtime settings (`--onnx-providers`, `--onnx-threads`, `--onnx-cache-dir`). */
  onnx: Partial<OnnxRuntimeOptions>;
  /** Undefined: no metrics server. 0: any free port (logged). */
  metricsPort?: number;
  /** A process of a `--processes` group whose supervisor serves the metrics: answer it over IPC. */
  groupMetrics?: boolean;
  /**
   * Default 127.0.0.1: metrics are not for the world unless asked (`--metrics-host 0.0.0.0`, or
   * GRADCAM_AUDIT_METRICS_HOST, which the container images set so Prometheus can scrape them).
   */
  metricsHost: string;
  /**
   * Refuse to start when the engine would compute on the CPU (`--require-gpu`, or
   * GRADCAM_AUDIT_REQUIRE_GPU=true, which the GPU images set): a GPU worker on the CPU is 10-50x
   * slower and would hold its GPU for nothing. Default false.
   */
  requireGpu: boolean;
  /**
   * `--batch-size auto`: the largest power-of-two batch the GPU's free memory holds for this model
   * (engine/batch-size.ts), measured once the engine is loaded; the CPU default on CPUs.
   */
  autoBatchSize: boolean;
  pipeline: Partial<PipelineOptions>;
}

/** Environment fallbacks, so a container can be configured without flags. */
export const WORKER_ENV = Object.freeze({
  weights: 'GRADCAM_AUDIT_WEIGHTS',
  metricsPort: 'GRADCAM_AUDIT_METRICS_PORT',
  metricsHost: 'GRADCAM_AUDIT_METRICS_HOST',
  requireGpu: 'GRADCAM_AUDIT_REQUIRE_GPU',
});

export function parseWorkerFlags(flags: RawWorkerFlags, env: Record<string, string | undefined> = process.env): WorkerCommandOptions {
  const weights = flags.weights ?? env[WORKER_ENV.weights];
  if (!weights) {
    throw new ConfigError('--weights', `required: a Keras .h5 weights file or a TF.js model.json (path, s3:// URI or http(s) URL), or set ${WORKER_ENV.weights}`);
  }
  const int = (flag: string, v: string | undefined, min: number, max: number): number | undefined => (v === undefined ? undefined : parseIntInRange(flag, v, min, max));
  const metricsPortRaw = flags.metricsPort ?? env[WORKER_ENV.metricsPort];
  // A process of a `--processes` group has its own worker id; its supervisor serves the metrics port.
  const slot = processSlot(env);
  const metricsPort = int('--metrics-port', metricsPortRaw, 0, 65535);
  return {
    weights,
    model: parseModelOptionFlags(flags),
    engine: parseEngineChoice(flags.engine ?? 'auto'),
    backend: parseBackendChoice(flags.backend ?? 'auto'),
    engineThread: parseEnum('--engine-thread', flags.engineThread ?? 'auto', ENGINE_THREAD_MODES),
    onnx: parseOnnxFlags(flags),
    metricsPort: slot ? undefined : metricsPort,
    groupMetrics: slot !== null && metricsPort !== undefined,
    metricsHost: flags.metricsHost ?? env[WORKER_ENV.metricsHost] ?? '127.0.0.1',
    requireGpu: flags.requireGpu ?? parseBool(WORKER_ENV.requireGpu, env[WORKER_ENV.requireGpu]) ?? false,
    autoBatchSize: flags.batchSize?.trim() === 'auto',
    pipeline: {
      batchSize: flags.batchSize?.trim() === 'auto' ? undefined : int('--batch-size', flags.batchSize, 1, 1024),
      maxBatchDelayMs: int('--max-batch-delay-ms', flags.maxBatchDelayMs, 0, 60_000),
      prefetch: int('--prefetch', flags.prefetch, 0, 4096),
      uploadConcurrency: int('--concurrency-upload', flags.concurrencyUpload, 1, 256),
      drainTimeoutMs: int('--drain-timeout-ms', flags.drainTimeoutMs, 0, 3_600_000),
      lockDurationMs: int('--lock-duration-ms', flags.lockDurationMs, 1_000, 3_600_000),
      stalledIntervalMs: int('--stalled-interval-ms', flags.stalledIntervalMs, 500, 3_600_000),
      maxStalledCount: int('--max-stalled-count', flags.maxStalledCount, 0, 100),
      workerId: slottedWorkerId(slot, flags.workerId),
    },
  };
}

export interface RunningWorker {
  worker: PipelineWorker;
  metricsServer: MetricsServer | null;
  /** Drain and release everything; idempotent. */
  shutdown(): Promise<void>;
}

/** Start a worker from parsed options; the caller decides when to call `shutdown`. */
export async function startWorker(
  options: WorkerCommandOptions,
  config: AppConfig,
  logger: Logger,
  loadSpec: ModelLoader,
  onFatal: (err: Error) => void = () => undefined,
): Promise<RunningWorker> {
  // Sized before the batch is known when it is `auto`: for the largest batch auto may choose.
  const socketBatch = options.autoBatchSize ? { batchSize: AUTO_BATCH.max } : {};
  const store = S3ObjectStore.fromConfig({ ...config.s3, maxSockets: s3SocketsFor(resolvePipelineOptions({ ...options.pipeline, ...socketBatch })) });
  const ks = keySpaceOf(config);
  const workerName = options.pipeline.workerId ?? 'worker';
  const redis = createRedis(config.redisUrl, { role: 'queue', name: `gca-${workerName}` });
  const bullConnection = createRedis(config.redisUrl, { role: 'worker', name: `gca-${workerName}-bull` });
  // QUIT waits for Redis to answer; with Redis unreachable it never does, so each connection gets
  // a second to close politely and is then dropped.
  const closeRedis = async (c: typeof redis): Promise<void> => {
    if (await raceTimeout(c.quit(), RELEASE_STEP_MS)) c.disconnect();
  };
  const releases: Array<() => Promise<void>> = [async () => store.destroy(), () => closeRedis(redis), () => closeRedis(bullConnection)];
  // Steps not cut short: the engine's dispose. Its own wait is bounded (pending calls fail after
  // THREADED_ENGINE_DEFAULTS.disposeWaitMs), except for an ONNX Runtime run already in progress in
  // the engine thread: leaving the process before that run returns aborts it (native-gate.ts), so
  // the worker waits for it (seconds: one batch), and a process that hangs there is the
  // supervisor's to kill after its grace period, as any other.
  const uncapped = new Set<() => Promise<void>>();
  const releaseAll = async (): Promise<void> => {
    for (const release of releases.reverse()) {
      if (uncapped.has(release)) await release().catch(() => undefined);
      else await raceTimeout(release(), RELEASE_STEP_MS);
    }
  };
  try {
    await waitForRedis(redis, config.redisUrl, config.redisWaitMs);
    // Loading VGG16 takes a while: show the worker as starting meanwhile (replaced once it runs).
    const workerId = options.pipeline.workerId ?? defaultWorkerId();
    await writeHeartbeat(redis, ks, startingHeartbeat(workerId, options)).catch(() => undefined);
    releases.push(async () => void (await removeHeartbeat(redis, ks, workerId).catch(() => undefined)));
    logger.info({ weights: options.weights }, 'loading model');
    const loadStarted = performance.now();
    // The model card and identity first: a bad card or an unknown preprocessing fails in
    // milliseconds, before a large download.
    const resolved = await resolveConfiguredModel(options.weights, options.model, config.s3, { identity: true });
    const { setup, identity } = resolved;
    logger.info(
      { preprocess: describePreprocessing(setup.preprocessing), preprocessFrom: setup.preprocessFrom, card: setup.card?.uri ?? null, layer: setup.layer ?? null, labels: setup.labels?.source ?? null, fingerprint: identity.fingerprint, modelKey: modelKeyOf(identity) },
      'model setup resolved; this worker serves runs that name this model (or none)',
    );
    const spec = await loadSpec(options.weights, loadHintsOf(setup));
    logger.info({ model: spec.name, weightsHash: spec.weightsHash, ms: Math.round(performance.now() - loadStarted) }, `model loaded: ${spec.name}; building the engine`);
    const thread = await useEngineThread(options.engineThread);
    const onnx = { intraOpThreads: workerEngineThreads(processCores()), ...options.onnx };
    const engine = thread
      ? await createThreadedEngine({ spec, engine: options.engine, backend: options.backend, layer: setup.layer, onnx, logLevel: config.logLevel }, onFatal, { logger })
      : await createEngine({ spec, engine: options.engine, backend: options.backend, layer: setup.layer, onnx, logger });
    const releaseEngine = (): Promise<void> => engine.dispose();
    uncapped.add(releaseEngine);
    releases.push(releaseEngine);
    logger.info({ ...engine.info, thread }, 'engine ready');
    const labels = await loadLabels({ numClasses: engine.info.numClasses, given: setup.labels });
    if (labels.warning) logger.warn(labels.warning);
    // The same checks `gradcam-audit doctor` prints, as far as the worker has them at hand.
    const startup = workerStartupReport({ spec, weights: options.weights, labels: labels.labels?.length ?? null, engine, requireGpu: options.requireGpu, redisUrl: config.redisUrl, gpus: await listDriverGpus() });
    logger.info({ doctor: startup.checks }, `doctor: ${startup.checks.map((c) => `${c.name} ${c.status}`).join(', ')}`);
    if (options.requireGpu && engine.info.accelerator !== 'gpu') {
      throw new ConfigError(
        '--require-gpu',
        `the engine would compute on ${engine.info.device} (${engine.info.engine}/${engine.info.backend}), not on a GPU. ` +
          'The log lines above say why each GPU provider or backend was not usable; `gradcam-audit doctor` checks the same. ' +
          'Unset GRADCAM_AUDIT_REQUIRE_GPU to run on the CPU anyway',
      );
    }

    const pipelineOptions = { ...options.pipeline };
    if (options.autoBatchSize) {
      // Read after the engine loaded: its first weights copy and workspace are already in use; the
      // sessions it may still open, and every session's activations, are counted (batch-size.ts).
      // The processes of a `--processes` group share the GPU: each counts on its share of what is free.
      const sharing = processSlot()?.count ?? 1;
      const freeOnGpu = engine.info.accelerator === 'gpu' ? await gpuFreeBytes(options.onnx.deviceId ?? 0) : null;
      const free = freeOnGpu === null ? null : Math.floor(freeOnGpu / sharing);
      const bytesPerValue = engine.info.precision === 'fp16' ? 2 : 4;
      const memory = modelMemory(spec, bytesPerValue);
      const sessions = engine.info.sessions ?? 1;
      const choice = autoBatchSize({ freeBytes: free, ...memory, sessions });
      pipelineOptions.batchSize = choice.batchSize;
      logger.info({ batchSize: choice.batchSize, sessions }, `--batch-size auto: ${choice.reason}`);
    }

    const runs = new RunStore(redis, ks, { store });
    const upload = s3StreamUploader(store.client);
    // No `owner`: each finalization (a job's, the sweep's) takes the lock under an id of its own.
    const finalizerDeps: FinalizerDeps = { runs, redis, upload, logger, analyse: s3RunAnalyser(store, upload, logger) };
    const worker = new PipelineWorker(
      {
        engine,
        labels: labels.labels,
        weightsSource: options.weights,
        model: servedModelOf(resolved, labels.source),
        store,
        runs,
        redis,
        bullConnection,
        keySpace: ks,
        queueName: config.queueName,
        logger,
        finalizeRun: (runId, lockTtlMs) => finalizeRun(runId, { ...finalizerDeps, lockTtlMs }),
        sweepUnfinalized: (lockTtlMs) => sweepUnfinalized({ ...finalizerDeps, lockTtlMs }),
      },
      { pixelBudget: config.pixelBudget, ...pipelineOptions },
    );
    let metricsServer: MetricsServer | null = null;
    if (options.metricsPort !== undefined) {
      metricsServer = await startMetricsServer(worker.metrics.registry, options.metricsHost, options.metricsPort);
      releases.push(() => (metricsServer as MetricsServer).close());
      logger.info({ url: `http://${metricsServer.host}:${metricsServer.port}/metrics` }, 'metrics server listening');
    }
    if (options.groupMetrics && process.send) {
      const stopAnswering = answerMetricsRequests(worker.metrics.registry);
      releases.push(async () => stopAnswering());
    }
    await worker.start();
    let done: Promise<void> | null = null;
    return {
      worker,
      metricsServer,
      shutdown: () =>
        (done ??= (async () => {
          await worker.stop();
          await releaseAll();
        })()),
    };
  } catch (err) {
    await releaseAll();
    throw err;
  }
}

function parseBool(name: string, value: string | undefined): boolean | undefined {
  if (value === undefined || value === '') return undefined;
  if (/^(1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw new ConfigError(name, `expected true or false, got "${value}"`);
}

function startingHeartbeat(workerId: string, options: WorkerCommandOptions): WorkerHeartbeat {
  const now = new Date().toISOString();
  return {
    workerId,
    host: hostname(),
    pid: process.pid,
    engine: options.engine,
    backend: options.backend,
    device: 'loading model',
    batchSize: options.pipeline.batchSize ?? PIPELINE_DEFAULTS.batchSize,
    imagesPerSecond: 0,
    processed: 0,
    failed: 0,
    inFlight: 0,
    startedAt: now,
    lastSeen: now,
    version: PACKAGE_VERSION,
    status: 'starting',
  };
}

/**
 * `--processes N` with N > 1: supervise N worker processes (worker-processes.ts) and set the exit
 * code; false when this process should run as the one worker itself. Flags are checked here first,
 * so a bad flag fails once, not in every child.
 */
export async function runWorkerGroup(flags: RawWorkerFlags, _config: AppConfig, logger: Logger, env: Record<string, string | undefined> = process.env): Promise<boolean> {
  const processes = await parseProcesses(flags.processes ?? env[PROCESS_ENV.processes], async () => ({ cores: usableCores(), gpus: (await listNvidiaGpus()).length }));
  if (processes <= 1) return false;
  const options = parseWorkerFlags(flags, env);
  const drainMs = options.pipeline.drainTimeoutMs ?? PIPELINE_DEFAULTS.drainTimeoutMs;
  // Each child drains within --drain-timeout-ms and then releases its connections and engine.
  const metrics = options.metricsPort === undefined ? {} : { metrics: { host: options.metricsHost, port: options.metricsPort } };
  process.exitCode = await superviseWorkers({ processes, stopGraceMs: drainMs + 10_000, logger, ...metrics });
  return true;
}

/** The CLI action: run until SIGTERM/SIGINT, drain, exit 0. */
export async function runWorkerCommand(flags: RawWorkerFlags, config: AppConfig, logger: Logger): Promise<void> {
  const options = parseWorkerFlags(flags);
  // Before the pipeline allocates anything: the worker runs for hours (heap-growth.ts).
  const heapFlag = tuneWorkerHeap();
  logger.info({ v8Flag: heapFlag ?? 'the operator\'s own' }, heapFlag ? `V8 heap growth for a long-running worker: ${heapFlag}` : 'V8 heap growth: as given on the command line');
  const loadSpec = configuredModelLoader(config.s3);
  let onFatal: (err: Error) => void = () => undefined;
  const running = await startWorker(options, config, logger, loadSpec, (err) => onFatal(err));
  await new Promise<void>((resolve) => {
    let signals = 0;
    onFatal = (err) => {
      // The engine is gone; every job would fail. Drain what can finish, then exit non-zero so the
      // supervisor (Kubernetes, systemd) starts a fresh process.
      logger.fatal({ err: describeError(err) }, 'engine thread died; stopping the worker');
      process.exitCode = 1;
      onSignal('SIGTERM');
    };
    const onSignal = (signal: NodeJS.Signals): void => {
      signals++;
      if (signals > 1) {
        logger.warn({ signal }, 'second signal: the drain is already under way (bounded by --drain-timeout-ms)');
        return;
      }
      logger.info({ signal }, 'shutting down');
      running
        .shutdown()
        .catch((err: unknown) => logger.error({ err: describeError(err) }, 'shutdown failed'))
        .finally(() => {
          process.off('SIGTERM', onSignal);
          process.off('SIGINT', onSignal);
          resolve();
        });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
