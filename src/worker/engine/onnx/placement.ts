/**
 * Where ONNX Runtime actually ran each node. Asking for CUDA does not mean every node runs there:
 * ORT places a node on the first provider in the list that implements it, and quietly falls back to
 * the CPU for the rest, with a copy to and from the device around each fallback.
 *
 * ORT's own profiler is the one place that records the provider per executed node, so the engine
 * runs its first (warm-up) batch with profiling on, then switches profiling off
 * (`endProfiling()`, which writes the trace) and reads the trace here.
 *
 * Limits, stated where the summary is shown:
 * - only nodes that executed in that batch appear: the branches of the CAM-method `If` that did not
 *   run are not in the trace (they are placed by the same rules);
 * - nodes removed by graph optimisation (constant folding, fusions) are not nodes any more; fused
 *   nodes appear under their fused name;
 * - TensorRT runs whole subgraphs as one fused node (`TensorrtExecutionProvider_TRTKernel_*`), so
 *   the count for TensorRT is subgraphs, not original nodes;
 * - `MemcpyToHost` / `MemcpyFromHost` nodes are the device copies that fallbacks cost.
 */
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Ops whose CPU fallback on a GPU worker means the heavy work is not on the GPU. */
export const COMPUTE_OPS: ReadonlySet<string> = new Set(['Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'FusedConv', 'FusedGemm', 'FusedMatMul', 'NchwcConv']);

export interface NodePlacement {
  /** Executed nodes per provider name as ORT reports it (e.g. `CUDAExecutionProvider`). */
  nodesByProvider: Record<string, number>;
  /** Op types run on the CPU provider, with counts (empty on a CPU-only session). */
  cpuOps: Record<string, number>;
  /** Compute-heavy nodes (Conv, Gemm, MatMul) that ran on the CPU although a GPU provider was asked for. */
  computeOnCpu: number;
  /** Device copies inserted around CPU fallbacks. */
  memcpyNodes: number;
}

interface TraceEvent {
  cat?: string;
  name?: string;
  args?: { provider?: string; op_name?: string };
}

/** Summarise an ORT profiling trace (a JSON array of Chrome trace events). */
export function summarizePlacement(events: unknown, gpuRequested: boolean): NodePlacement {
  if (!Array.isArray(events)) throw new Error('ONNX Runtime profile is not a JSON array of trace events');
  const nodesByProvider: Record<string, number> = {};
  const cpuOps: Record<string, number> = {};
  let computeOnCpu = 0;
  let memcpyNodes = 0;
  // A node has one `*_kernel_time` event per run (plus fence events): count each name once.
  const seen = new Set<string>();
  for (const raw of events as TraceEvent[]) {
    if (raw?.cat !== 'Node' || !raw.args?.provider || !raw.name?.endsWith('_kernel_time')) continue;
    if (seen.has(raw.name)) continue;
    seen.add(raw.name);
    const provider = raw.args.provider;
    const op = raw.args.op_name ?? 'unknown';
    nodesByProvider[provider] = (nodesByProvider[provider] ?? 0) + 1;
    if (op.startsWith('Memcpy')) memcpyNodes++;
    if (provider === 'CPUExecutionProvider') {
      cpuOps[op] = (cpuOps[op] ?? 0) + 1;
      if (gpuRequested && COMPUTE_OPS.has(op)) computeOnCpu++;
    }
  }
  return { nodesByProvider, cpuOps: gpuRequested ? cpuOps : {}, computeOnCpu, memcpyNodes };
}

/**
 * Read and delete the trace that `endProfiling()` wrote for `prefix` (ORT appends a timestamp:
 * `<prefix>_<date>_<time>.json`).
 */
export function readProfile(prefix: string): unknown {
  const files = profileFiles(prefix);
  if (files.length === 0) throw new Error(`ONNX Runtime wrote no profile for ${prefix}`);
  try {
    return JSON.parse(readFileSync(files.sort().at(-1) as string, 'utf8'));
  } finally {
    removeProfile(prefix);
  }
}

/** Delete every trace ONNX Runtime wrote under `prefix` (also after a failed first batch). */
export function removeProfile(prefix: string): void {
  for (const f of profileFiles(prefix)) rmSync(f, { force: true });
}

function profileFiles(prefix: string): string[] {
  const dir = dirname(prefix);
  const stem = `${basename(prefix)}_`;
  return readdirSync(dir)
    .filter((f) => f.startsWith(stem) && f.endsWith('.json'))
    .map((f) => `${dir}/${f}`);
}

/** One line for logs: `CUDAExecutionProvider 52, CPUExecutionProvider 3 (Shape x2, Reshape)`. */
export function describePlacement(p: NodePlacement): string {
  const providers = Object.entries(p.nodesByProvider)
    .sort((a, b) => b[1] - a[1])
    .map(([name, n]) => `${name.replace(/ExecutionProvider$/, '')} ${n}`)
    .join(', ');
  const cpu = Object.entries(p.cpuOps)
    .sort((a, b) => b[1] - a[1])
    .map(([op, n]) => (n > 1 ? `${op} x${n}` : op))
    .join(', ');
  return `${providers}${cpu ? ` (on CPU: ${cpu})` : ''}${p.memcpyNodes ? `; ${p.memcpyNodes} device copies` : ''}`;
}
