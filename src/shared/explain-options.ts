import { parseEnum, parseIntInRange, parseNumberInRange } from './config.js';
import { ConfigError } from './errors.js';
import { parseLayerName } from './model-options.js';

/**
 * What to explain and how. These options travel in every job payload, are recorded in every
 * manifest, and are part of the idempotency key of an output, so they live in `shared`.
 */

export const CAM_METHODS = ['gradcam', 'gradcam++', 'hirescam', 'xgradcam', 'layercam', 'eigencam', 'scorecam'] as const;
export type CamMethod = (typeof CAM_METHODS)[number];

/**
 * Methods that read no gradient: Eigen-CAM (principal component of the target activation) and
 * Score-CAM (masked forward passes). They run on any model an engine can run forward, including
 * heads the ONNX compiler cannot differentiate, and a saturated softmax does not zero them.
 */
export const GRADIENT_FREE_METHODS: readonly CamMethod[] = ['eigencam', 'scorecam'];

export function needsGradient(method: CamMethod): boolean {
  return !GRADIENT_FREE_METHODS.includes(method);
}

/** `prob`: softmax probability (Chollet's seed). `logit`: pre-softmax score (Grad-CAM paper). */
export const SCORE_MODES = ['prob', 'logit'] as const;
export type ScoreMode = (typeof SCORE_MODES)[number];

