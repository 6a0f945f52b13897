/**
 * Options of the ONNX engine, their defaults in one place, and their validation.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import { usableCores } from '../../../shared/cores.js';
import { ConfigError } from '../../../shared/errors.js';

export const EXECUTION_PROVIDERS = ['cpu', 'cuda', 'tensorrt'] as const;
export type ExecutionProvider = (typeof EXECUTION_PROVIDERS)[number];

export const PRECISIONS = ['fp32', 'fp16'] as const;
export type OnnxPrecision = (typeof PRECISIONS)[number];

export interface OnnxRuntimeOptions {
  /**
   * Execution providers, in preference order; ONNX Runtime places each node on the first that
   * supports it. `auto` (default): TensorRT and CUDA when a GPU is visible and a trial session on
   * that provider starts (providers.ts), then CPU. An explicit list is used as given.
   */
  executionProviders: ExecutionProvider[] | 'auto';
  /** CUDA / TensorRT device ordinal. Default 0. */
  deviceId: number;
  /** Intra-op threads. Default: the cores this process may use (`usableCores()`: affinity and the cgroup CPU limit). */
  intraOpThreads: number;
  /**
   * Directory of compiled graphs, keyed by content hash, so a restart does not recompile.
   * Default `~/.cache/gradcam-audit/onnx` (`$XDG_CACHE_HOME/gradcam-audit/onnx` when set); null
   * disables the cache.
   */
  cacheDir: string | null;
  /**
   * Profile the first (warm-up) batch to log which provider every node ran on (placement.ts).
   * Costs one batch-1 run at start-up. Default true.
   */
  checkPlacement: boolean;
  /**
   * Element type of the model's trunk (input → target layer): `fp16` halves the weights and lets
   * CUDA/TensorRT use tensor cores; the head, its backward and the CAM formulas stay float32
   * (compile-graph.ts). On the CPU provider fp16 is slower (ONNX Runtime computes float16 nodes
   * through casts), so it is for GPU nodes. Default `fp32`.
   */
  precision: OnnxPrecision;
  /**
   * Most gradient-method sessions open at once. Each method has its own graph and session, and each
   * session holds a copy of the weights (VGG16: about 0.55 GB), so a worker serving runs of every
   * method would otherwise hold five. Past the cap, the least recently used idle session is
   * released and reopens on demand (session-pool.ts; from the graph cache when enabled). Default 2:
   * a run uses one method, so a worker alternating between two runs' methods never reopens.
   */
  maxSessions: number;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const base = env.XDG_CACHE_HOME && env.XDG_CACHE_HOME.length > 0 ? env.XDG_CACHE_HOME : join(homedir(), '.cache');
  return join(base, 'gradcam-audit', 'onnx');
}

export function defaultOnnxRuntimeOptions(): OnnxRuntimeOptions {
  return {
    executionProviders: 'auto',
    deviceId: 0,
    intraOpThreads: usableCores(),
    cacheDir: defaultCacheDir(),
    checkPlacement: true,
    precision: 'fp32',
    maxSessions: 2,
  };
}

/** Merge with defaults and validate once, with messages naming the option. */
export function resolveOnnxRuntimeOptions(partial: Partial<OnnxRuntimeOptions> = {}): OnnxRuntimeOptions {
  const defined = Object.fromEntries(Object.entries(partial).filter(([, v]) => v !== undefined)) as Partial<OnnxRuntimeOptions>;
  const o = { ...defaultOnnxRuntimeOptions(), ...defined };
  if (o.executionProviders !== 'auto') {
    if (o.executionProviders.length === 0) throw new ConfigError('--onnx-providers', 'expected at least one execution provider');
    const bad = o.executionProviders.filter((p) => !(EXECUTION_PROVIDERS as readonly string[]).includes(p));
    if (bad.length > 0) throw new ConfigError('--onnx-providers', `unknown execution provider ${bad.join(', ')}; expected ${EXECUTION_PROVIDERS.join(', ')} or auto`);
  }
  if (!Number.isInteger(o.intraOpThreads) || o.intraOpThreads < 1) {
    throw new ConfigError('--onnx-threads', `expected a positive integer, got ${String(o.intraOpThreads)}`);
  }
  if (!(PRECISIONS as readonly string[]).includes(o.precision)) throw new ConfigError('--onnx-precision', `expected ${PRECISIONS.join(' or ')}, got "${String(o.precision)}"`);
  if (!Number.isInteger(o.maxSessions) || o.maxSessions < 1) throw new ConfigError('--onnx-max-sessions', `expected a positive integer, got ${String(o.maxSessions)}`);
  if (!Number.isInteger(o.deviceId) || o.deviceId < 0) throw new ConfigError('--device-id', `expected a non-negative integer, got ${String(o.deviceId)}`);
  return o;
}

