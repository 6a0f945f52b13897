/**
 * Which ONNX Runtime execution providers this process will use. onnxruntime-node bundles the CPU
 * provider; the CUDA and TensorRT providers are shared libraries its install script downloads next
 * to the binding (this project's package.json denies that script, so GPU images run it; see
 * docs/operations.md), and they only work with a visible GPU and the CUDA/cuDNN (TensorRT) runtime
 * libraries on the library path.
 *
 * `auto` (the default) therefore does not trust file presence alone: it tries each GPU provider on
 * a one-node graph, exactly as the real session will load it, and keeps the ones that start. A GPU
 * worker whose CUDA libraries are broken runs on the CPU with the reason logged, never silently.
 */
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { ConfigError, describeError } from '../../../shared/errors.js';
import type { ExecutionProvider } from './options.js';

export type GpuProvider = Exclude<ExecutionProvider, 'cpu'>;

/** The provider libraries onnxruntime-node loads from its binding folder. */
export const PROVIDER_LIBRARIES: Readonly<Record<GpuProvider, string>> = Object.freeze({
  cuda: 'libonnxruntime_providers_cuda.so',
  tensorrt: 'libonnxruntime_providers_tensorrt.so',
});

/** What provider selection needs to know about this machine; injected in tests. */
export interface ProviderEnvironment {
  /** Whether the provider's library is installed next to onnxruntime-node's binding. */
  installed(provider: GpuProvider): boolean;
  /** NVIDIA GPUs the kernel driver reports (names); empty when there is no driver. */
  gpus(): Promise<string[]>;
  /** Start the provider on a one-node graph: null when it works, else ONNX Runtime's reason. */
  trial(provider: GpuProvider, deviceId: number): Promise<string | null>;
}

/** Why a provider was or was not chosen, for the start-up log and `doctor`. */
export interface ProviderVerdict {
  provider: ExecutionProvider;
  usable: boolean;
  reason: string;
}

export interface ProviderSelection {
  /** Preference order handed to ONNX Runtime; always ends with `cpu`. */
  providers: ExecutionProvider[];
  gpus: string[];
  verdicts: ProviderVerdict[];
}

export function onnxBindingDir(): string {
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('onnxruntime-node/package.json'));
  return join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
}

/** The real machine: library files, the NVIDIA driver's GPU list, and trial sessions. */
export function defaultProviderEnvironment(): ProviderEnvironment {
  const bindingDir = onnxBindingDir();
  return {
    installed: (provider) => existsSync(join(bindingDir, PROVIDER_LIBRARIES[provider])),
    gpus: listDriverGpus,
    trial: trialSession,
  };
}

/**
 * GPUs from the driver's /proc entries (present wherever the NVIDIA kernel module is loaded, in
 * containers too), else `nvidia-smi`. Seeing a GPU does not mean this process may use it (a
 * container without a device grant sees the host's list): the trial session decides.
 */
export async function listDriverGpus(): Promise<string[]> {
  const root = '/proc/driver/nvidia/gpus';
  try {
    const names = readdirSync(root)
      .sort()
      .map((bus) => /^Model:\s*(.+)$/m.exec(readFileSync(join(root, bus, 'information'), 'utf8'))?.[1]?.trim() ?? `NVIDIA GPU ${bus}`);
    if (names.length > 0) return names;
  } catch {
    // no driver entries: try nvidia-smi
  }
  try {
    const { stdout } = await promisify(execFile)('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader'], { timeout: 10_000 });
    return stdout.split('\n').map((s) => s.trim()).filter((s) => s.length > 0);
  } catch {
    return [];
  }
}

