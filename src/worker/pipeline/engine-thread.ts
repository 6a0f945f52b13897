/**
 * The engine in its own thread. TF.js on CPU (wasm, cpu, and tfjs-node too) computes on the thread
 * that calls it; in the main thread that would freeze everything else while a batch runs: S3
 * responses, decodes finishing, lock renewals, heartbeats, metrics scrapes. In a worker thread the
 * batch computes on one core while the main thread keeps downloading, decoding, rendering and
 * uploading the neighbouring images, which is what lets I/O hide behind compute.
 *
 * The proxy implements the same `Engine` interface, so the pipeline cannot tell the difference.
 * Results cross as transferred buffers (no copies). Only one call is in flight at a
 * time in practice (the batcher runs one batch at a time), but ids make concurrent calls safe.
 *
 * Ending the thread: onnxruntime-node runs a session synchronously on the thread that calls it, so
 * while a batch computes the thread's event loop is blocked; it answers `dispose` only once the run
 * has returned, and ending the thread inside the run aborts the whole process (native-gate.ts). The
 * thread is therefore ended only through the engine's native-call gate: after the run, never in it.
 */
import { Worker } from 'node:worker_threads';
import { ConfigError, EngineDisposedError, InvalidInputError, ModelError } from '../../shared/errors.js';
import type { Engine, EngineImageResult, EngineInfo, EngineRequest, PreprocessedImage } from '../engine/engine.js';
import type { EngineThreadInit, FromEngineThread, ToEngineThread, WireError } from './engine-thread-protocol.js';
import { buffersOf } from './engine-thread-protocol.js';
import { modelWeights } from '../model/graph/from-sequential.js';
import { SESSION_POOL_DEFAULTS } from '../engine/onnx/session-pool.js';
import { closeNativeGate, createNativeGateMemory, nativeCallInProgress } from '../engine/native-gate.js';
import type { Logger } from '../../shared/logger.js';
import { silentLogger } from '../../shared/logger.js';

/** Time for the thread to answer once the engine's own dispose has returned (message passing, releases). */
const DISPOSE_REPLY_MARGIN_MS = 2_000;

export const THREADED_ENGINE_DEFAULTS = Object.freeze({
  /**
   * How long `dispose` waits for the thread's engine to dispose (and answer) before it stops
   * waiting: the engine's own bounded wait for batches in flight (the ONNX session pool's, which the
   * thread's engine uses with its default) plus a margin. Past it, the calls still pending fail with
   * `EngineDisposedError` and the thread is ended, but only once no ONNX Runtime call is in progress
   * in it: a native run cannot be interrupted, and ending the thread inside one aborts the process.
   */
  disposeWaitMs: SESSION_POOL_DEFAULTS.disposeWaitMs + DISPOSE_REPLY_MARGIN_MS,
});

/** `THREADED_ENGINE_DEFAULTS.disposeWaitMs`. */
export const THREAD_DISPOSE_WAIT_MS = THREADED_ENGINE_DEFAULTS.disposeWaitMs;

export interface ThreadedEngineOptions {
  /** Default `THREADED_ENGINE_DEFAULTS.disposeWaitMs`. */
  disposeWaitMs?: number;
  /** Where `dispose` says that it waits for an ONNX Runtime call past its wait. Default: silent. */
  logger?: Logger;
}

interface Pending {
  resolve: (value: FromEngineThread) => void;
  reject: (err: Error) => void;
}

/** Where the thread's entry module is: the .ts source under tsx/vitest, the .js file once built. */
function entryUrl(): URL {
  const ext = import.meta.url.endsWith('.ts') ? 'ts' : 'js';
  return new URL(`./engine-thread-main.${ext}`, import.meta.url);
}

/** tsx's API resolved from this module (an eval'd thread would resolve from the working directory). */
function tsxApiUrl(): string {
  try {
    return import.meta.resolve('tsx/esm/api');
  } catch {
    return 'tsx/esm/api';
  }
}

/**
 * @param onFatal called once if the thread dies unexpectedly (crash, out of memory): every later
 * call would fail too, so the process should exit and let its supervisor start a fresh one.
 */
export async function createThreadedEngine(init: EngineThreadInit, onFatal: (err: Error) => void = () => undefined, options: ThreadedEngineOptions = {}): Promise<Engine> {
  const url = entryUrl();
  // Built code starts the thread from its .js file. From TypeScript sources (tsx, test runners),
  // the thread first registers tsx's loader for itself (loader hooks are per thread), then imports
  // the .ts entry.
  const worker = url.pathname.endsWith('.ts')
    ? new Worker(`import(${JSON.stringify(tsxApiUrl())}).then((api) => { api.register(); return import(${JSON.stringify(url.href)}); });`, { eval: true })
    : new Worker(url);
  const gate = createNativeGateMemory();
  const engine = new ThreadedEngine(worker, gate, onFatal, {
    disposeWaitMs: options.disposeWaitMs ?? THREADED_ENGINE_DEFAULTS.disposeWaitMs,
    logger: options.logger ?? silentLogger(),
  });
  // The spec's weights move to the thread: the main thread has no further use for them.
  const transfer = buffersOf(modelWeights(init.spec));
  const ready = await engine.call({ type: 'init', init, gate }, transfer);
  if (ready.type === 'initFailed') {
    await engine.endThread();
    throw fromWire(ready.error);
  }
  if (ready.type !== 'ready') throw new Error(`engine thread answered ${ready.type} to init`);
  engine.setInfo(ready.info);
  return engine;
}

