/**
 * One place that turns "which engine, which backend" into an `Engine`, so the explain command and
 * the worker never import an engine module directly (and never load ONNX Runtime when TF.js runs).
 */
import { ConfigError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { ModelSpec } from '../model/spec.js';
import type { Engine } from './engine.js';
import type { CamPostOptions } from './cam-post.js';
import type { BackendChoice } from './tfjs/backend.js';

export const ENGINE_CHOICES = ['auto', 'tfjs', 'onnx'] as const;
export type EngineChoice = (typeof ENGINE_CHOICES)[number];

export interface CreateEngineOptions {
  spec: ModelSpec;
  /** Default `auto`: currently TF.js. */
  engine?: EngineChoice;
  /** Target layer; default `block5_conv3` when present, else the last conv layer. */
  layer?: string;
  /** TF.js backend; default `auto`. */
  backend?: BackendChoice;
  logger?: Logger;
  camPost?: CamPostOptions;
}

export function parseEngineChoice(value: string, flag = '--engine'): EngineChoice {
  if ((ENGINE_CHOICES as readonly string[]).includes(value)) return value as EngineChoice;
  throw new ConfigError(flag, `expected one of ${ENGINE_CHOICES.join(', ')}, got "${value}"`);
}

export async function createEngine(options: CreateEngineOptions): Promise<Engine> {
  const choice = options.engine ?? 'auto';
  switch (choice) {
    case 'onnx':
      throw new ConfigError('--engine', 'the onnx engine is not available in this build; use --engine tfjs');
    case 'auto':
    case 'tfjs': {
      const { createTfjsEngine } = await import('./tfjs/engine.js');
      return createTfjsEngine({ spec: options.spec, layer: options.layer, backend: options.backend, logger: options.logger, camPost: options.camPost });
    }
    default:
      throw new ConfigError('--engine', `expected one of ${ENGINE_CHOICES.join(', ')}, got "${String(choice)}"`);
  }
}