/** One Relu on four floats: the smallest graph every provider accepts. */
async function trialSession(provider: GpuProvider, deviceId: number): Promise<string | null> {
  const [ort, { encodeModel }] = await Promise.all([import('onnxruntime-node'), import('../../model/graph/onnx-proto.js')]);
  const io = (name: string) => ({ name, type: { tensorType: { elemType: 1, shape: { dim: [{ dimValue: 4 }] } } } });
  const bytes = encodeModel({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    producerName: 'gradcam-audit-provider-trial',
    producerVersion: '1',
    graph: { name: 'trial', node: [{ name: 'relu', opType: 'Relu', input: ['x'], output: ['y'], attribute: [] }], initializer: [], input: [io('x')], output: [io('y')] },
  });
  try {
    const session = await ort.InferenceSession.create(bytes, { executionProviders: [{ name: provider, deviceId }], logSeverityLevel: 3 });
    try {
      const out = await session.run({ x: new ort.Tensor('float32', Float32Array.of(-1, 2, -3, 4), [4]) });
      const y = out.y?.data as Float32Array | undefined;
      return y && y[0] === 0 && y[1] === 2 ? null : `${provider} returned a wrong result on the trial graph`;
    } finally {
      await session.release();
    }
  } catch (err) {
    return describeError(err);
  }
}

const INSTALL_HINT = 'install it on a GPU image with `ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules/onnxruntime-node/script/install.js` (Dockerfile target gpu-onnx)';

/**
 * Resolve the preference list.
 * - `auto`: TensorRT and CUDA when a GPU is visible, the provider library is installed and a trial
 *   session starts; then CPU. TensorRT is only kept with CUDA, which runs the nodes TensorRT
 *   leaves out.
 * - an explicit list must be installed as asked (a GPU worker silently on CPU would be 10-50x
 *   slower): a missing library is a ConfigError; a provider that cannot start fails at session
 *   creation with ONNX Runtime's reason.
 */
export async function selectProviders(requested: ExecutionProvider[] | 'auto', env: ProviderEnvironment, deviceId = 0): Promise<ProviderSelection> {
  if (requested !== 'auto') {
    const missing = requested.filter((p): p is GpuProvider => p !== 'cpu' && !env.installed(p));
    if (missing.length > 0) {
      throw new ConfigError(
        '--onnx-providers',
        `ONNX Runtime execution provider ${missing.join(', ')} is not installed (${missing.map((p) => PROVIDER_LIBRARIES[p]).join(', ')} missing next to onnxruntime-node's binding); ${INSTALL_HINT}, or use --onnx-providers cpu`,
      );
    }
    // CPU last as a fallback for nodes a GPU provider does not implement.
    const providers: ExecutionProvider[] = requested.includes('cpu') ? [...requested] : [...requested, 'cpu'];
    return { providers, gpus: await env.gpus(), verdicts: providers.map((provider) => ({ provider, usable: true, reason: 'requested' })) };
  }

  const gpus = await env.gpus();
  const verdicts: ProviderVerdict[] = [];
  const judge = async (provider: GpuProvider): Promise<boolean> => {
    let reason: string | null;
    if (gpus.length === 0) reason = 'no NVIDIA GPU visible (no driver entries under /proc/driver/nvidia, no nvidia-smi)';
    else if (!env.installed(provider)) reason = `${PROVIDER_LIBRARIES[provider]} is not installed; ${INSTALL_HINT}`;
    else reason = await env.trial(provider, deviceId);
    verdicts.push({ provider, usable: reason === null, reason: reason ?? `started on ${gpus[deviceId] ?? `device ${deviceId}`}` });
    return reason === null;
  };
  const cuda = await judge('cuda');
  // TensorRT needs CUDA for the nodes it does not take; without CUDA it is not worth a trial.
  const tensorrt = cuda ? await judge('tensorrt') : (verdicts.push({ provider: 'tensorrt', usable: false, reason: 'needs the CUDA provider, which is not usable' }), false);
  const providers: ExecutionProvider[] = [...(tensorrt ? (['tensorrt'] as const) : []), ...(cuda ? (['cuda'] as const) : []), 'cpu'];
  verdicts.push({ provider: 'cpu', usable: true, reason: 'bundled with onnxruntime-node' });
  return { providers, gpus, verdicts: [...verdicts.filter((v) => v.provider === 'tensorrt'), ...verdicts.filter((v) => v.provider !== 'tensorrt')] };
}
