/**
 * The `--backend` flag's values and the GPU listing, without TF.js: the worker's and the CLI's
 * flag parsing import this, so a process whose engine never runs TF.js in its main thread (the
 * engine thread, or ONNX Runtime) does not load it there. `@tensorflow/tfjs` with its layers,
 * converter and backends was about 14 of the 30 MB of heap the worker's modules hold at start,
 * marked again by every full collection of the main heap (docs/benchmarks.md).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ConfigError } from '../../../shared/errors.js';

export const BACKEND_CHOICES = ['auto', 'node-gpu', 'node', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKEND_CHOICES)[number];

/** GPUs as `nvidia-smi` names them; empty when the tool or driver is absent. */
export async function listNvidiaGpus(): Promise<string[]> {
  try {
    const { stdout } = await promisify(execFile)('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { timeout: 10_000 });
    return stdout.split('\n').map((s) => s.trim()).filter((s) => s.length > 0);
  } catch {
    return [];
  }
}

export function parseBackendChoice(value: string, flag = '--backend'): BackendChoice {
  if ((BACKEND_CHOICES as readonly string[]).includes(value)) return value as BackendChoice;
  throw new ConfigError(flag, `expected one of ${BACKEND_CHOICES.join(', ')}, got "${value}"`);
}