class ThreadedEngine implements Engine {
  private infoValue: EngineInfo | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private initWaiter: Pending | null = null;
  private dead: Error | null = null;

  private disposing = false;
  private disposal: Promise<void> | null = null;
  /** Aborted once the thread has exited: a gated call it died inside will never end. */
  private readonly exited = new AbortController();

  constructor(
    private readonly worker: Worker,
    /** The state of the engine's native-call gate, shared with the thread. */
    private readonly gate: SharedArrayBuffer,
    private readonly onFatal: (err: Error) => void,
    private readonly options: Required<ThreadedEngineOptions>,
  ) {
    worker.on('message', (m: FromEngineThread) => this.onMessage(m));
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => {
      this.exited.abort();
      this.fail(new Error(`engine thread exited with code ${code}`));
    });
  }

  get info(): EngineInfo {
    if (!this.infoValue) throw new Error('engine thread not ready');
    return this.infoValue;
  }

  setInfo(info: EngineInfo): void {
    this.infoValue = info;
  }

  async explain(request: EngineRequest): Promise<EngineImageResult[]> {
    // Images are copied, not transferred: a caller may submit them again (a failed batch is re-run
    // image by image), and a batch's copy costs a few ms against a batch time of seconds.
    const reply = await this.call({ type: 'explain', id: this.nextId++, request });
    if (reply.type !== 'explained') throw new Error(`engine thread answered ${reply.type} to explain`);
    return reply.results;
  }

  async predict(images: PreprocessedImage[]): Promise<Float32Array[]> {
    const reply = await this.call({ type: 'predict', id: this.nextId++, images });
    if (reply.type !== 'predicted') throw new Error(`engine thread answered ${reply.type} to predict`);
    return reply.probabilities;
  }

  /** Idempotent: concurrent callers share one disposal. */
  dispose(): Promise<void> {
    this.disposal ??= this.disposeOnce();
    return this.disposal;
  }

  private async disposeOnce(): Promise<void> {
    if (this.dead) return;
    this.disposing = true;
    let timer: NodeJS.Timeout | undefined;
    try {
      // The engine's dispose waits (bounded) for a batch still computing. A thread that does not
      // answer in time (a TF.js batch, or an ONNX Runtime run, holds its event loop) is ended.
      await Promise.race([
        this.call({ type: 'dispose', id: this.nextId++ }),
        new Promise((resolve) => {
          timer = setTimeout(resolve, this.options.disposeWaitMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      this.fail(new EngineDisposedError());
      await this.endThread();
    }
  }

  /**
   * End the thread, once no ONNX Runtime call is in progress in it and none can start
   * (native-gate.ts): terminating it inside one aborts the process when the call returns. The TF.js
   * engine is not gated: on its wasm and cpu backends a batch is JS and WebAssembly, which
   * terminate() interrupts safely (tfjs-node's native kernels are not covered).
   */
  async endThread(): Promise<void> {
    if (nativeCallInProgress(this.gate) && !this.exited.signal.aborted) {
      this.options.logger.warn(
        { disposeWaitMs: this.options.disposeWaitMs },
        'the engine thread is inside an ONNX Runtime call, which cannot be interrupted; ending the thread once it returns (ending it inside the call would abort the process)',
      );
    }
    await closeNativeGate(this.gate, this.exited.signal);
    await this.worker.terminate();
  }

  call(message: ToEngineThread, transfer: ArrayBuffer[] = []): Promise<FromEngineThread> {
    if (this.dead) return Promise.reject(this.dead);
    return new Promise((resolve, reject) => {
      if (message.type === 'init') this.initWaiter = { resolve, reject };
      else this.pending.set(message.id, { resolve, reject });
      this.worker.postMessage(message, transfer);
    });
  }

  private onMessage(m: FromEngineThread): void {
    if (m.type === 'ready' || m.type === 'initFailed') {
      this.initWaiter?.resolve(m);
      this.initWaiter = null;
      return;
    }
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    if (m.type === 'failed') p.reject(fromWire(m.error));
    else p.resolve(m);
  }

  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    this.initWaiter?.reject(err);
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    if (!this.disposing && this.infoValue) this.onFatal(err);
  }
}

/** Rebuild the named errors that decide retries; anything else stays a plain Error. */
function fromWire(e: WireError): Error {
  let err: Error;
  if (e.name === 'InvalidInputError') err = new InvalidInputError(e.code ?? 'INVALID_INPUT', e.message);
  else if (e.name === 'ModelError') err = new ModelError(e.message);
  else if (e.name === 'EngineDisposedError') err = new EngineDisposedError(e.message);
  else if (e.name === 'ConfigError') err = new ConfigError(e.message.split(':')[0] ?? 'engine', e.message.slice(e.message.indexOf(':') + 1).trim());
  else if (e.name === 'RangeError') err = new RangeError(e.message);
  else if (e.name === 'TypeError') err = new TypeError(e.message);
  else {
    err = new Error(e.message);
    err.name = e.name;
  }
  return err;
}