export const RESIZE_MODES = ['nearest', 'bilinear'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

export const COLORMAPS = ['viridis', 'jet', 'inferno', 'gray'] as const;
export type Colormap = (typeof COLORMAPS)[number];

export const OVERLAY_FORMATS = ['png', 'jpeg', 'webp'] as const;
export type OverlayFormat = (typeof OVERLAY_FORMATS)[number];

/** Which classes get a CAM: the best one, each of the top-k, or explicit class indices. */
export type TargetSpec = { kind: 'top1' } | { kind: 'topk' } | { kind: 'indices'; indices: number[] };

export interface ExplainOptions {
  /** Number of decoded predictions. Default 5, as Keras' `decode_predictions`. */
  topK: number;
  /** Classes to explain. Default top-1. */
  targets: TargetSpec;
  /** CAM method. Default `gradcam`. */
  method: CamMethod;
  /** Score differentiated (Score-CAM: the score its masked forwards compare). Default `prob`, as the seed. */
  score: ScoreMode;
  /** Target layer name; undefined means `block5_conv3` for VGG16, else the last 4-D conv output. */
  layer?: string;
  /** Resize to the model input. Default `nearest`, as `keras.utils.load_img`. */
  resize: ResizeMode;
  /** Overlay colormap. Default `viridis`, as the seed. */
  colormap: Colormap;
  /** Heatmap opacity in the overlay, 0..1. Default 0.5. */
  alpha: number;
  /** Overlay encoding. Default `jpeg`. */
  overlayFormat: OverlayFormat;
  /**
   * Cap on the overlay's longer side in pixels; undefined keeps the original size. Default
   * `DEFAULT_MAX_SIDE` (1024); `--max-side full` asks for the original size.
   */
  maxSide?: number;
  /**
   * Measure faithfulness (two extra forward rows per image; docs/audit-metrics.md). Only present
   * when true, so runs without it keep their option hash and run id.
   */
  faithfulness?: true;
}

/**
 * The overlay's default cap: a 1600x1200 photo's overlay is 1024x768, which costs 2.4x less CPU to
 * compose and encode than full size (docs/benchmarks.md) and shows the map as well (a 224x224 input
 * map has 14x14 cells). Smaller images are never enlarged. `--max-side full` keeps the original size.
 */
export const DEFAULT_MAX_SIDE = 1024;

/** The `--max-side` value that asks for the original size. */
export const MAX_SIDE_FULL = 'full';

export const DEFAULT_EXPLAIN_OPTIONS: Readonly<ExplainOptions> = Object.freeze({
  topK: 5,
  targets: { kind: 'top1' } as TargetSpec,
  method: 'gradcam',
  score: 'prob',
  resize: 'nearest',
  colormap: 'viridis',
  alpha: 0.5,
  overlayFormat: 'jpeg',
  maxSide: DEFAULT_MAX_SIDE,
});

/** `--max-side` help, shared by every command that takes the flag. */
export const MAX_SIDE_HELP = `cap on the overlay's longer side in pixels, 16-65535, or ${MAX_SIDE_FULL} for the original size (default: ${DEFAULT_MAX_SIDE}; smaller images keep their size)`;

/** `--method` help, shared by every command that takes the flag. */
export const CAM_METHOD_HELP = `${CAM_METHODS.join('|')}; eigencam and scorecam read no gradient, and scorecam costs one forward pass per channel of the target layer and image (512 for VGG16) (default: ${DEFAULT_EXPLAIN_OPTIONS.method})`;

/** `--faithfulness` help, shared by every command that takes the flag. */
export const FAITHFULNESS_HELP =
  'also measure faithfulness: the drop of the class probability when the top 20% of the map is blurred, minus the drop for a random 20% rectangle (two extra forward passes per image)';

/** The explanation flags shared by `explain` and `enqueue`, as commander hands them over. */
export interface RawExplainOptionFlags {
  topK?: string;
  targets?: string;
  method?: string;
  score?: string;
  layer?: string;
  resize?: string;
  colormap?: string;
  alpha?: string;
  format?: string;
  maxSide?: string;
  faithfulness?: boolean;
}

/** Most explicit targets one job may ask for (each costs a backward row per image). */
export const MAX_TARGET_INDICES = 64;

/** Validate the explanation flags once, for every command; each error names its flag. */
export function parseExplainOptionFlags(flags: RawExplainOptionFlags): ExplainOptions {
  const d = DEFAULT_EXPLAIN_OPTIONS;
  const options: ExplainOptions = {
    topK: flags.topK === undefined ? d.topK : parseIntInRange('--top-k', flags.topK, 1, 1000),
    targets: flags.targets === undefined ? d.targets : parseTargets(flags.targets),
    method: flags.method === undefined ? d.method : parseEnum('--method', flags.method, CAM_METHODS),
    score: flags.score === undefined ? d.score : parseEnum('--score', flags.score, SCORE_MODES),
    resize: flags.resize === undefined ? d.resize : parseEnum('--resize', flags.resize, RESIZE_MODES),
    colormap: flags.colormap === undefined ? d.colormap : parseEnum('--colormap', flags.colormap, COLORMAPS),
    alpha: flags.alpha === undefined ? d.alpha : parseNumberInRange('--alpha', flags.alpha, 0, 1),
    overlayFormat: flags.format === undefined ? d.overlayFormat : parseEnum('--format', flags.format, OVERLAY_FORMATS),
  };
  if (flags.faithfulness === true) options.faithfulness = true;
  const maxSide = flags.maxSide === undefined ? d.maxSide : flags.maxSide.trim() === MAX_SIDE_FULL ? undefined : parseIntInRange('--max-side', flags.maxSide, 16, 65_535);
  if (maxSide !== undefined) options.maxSide = maxSide;
  if (flags.layer !== undefined) {
    options.layer = parseLayerName(flags.layer);
  }
  return options;
}

/** `top1`, `topk`, or comma-separated class indices such as `281,285` (checked against the model by the engine). */
export function parseTargets(value: string): TargetSpec {
  const v = value.trim();
  if (v === 'top1') return { kind: 'top1' };
  if (v === 'topk') return { kind: 'topk' };
  const parts = v.split(',').map((p) => p.trim());
  if (parts.some((p) => !/^\d{1,6}$/.test(p))) {
    throw new ConfigError('--targets', `expected top1, topk or comma-separated class indices such as 281,285, got "${value}"`);
  }
  const indices = [...new Set(parts.map(Number))];
  if (indices.length > MAX_TARGET_INDICES) throw new ConfigError('--targets', `expected at most ${MAX_TARGET_INDICES} class indices, got ${indices.length}`);
  return { kind: 'indices', indices };
}
