/**
 * `--batch-size auto`: the largest batch the GPU's free memory holds for this model, so a worker on
 * an 80 GB GPU does not run VGG16 in batches of 16 and one on an 8 GB GPU does not run out of memory.
 *
 * The estimate is an upper bound: every activation of one image's forward pass held at once (as
 * if ONNX Runtime's memory planner reused nothing), for every model session the engine may hold at
 * once (`EngineInfo.sessions`: the ONNX engine opens one session per CAM method in use, up to its
 * cap), since each session has its own weights copy and its own memory arena, which keeps the
 * largest batch's activations after the batch ends. Free memory is read once the engine holds its
 * first session, so the weights of the others are still to load. The Grad-CAM head's backward
 * touches only the head's small tensors and the target map, which that sum already counts. A
 * fraction of the free memory (`headroom`) is left for the provider's workspace (cuDNN
 * algorithms, TensorRT tactics) and fragmentation. Powers of two keep batches aligned with the
 * kernels' tile sizes and make the choice easy to read in logs.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { graphFacts } from '../model/graph/walker.js';
import { toModelGraph, type ModelInput } from '../model/graph/from-sequential.js';

export const AUTO_BATCH = Object.freeze({
  /** Never more: dynamic batching rarely fills larger batches, and latency grows with them. */
  max: 128,
  /** Share of the free GPU memory the batch may take. */
  headroom: 0.6,
  /** On the CPU, where memory is rarely the limit and larger batches stop paying (docs/operations.md). */
  cpu: 8,
});

/**
 * Bytes of every computed value of one image's forward pass, and of the weights, at
 * `bytesPerValue` (4: float32; 2 for a float16 trunk, which holds nearly all values and weights).
 */
export function modelMemory(model: ModelInput, bytesPerValue = 4): { activationBytesPerImage: number; weightsBytes: number } {
  const graph = toModelGraph(model);
  const facts = graphFacts(graph);
  let activations = 0;
  for (const node of graph.nodes) {
    for (const v of node.outputs) {
      const shape = facts.shapes.get(v);
      // Shapes carry a batch dimension of 1; a value with no shape is a constant folded later.
      if (shape) activations += shape.reduce((a, d) => a * Math.max(1, d), 1);
    }
  }
  // The input batch itself.
  activations += graph.inputShape[0] * graph.inputShape[1] * graph.inputShape[2];
  let weights = 0;
  for (const t of Object.values(graph.constants)) weights += t.dims.reduce((a, d) => a * d, 1);
  return { activationBytesPerImage: activations * bytesPerValue, weightsBytes: weights * bytesPerValue };
}

/** Bytes of weights still to load once free memory was read with one session's copy loaded. */
export function weightsStillToLoad(weightsBytes: number, sessions: number): number {
  return (Math.max(1, sessions) - 1) * weightsBytes;
}

export interface AutoBatchInput {
  /** Free memory of the GPU the engine runs on; null on the CPU or where it cannot be read. */
  freeBytes: number | null;
  activationBytesPerImage: number;
  /** One copy of the weights (`modelMemory`). */
  weightsBytes: number;
  /**
   * Sessions the engine may hold at once (`EngineInfo.sessions`, 1 when absent): each adds a weights
   * copy (but the first, loaded when `freeBytes` was read) and an activation arena of its own.
   */
  sessions: number;
}

export interface AutoBatchChoice {
  batchSize: number;
  /** One line for the start-up log: what was measured and why this size. */
  reason: string;
}

export function autoBatchSize(input: AutoBatchInput, limits: typeof AUTO_BATCH = AUTO_BATCH): AutoBatchChoice {
  if (input.freeBytes === null) return { batchSize: limits.cpu, reason: `no GPU memory to size for: ${limits.cpu}, the CPU default` };
  const mib = (b: number): string => `${Math.round(b / 2 ** 20)} MiB`;
  const sessions = Math.max(1, input.sessions);
  const weights = weightsStillToLoad(input.weightsBytes, sessions);
  const budget = input.freeBytes * limits.headroom - weights;
  // Every session's arena may hold a full batch's activations at once.
  const fits = Math.floor(budget / (input.activationBytesPerImage * sessions));
  let batch = 1;
  while (batch * 2 <= Math.min(fits, limits.max)) batch *= 2;
  const reason =
    `${mib(input.freeBytes)} free x ${limits.headroom} headroom - ${mib(weights)} weights (${sessions - 1} more session(s)) = ${mib(Math.max(0, budget))} ` +
    `for at most ${mib(input.activationBytesPerImage)} of activations per image in each of ${sessions} session(s): ${Math.max(0, fits)} fit, batch ${batch}` +
    (fits > limits.max ? ` (capped at ${limits.max})` : fits < 1 ? ' (the model barely fits; expect out-of-memory errors)' : '');
  return { batchSize: batch, reason };
}

/** Free memory of one GPU in bytes, from nvidia-smi; null where it does not answer. */
export async function gpuFreeBytes(deviceId: number): Promise<number | null> {
  const memory = await gpuMemoryMiB(deviceId);
  return memory === null ? null : (memory.total - memory.used) * 2 ** 20;
}

/** Used and total memory of one GPU in MiB, from nvidia-smi; null where it does not answer. */
export async function gpuMemoryMiB(deviceId: number): Promise<{ used: number; total: number } | null> {
  try {
    const { stdout } = await promisify(execFile)('nvidia-smi', [`--id=${deviceId}`, '--query-gpu=memory.used,memory.total', '--format=csv,noheader,nounits'], { timeout: 10_000 });
    const m = /(\d+)\s*,\s*(\d+)/.exec(stdout);
    return m ? { used: Number(m[1]), total: Number(m[2]) } : null;
  } catch {
    return null;
  }
}
