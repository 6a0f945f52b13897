/**
 * Which ONNX Runtime execution providers can run here. onnxruntime-node bundles the CPU provider;
 * the CUDA and TensorRT providers are shared libraries its install script downloads next to the
 * binding (this project's package.json denies that script, so GPU images must run it; see
 * docs/operations.md). A provider is usable when its library file is present.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ConfigError } from '../../../shared/errors.js';
import type { ExecutionProvider } from './options.js';

const LIBRARIES: Record<Exclude<ExecutionProvider, 'cpu'>, string> = {
  cuda: 'libonnxruntime_providers_cuda.so',
  tensorrt: 'libonnxruntime_providers_tensorrt.so',
};

export interface ProviderProbe {
  /** Whether the provider's library is installed. */
  installed(provider: ExecutionProvider): boolean;
}

/** Looks for provider libraries next to onnxruntime-node's native binding. */
export function defaultProviderProbe(): ProviderProbe {
  const require = createRequire(import.meta.url);
  const packageDir = dirname(require.resolve('onnxruntime-node/package.json'));
  const bindingDir = join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  return {
    installed(provider) {
      if (provider === 'cpu') return true;
      return existsSync(join(bindingDir, LIBRARIES[provider]));
    },
  };
}

/**
 * Resolve the preference list: `auto` keeps TensorRT and CUDA when installed, then CPU; an explicit
 * list must be installed as asked, since silently running a GPU worker on CPU would be 10x slower.
 */
export function resolveProviders(requested: ExecutionProvider[] | 'auto', probe: ProviderProbe): ExecutionProvider[] {
  if (requested === 'auto') {
    const gpu = (['tensorrt', 'cuda'] as const).filter((p) => probe.installed(p));
    return [...gpu, 'cpu'];
  }
  const missing = requested.filter((p) => !probe.installed(p));
  if (missing.length > 0) {
    throw new ConfigError(
      '--onnx-providers',
      `ONNX Runtime execution provider ${missing.join(', ')} is not installed (its library is missing next to onnxruntime-node's binding); ` +
        'install it with `ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node` on a GPU image, or use cpu',
    );
  }
  // CPU last as a fallback for nodes a GPU provider does not implement.
  return requested.includes('cpu') ? requested : [...requested, 'cpu'];
}
