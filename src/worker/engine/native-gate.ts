/**
 * A gate around an engine's calls into ONNX Runtime's native code (session create, run, release),
 * shared between the thread that computes and the thread that owns it and will end it.
 *
 * Why: onnxruntime-node runs a session synchronously on the calling JS thread (its `run` only defers
 * the native call by a setImmediate), and a run in progress cannot be cancelled from JS
 * (`RunOptions.terminate` is WebAssembly-only in 1.x, and the thread is blocked anyway). A worker
 * thread ended while inside such a call — `Worker.terminate()`, `process.exit()`, or the process
 * leaving with the thread still running — aborts the whole process when the call returns:
 * "terminate called after throwing an instance of 'Napi::Error'" (SIGABRT, exit status 134). The
 * native run goes on to its end regardless, so there is no earlier safe moment to end the thread.
 *
 * So the owner closes the gate before it ends the thread: closing waits for the calls in progress
 * and refuses new ones (`EngineDisposedError`); after that, ending the thread only ever stops JS.
 * The state is one Int32 in shared memory: the number of calls in progress, or CLOSED.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { EngineDisposedError } from '../../shared/errors.js';

const CLOSED = -1;

/** How often `closeNativeGate` looks again while a call is in progress (a batch takes seconds). */
const CLOSE_POLL_MS = 10;

export interface NativeGate {
  /** Run `call`, which enters native code, as one gated call; `EngineDisposedError` once the gate is closed. */
  through<T>(call: () => Promise<T>): Promise<T>;
}

/** For an engine in a thread that nobody ends under it (the main thread): no bookkeeping. */
export const UNGATED: NativeGate = Object.freeze({ through: <T>(call: () => Promise<T>): Promise<T> => call() });

/** The gate's shared state, to hand to the computing thread (postMessage shares, never copies, it). */
export function createNativeGateMemory(): SharedArrayBuffer {
  return new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
}

/** The computing thread's side of the gate over `memory`. */
export function sharedNativeGate(memory: SharedArrayBuffer): NativeGate {
  const state = new Int32Array(memory);
  return {
    async through<T>(call: () => Promise<T>): Promise<T> {
      enter(state);
      try {
        // The whole promise, not only the native call inside it: a superset is as safe and needs
        // no hook inside onnxruntime-node.
        return await call();
      } finally {
        Atomics.sub(state, 0, 1);
      }
    },
  };
}

function enter(state: Int32Array): void {
  // Only the owner writes concurrently (0 -> CLOSED), so this loop ends at once or on its next turn.
  for (;;) {
    const inProgress = Atomics.load(state, 0);
    if (inProgress === CLOSED) throw new EngineDisposedError();
    if (Atomics.compareExchange(state, 0, inProgress, inProgress + 1) === inProgress) return;
  }
}

/** Whether a gated call is in progress on the gate over `memory`. */
export function nativeCallInProgress(memory: SharedArrayBuffer): boolean {
  return Atomics.load(new Int32Array(memory), 0) > 0;
}

/**
 * The owner's side: resolves once no gated call is in progress and none can start. Unbounded on
 * purpose: a native call cannot be interrupted, and ending its thread before it returns aborts the
 * process (see the module comment). Idempotent. `gone` ends the wait: the computing thread has
 * exited (crashed inside a call, say), so nothing is left to wait for and no count will fall.
 */
export async function closeNativeGate(memory: SharedArrayBuffer, gone?: AbortSignal): Promise<void> {
  const state = new Int32Array(memory);
  for (;;) {
    const before = Atomics.compareExchange(state, 0, 0, CLOSED);
    if (before === 0 || before === CLOSED || gone?.aborted) return;
    await sleep(CLOSE_POLL_MS, undefined, gone ? { signal: gone } : undefined).catch(() => undefined);
  }
}
