/**
 * What gradient-free work needs from an engine: plain forward passes over rows of preprocessed
 * images, optionally returning the target activation. Each engine implements it once (TF.js over
 * its compiled model, ONNX Runtime over its graph); Eigen-CAM, Score-CAM and the faithfulness
 * perturbations are written once on top of it.
 */
import type { PreprocessedImage } from '../engine.js';

/** Target activations of a batch, channels-last: `data[i]` is image i's `[height, width, channels]`. */
export interface ActivationRows {
  data: Float32Array[];
  height: number;
  width: number;
  channels: number;
}

export interface ForwardRows {
  probabilities: Float32Array[];
  logits: Float32Array[];
  /** Present when asked for. */
  activations?: ActivationRows;
}

export interface ForwardHost {
  /** Model input `[height, width, channels]`. */
  readonly inputShape: readonly [number, number, number];
  readonly numClasses: number;
  /** One forward run over `images` (the caller chunks them); `activations` adds the target activation. */
  forward(images: PreprocessedImage[], activations: boolean): Promise<ForwardRows>;
}

/**
 * Forward `rows` in chunks of at most `maxRows`, building each chunk's images only when it runs, so
 * a Score-CAM batch (images × channels masked copies) never sits in memory at once. Between chunks
 * the event loop gets a turn: an engine on the main thread (`--engine-thread off`) then blocks it
 * for one chunk at a time, about one ordinary batch, so lock renewals and I/O keep running through
 * a Score-CAM batch hundreds of times longer.
 */
export async function forwardInChunks(
  host: ForwardHost,
  count: number,
  maxRows: number,
  build: (row: number) => PreprocessedImage,
  use: (row: number, probabilities: Float32Array, logits: Float32Array) => void,
): Promise<void> {
  const size = Math.max(1, Math.floor(maxRows));
  for (let start = 0; start < count; start += size) {
    const end = Math.min(count, start + size);
    const images: PreprocessedImage[] = [];
    for (let r = start; r < end; r++) images.push(build(r));
    const out = await host.forward(images, false);
    for (let r = start; r < end; r++) use(r, out.probabilities[r - start], out.logits[r - start]);
    if (end < count) await yieldToEventLoop();
  }
}

/** Let timers and I/O callbacks run (a resolved promise alone would only run microtasks). */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
