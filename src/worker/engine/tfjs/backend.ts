/**
 * TF.js backend choice at start-up. Preference order: tfjs-node-gpu (when installed and a GPU is
 * visible), tfjs-node, wasm, cpu. The native packages are optional dependencies: their install
 * script downloads libtensorflow, which fails on machines without that mirror, so each candidate is
 * imported dynamically and a failure only moves on to the next one (logged at debug with the reason).
 *
 * wasm comes before cpu because it is far faster here: a 3x3 conv on 4x56x56x64 takes about 40 ms on
 * wasm and 1,300 ms on the pure-JS cpu backend (2-core AMD EPYC, see docs/benchmarks.md).
 */
import os from 'node:os';
import * as tf from '@tensorflow/tfjs';
import type { Logger } from '../../../shared/logger.js';
import { silentLogger } from '../../../shared/logger.js';
import { ConfigError } from '../../../shared/errors.js';
import { listNvidiaGpus, type BackendChoice } from './backend-choice.js';

// The flag's values and the GPU listing live apart, without TF.js (backend-choice.ts).
export { BACKEND_CHOICES, listNvidiaGpus, parseBackendChoice, type BackendChoice } from './backend-choice.js';
type ConcreteBackend = Exclude<BackendChoice, 'auto'>;

export const AUTO_ORDER: readonly ConcreteBackend[] = ['node-gpu', 'node', 'wasm', 'cpu'];

export interface ActiveBackend {
  /** What was asked for or picked, e.g. `wasm`. */
  choice: ConcreteBackend;
  /** TF.js's own backend name (`tensorflow`, `wasm`, `cpu`), recorded in manifests. */
  name: string;
  /** Human-readable device, e.g. `CPU wasm (AMD EPYC ..., 1 thread)` or `GPU NVIDIA H100`. */
  device: string;
}

/** Test seam: how to find GPUs and how to import optional packages. */
export interface BackendDeps {
  logger: Logger;
  listGpus: () => Promise<string[]>;
  importModule: (name: string) => Promise<unknown>;
}

export function defaultBackendDeps(logger: Logger = silentLogger()): BackendDeps {
  return { logger, listGpus: listNvidiaGpus, importModule: (name) => import(name) };
}

let active: ActiveBackend | null = null;
let pending: Promise<ActiveBackend> | null = null;

/**
 * Initialise a backend once per process (TF.js has one global engine). A later call asking for a
 * different concrete backend switches to it; `auto` keeps whatever is active.
 */
export async function initBackend(choice: BackendChoice = 'auto', deps: BackendDeps = defaultBackendDeps()): Promise<ActiveBackend> {
  if (pending) await pending.catch(() => undefined);
  // TF.js's global backend is the truth: another module may have switched it since (a reference
  // computation in the same process), and then the remembered choice must be activated again.
  if (active && (choice === 'auto' || choice === active.choice) && tf.getBackend() === active.name) return active;
  pending = pick(choice, deps);
  active = await pending;
  deps.logger.info({ backend: active.name, device: active.device }, 'tfjs backend ready');
  return active;
}

async function pick(choice: BackendChoice, deps: BackendDeps): Promise<ActiveBackend> {
  const order = choice === 'auto' ? AUTO_ORDER : [choice];
  const reasons: string[] = [];
  for (const candidate of order) {
    try {
      return await tryBackend(candidate, deps);
    } catch (err) {
      const reason = err instanceof Error ? err.message : String(err);
      reasons.push(`${candidate}: ${reason}`);
      deps.logger.debug({ backend: candidate, reason }, 'tfjs backend unavailable');
    }
  }
  throw new ConfigError('--backend', `no usable TF.js backend (${reasons.join('; ')})`);
}

async function tryBackend(candidate: ConcreteBackend, deps: BackendDeps): Promise<ActiveBackend> {
  const cpuModel = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  switch (candidate) {
    case 'node-gpu': {
      const gpus = await deps.listGpus();
      if (gpus.length === 0) throw new Error('no NVIDIA GPU visible (nvidia-smi lists none)');
      // Registers the `tensorflow` backend with CUDA kernels; throws when libtensorflow is missing.
      await deps.importModule('@tensorflow/tfjs-node-gpu');
      await activate('tensorflow');
      return { choice: candidate, name: 'tensorflow', device: `GPU ${gpus[0]}` };
    }
    case 'node': {
      await deps.importModule('@tensorflow/tfjs-node');
      await activate('tensorflow');
      return { choice: candidate, name: 'tensorflow', device: `CPU libtensorflow (${cpuModel})` };
    }
    case 'wasm': {
      const wasm = (await deps.importModule('@tensorflow/tfjs-backend-wasm')) as { getThreadsCount?: () => number };
      await activate('wasm');
      const threads = wasm.getThreadsCount?.() ?? 1;
      return { choice: candidate, name: 'wasm', device: `CPU wasm (${cpuModel}, ${threads} thread${threads === 1 ? '' : 's'})` };
    }
    case 'cpu': {
      await activate('cpu');
      return { choice: candidate, name: 'cpu', device: `CPU pure JS (${cpuModel})` };
    }
  }
}

async function activate(name: string): Promise<void> {
  if (!tf.findBackend(name) && !tf.engine().registryFactory[name]) {
    throw new Error(`backend "${name}" is not registered after import`);
  }
  const ok = await tf.setBackend(name);
  if (!ok) throw new Error(`tf.setBackend("${name}") failed to initialise`);
  await tf.ready();
}

/** Forget the chosen backend so the next `auto` picks again (tests only; TF.js keeps its engine). */
export function resetBackendForTests(): void {
  active = null;
  pending = null;
}
