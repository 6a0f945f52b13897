/**
 * One place that turns "which engine, which backend" into an `Engine`, so the explain command and
 * the worker never import an engine module directly (and never load ONNX Runtime when TF.js runs).
 */
import { ConfigError } from '../../shared/errors.js';
import type { CamMethod } from '../../shared/explain-options.js';
import { needsGradient } from '../../shared/explain-options.js';
import type { Logger } from '../../shared/logger.js';
import type { ModelInput } from '../model/graph/from-sequential.js';
import type { Engine } from './engine.js';
import type { CamPostOptions } from './cam-post.js';
import type { BackendChoice } from './tfjs/backend.js';
import type { OnnxRuntimeOptions } from './onnx/options.js';
import { isOnnxSupported } from './onnx/support.js';
import type { NativeGate } from './native-gate.js';

export const ENGINE_CHOICES = ['auto', 'tfjs', 'onnx'] as const;
export type EngineChoice = (typeof ENGINE_CHOICES)[number];

export interface CreateEngineOptions {
  spec: ModelInput;
  /** Default `auto`: ONNX Runtime when it can run the model, else TF.js. */
  engine?: EngineChoice;
  /** Target: node, tensor or Keras layer name; default the feature map the head pools (walker.ts). */
  layer?: string;
  /** TF.js backend; default `auto`. */
  backend?: BackendChoice;
  logger?: Logger;
  camPost?: CamPostOptions;
  /** ONNX Runtime settings (providers, threads, graph cache); defaults in `defaultOnnxRuntimeOptions()`. */
  onnx?: Partial<OnnxRuntimeOptions>;
  /**
   * The CAM methods the engine will be asked for, when known (`explain`). Default: any. When all are
   * gradient-free, ONNX Runtime runs any model it can run forward, differentiable head or not.
   */
  methods?: readonly CamMethod[];
  /** The ONNX engine's native calls go through it (native-gate.ts): set where the engine runs in a thread that will be ended. */
  nativeGate?: NativeGate;
}

export function parseEngineChoice(value: string, flag = '--engine'): EngineChoice {
  if ((ENGINE_CHOICES as readonly string[]).includes(value)) return value as EngineChoice;
  throw new ConfigError(flag, `expected one of ${ENGINE_CHOICES.join(', ')}, got "${value}"`);
}

export async function createEngine(options: CreateEngineOptions): Promise<Engine> {
  const choice = options.engine ?? 'auto';
  switch (choice) {
    case 'onnx':
    case 'auto': {
      // Every gradient method has the same admission check, so only the model and layer decide; anything the
      // compiler has no backward rule for runs on TF.js (autodiff) instead, with the reason logged,
      // unless only gradient-free methods were asked for (then a forward-only graph serves them).
      // A forced TF.js backend (`--backend wasm`, ...) only means something to TF.js: keep auto there.
      const forcedTfjs = choice === 'auto' && options.backend !== undefined && options.backend !== 'auto';
      const gradientFree = options.methods !== undefined && options.methods.length > 0 && !options.methods.some(needsGradient);
      const support = forcedTfjs
        ? { ok: false as const, reason: `--backend ${options.backend} selects a TF.js backend` }
        : isOnnxSupported(options.spec, gradientFree ? 'eigencam' : 'gradcam', options.layer);
      if (support.ok) {
        try {
          const { createOnnxEngine } = await import('./onnx/engine.js');
          // The engine opens a session for the first method it serves, the others on first use.
          const methods = options.methods ? [...options.methods] : undefined;
          return await createOnnxEngine({ spec: options.spec, layer: options.layer, logger: options.logger, camPost: options.camPost, runtime: options.onnx, methods, nativeGate: options.nativeGate });
        } catch (err) {
          // An explicit request must fail loudly (e.g. a missing CUDA provider); auto degrades.
          if (choice === 'onnx') throw err;
          options.logger?.warn({ err }, 'ONNX Runtime engine failed to start; falling back to the TF.js engine');
        }
      } else {
        const log = choice === 'onnx' ? options.logger?.warn : options.logger?.info;
        log?.call(options.logger, { reason: support.reason }, `ONNX engine cannot run ${options.spec.name} (${support.reason}); using the TF.js engine`);
      }
      const { createTfjsEngine } = await import('./tfjs/engine.js');
      return createTfjsEngine({ spec: options.spec, layer: options.layer, backend: options.backend, logger: options.logger, camPost: options.camPost });
    }
    case 'tfjs': {
      const { createTfjsEngine } = await import('./tfjs/engine.js');
      return createTfjsEngine({ spec: options.spec, layer: options.layer, backend: options.backend, logger: options.logger, camPost: options.camPost });
    }
    default:
      throw new ConfigError('--engine', `expected one of ${ENGINE_CHOICES.join(', ')}, got "${String(choice)}"`);
  }
}
