/**
 * `explain` flags → validated options. Defaults live in `DEFAULT_EXPLAIN_OPTIONS` (shared, since
 * workers record the same options) and `EXPLAIN_COMMAND_DEFAULTS` (local-command only). Every
 * error is a ConfigError naming the flag and what it expects.
 */
import { ConfigError } from '../../shared/errors.js';
import { CAM_METHODS, COLORMAPS, DEFAULT_EXPLAIN_OPTIONS, OVERLAY_FORMATS, RESIZE_MODES, SCORE_MODES } from '../../shared/explain-options.js';
import type { ExplainOptions, TargetSpec } from '../../shared/explain-options.js';
import type { BackendChoice } from '../engine/tfjs/backend.js';
import { parseBackendChoice } from '../engine/tfjs/backend.js';
import type { EngineChoice } from '../engine/factory.js';
import { parseEngineChoice } from '../engine/factory.js';
import type { OnnxRuntimeOptions, RawOnnxFlags } from '../engine/onnx/options.js';
import { parseOnnxFlags } from '../engine/onnx/options.js';

export interface ExplainCommandOptions extends ExplainOptions {
  images: string[];
  /** Weights: path, s3:// URI or http(s) URL (`.h5` or TF.js `model.json`). */
  weights: string;
  /** Output directory. Default `.`. */
  out: string;
  /** Labels file for non-ImageNet heads; default ImageNet for 1000-class models. */
  labels?: string;
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
export interface RawExplainFlags extends RawOnnxFlags {
  weights?: string;
  out?: string;
  topK?: string;
  targets?: string;
  method?: string;
  score?: string;
  layer?: string;
  labels?: string;
  backend?: string;
  engine?: string;
  batchSize?: string;
  resize?: string;
  colormap?: string;
  alpha?: string;
  format?: string;
  maxSide?: string;
}

export function parseExplainFlags(images: string[], flags: RawExplainFlags): ExplainCommandOptions {
  if (images.length === 0) throw new ConfigError('IMAGE', 'name at least one image file');
  if (!flags.weights) throw new ConfigError('--weights', 'required: a .h5 weights file or a TF.js model.json (path, s3:// URI or http(s) URL)');
  const d = DEFAULT_EXPLAIN_OPTIONS;
  const options: ExplainCommandOptions = {
    images,
    weights: flags.weights,
    out: flags.out ?? EXPLAIN_COMMAND_DEFAULTS.out,
    labels: flags.labels,
    backend: flags.backend === undefined ? EXPLAIN_COMMAND_DEFAULTS.backend : parseBackendChoice(flags.backend),
    engine: flags.engine === undefined ? EXPLAIN_COMMAND_DEFAULTS.engine : parseEngineChoice(flags.engine),
    batchSize: flags.batchSize === undefined ? EXPLAIN_COMMAND_DEFAULTS.batchSize : integer('--batch-size', flags.batchSize, 1, 256),
    onnx: parseOnnxFlags(flags),
    topK: flags.topK === undefined ? d.topK : integer('--top-k', flags.topK, 1, 1000),
    targets: flags.targets === undefined ? d.targets : parseTargets(flags.targets),
    method: oneOf('--method', flags.method, CAM_METHODS, d.method),
    score: oneOf('--score', flags.score, SCORE_MODES, d.score),
    layer: flags.layer === undefined ? undefined : nonEmpty('--layer', flags.layer),
    resize: oneOf('--resize', flags.resize, RESIZE_MODES, d.resize),
    colormap: oneOf('--colormap', flags.colormap, COLORMAPS, d.colormap),
    alpha: flags.alpha === undefined ? d.alpha : fraction('--alpha', flags.alpha),
    overlayFormat: oneOf('--format', flags.format, OVERLAY_FORMATS, d.overlayFormat),
    maxSide: flags.maxSide === undefined ? undefined : integer('--max-side', flags.maxSide, 16, 65_535),
  };
  return options;
}

/** `top1`, `topk`, or comma-separated class indices such as `281,285`. */
export function parseTargets(value: string): TargetSpec {
  const v = value.trim();
  if (v === 'top1') return { kind: 'top1' };
  if (v === 'topk') return { kind: 'topk' };
  const parts = v.split(',').map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => !/^\d+$/.test(p))) {
    throw new ConfigError('--targets', `expected top1, topk or comma-separated class indices such as 281,285; got "${value}"`);
  }
  const indices = parts.map(Number);
  if (new Set(indices).size !== indices.length) throw new ConfigError('--targets', `duplicate class index in "${value}"`);
  return { kind: 'indices', indices };
}

function oneOf<T extends string>(flag: string, value: string | undefined, allowed: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(flag, `expected one of ${allowed.join(', ')}, got "${value}"`);
}

function integer(flag: string, value: string, min: number, max: number): number {
  const n = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new ConfigError(flag, `expected an integer from ${min} to ${max}, got "${value}"`);
  return n;
}

function fraction(flag: string, value: string): number {
  const n = value.trim() === '' ? Number.NaN : Number(value);
  if (!Number.isFinite(n) || n < 0 || n > 1) throw new ConfigError(flag, `expected a number from 0 to 1, got "${value}"`);
  return n;
}

function nonEmpty(flag: string, value: string): string {
  if (value.trim() === '') throw new ConfigError(flag, 'must not be empty');
  return value.trim();
}
