/**
 * `explain` flags → validated options. Defaults live in `DEFAULT_EXPLAIN_OPTIONS` (shared, since
 * workers record the same options) and `EXPLAIN_COMMAND_DEFAULTS` (local-command only). Every
 * error is a ConfigError naming the flag and what it expects.
 */
import { ConfigError } from '../../shared/errors.js';
import { parseIntInRange } from '../../shared/config.js';
import { parseModelOptionFlags, type ModelOptions, type RawModelOptionFlags } from '../../shared/model-options.js';
import { parseExplainOptionFlags, type ExplainOptions, type RawExplainOptionFlags } from '../../shared/explain-options.js';
import type { BackendChoice } from '../engine/tfjs/backend-choice.js';
import { parseBackendChoice } from '../engine/tfjs/backend-choice.js';
import type { EngineChoice } from '../engine/factory.js';
import { parseEngineChoice } from '../engine/factory.js';
import type { OnnxRuntimeOptions, RawOnnxFlags } from '../engine/onnx/options.js';
import { parseOnnxFlags } from '../engine/onnx/options.js';

export interface ExplainCommandOptions extends ExplainOptions, ModelOptions {
  images: string[];
  /** Weights: path, s3:// URI or http(s) URL (`.h5` or TF.js `model.json`). */
  weights: string;
  /** Output directory. Default `.`. */
  out: string;
  /** Default `auto`. */
  backend: BackendChoice;
  /** Default `auto`. */
  engine: EngineChoice;
  /** Images per engine call. Default 8. */
  batchSize: number;
  /** ONNX Runtime settings (providers, threads, graph cache); unset fields keep their defaults. */
  onnx: Partial<OnnxRuntimeOptions>;
}

export const EXPLAIN_COMMAND_DEFAULTS = Object.freeze({ out: '.', backend: 'auto' as BackendChoice, engine: 'auto' as EngineChoice, batchSize: 8 });

/** Raw flag values as commander hands them over (strings, or undefined when not given). */
export interface RawExplainFlags extends RawOnnxFlags, RawExplainOptionFlags, RawModelOptionFlags {
  weights?: string;
  out?: string;
  backend?: string;
  engine?: string;
  batchSize?: string;
}

export function parseExplainFlags(images: string[], flags: RawExplainFlags): ExplainCommandOptions {
  if (images.length === 0) throw new ConfigError('IMAGE', 'name at least one image file');
  if (!flags.weights) throw new ConfigError('--weights', 'required: a .h5 weights file or a TF.js model.json (path, s3:// URI or http(s) URL)');
  const options: ExplainCommandOptions = {
    ...parseExplainOptionFlags(flags),
    ...parseModelOptionFlags(flags),
    images,
    weights: flags.weights,
    out: flags.out ?? EXPLAIN_COMMAND_DEFAULTS.out,
    backend: flags.backend === undefined ? EXPLAIN_COMMAND_DEFAULTS.backend : parseBackendChoice(flags.backend),
    engine: flags.engine === undefined ? EXPLAIN_COMMAND_DEFAULTS.engine : parseEngineChoice(flags.engine),
    batchSize: flags.batchSize === undefined ? EXPLAIN_COMMAND_DEFAULTS.batchSize : parseIntInRange('--batch-size', flags.batchSize, 1, 256),
    onnx: parseOnnxFlags(flags),
  };
  return options;
}