/** Parse `cpu`, `cuda,cpu` or `auto` (flag and environment form). */
export function parseExecutionProviders(value: string): ExecutionProvider[] | 'auto' {
  if (value.trim() === 'auto') return 'auto';
  return value.split(',').map((p) => p.trim()).filter((p) => p.length > 0) as ExecutionProvider[];
}

/** The ONNX runtime flags shared by `explain` and `worker`, as commander hands them over. */
export interface RawOnnxFlags {
  onnxProviders?: string;
  onnxThreads?: string;
  onnxCacheDir?: string;
  onnxPrecision?: string;
  onnxMaxSessions?: string;
}

export const ONNX_FLAG_HELP = Object.freeze({
  providers: ['--onnx-providers <list>', 'ONNX Runtime execution providers in preference order: cpu, cuda, tensorrt (comma-separated), or auto = CUDA (and TensorRT) when a GPU is visible and the provider starts, else cpu (default: auto)'],
  threads: ['--onnx-threads <n>', 'ONNX Runtime intra-op threads (default: the cores available; the worker leaves one of them to its event loop)'],
  cacheDir: ['--onnx-cache-dir <dir>', 'compiled-graph cache ("off" disables it; default: ~/.cache/gradcam-audit/onnx)'],
  precision: ['--onnx-precision <type>', 'fp32|fp16: element type of the layers up to the CAM layer; fp16 is for GPU providers (tensor cores), the head and the CAM stay fp32 (default: fp32)'],
  maxSessions: ['--onnx-max-sessions <n>', 'most CAM-method sessions open at once, each with its own copy of the weights; the least recently used idle one is released past it and reopens when asked for (default: 2)'],
} as const);

/** The ONNX runtime flags, declared once for every command that builds an engine. */
export function addOnnxFlags(command: Command): Command {
  for (const [flag, help] of Object.values(ONNX_FLAG_HELP)) command.option(flag, help);
  return command;
}

/** Flag values → validated partial runtime options (undefined fields keep the defaults). */
export function parseOnnxFlags(flags: RawOnnxFlags): Partial<OnnxRuntimeOptions> {
  const partial: Partial<OnnxRuntimeOptions> = {};
  if (flags.onnxProviders !== undefined) partial.executionProviders = parseExecutionProviders(flags.onnxProviders);
  if (flags.onnxThreads !== undefined) {
    if (!/^\d+$/.test(flags.onnxThreads.trim())) throw new ConfigError('--onnx-threads', `expected a positive integer, got "${flags.onnxThreads}"`);
    partial.intraOpThreads = Number(flags.onnxThreads);
  }
  if (flags.onnxCacheDir !== undefined) partial.cacheDir = flags.onnxCacheDir === 'off' ? null : flags.onnxCacheDir;
  if (flags.onnxMaxSessions !== undefined) {
    if (!/^\d+$/.test(flags.onnxMaxSessions.trim())) throw new ConfigError('--onnx-max-sessions', `expected a positive integer, got "${flags.onnxMaxSessions}"`);
    partial.maxSessions = Number(flags.onnxMaxSessions);
  }
  if (flags.onnxPrecision !== undefined) partial.precision = flags.onnxPrecision.trim() as OnnxPrecision;
  // Validate now so a bad flag fails before any model is loaded.
  resolveOnnxRuntimeOptions(partial);
  return partial;
}
