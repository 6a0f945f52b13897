/**
 * Messages between the pipeline (main thread) and the engine thread. Float32Array buffers travel
 * as transferables, so images and results move without copies.
 */
import type { EngineImageResult, EngineInfo, EngineRequest, PreprocessedImage } from '../engine/engine.js';
import type { EngineChoice } from '../engine/factory.js';
import type { BackendChoice } from '../engine/tfjs/backend.js';
import type { ModelInput } from '../model/graph/from-sequential.js';
import type { OnnxRuntimeOptions } from '../engine/onnx/options.js';
import type { LogLevel } from '../../shared/config.js';

export interface EngineThreadInit {
  spec: ModelInput;
  engine: EngineChoice;
  backend: BackendChoice;
  layer?: string;
  /** ONNX Runtime settings (providers, threads, graph cache). */
  onnx?: Partial<OnnxRuntimeOptions>;
  /** Level of the thread's own log lines (engine choice, ONNX fallback reasons). */
  logLevel?: LogLevel;
}

export type ToEngineThread =
  /** `gate`: the shared state of the engine's native-call gate (native-gate.ts), closed by the main thread before it ends this one. */
  | { type: 'init'; init: EngineThreadInit; gate: SharedArrayBuffer }
  | { type: 'explain'; id: number; request: EngineRequest }
  | { type: 'predict'; id: number; images: PreprocessedImage[] }
  | { type: 'dispose'; id: number };

/** An error flattened for postMessage; rebuilt on the other side into the project's named errors. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
}

export type FromEngineThread =
  | { type: 'ready'; info: EngineInfo }
  | { type: 'initFailed'; error: WireError }
  | { type: 'explained'; id: number; results: EngineImageResult[] }
  | { type: 'predicted'; id: number; probabilities: Float32Array[] }
  | { type: 'disposed'; id: number }
  | { type: 'failed'; id: number; error: WireError };

/** Unique buffers behind typed arrays (a buffer listed twice makes postMessage throw). */
export function buffersOf(arrays: Iterable<ArrayBufferView | null | undefined>): ArrayBuffer[] {
  const set = new Set<ArrayBuffer>();
  for (const a of arrays) {
    if (!a) continue;
    const buffer = a.buffer;
    // Views into a shared pool (small Node Buffers) or a SharedArrayBuffer cannot be moved.
    if (buffer instanceof ArrayBuffer && a.byteOffset === 0 && a.byteLength === buffer.byteLength) set.add(buffer);
  }
  return [...set];
}

export function resultBuffers(results: EngineImageResult[]): ArrayBuffer[] {
  return buffersOf(results.flatMap((r) => [r.probabilities, r.logits, ...r.cams.map((c) => c.grid)]));
}
