/**
 * What to explain and how. These options travel in every job payload, are recorded in every
 * manifest, and are part of the idempotency key of an output, so they live in `shared`.
 */

export const CAM_METHODS = ['gradcam', 'gradcam++', 'hirescam', 'xgradcam', 'layercam'] as const;
export type CamMethod = (typeof CAM_METHODS)[number];

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
  /** Score differentiated. Default `prob`, as the seed. */
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
  /** Cap on the overlay's longer side in pixels; undefined keeps the original size. */
  maxSide?: number;
}

export const DEFAULT_EXPLAIN_OPTIONS: Readonly<ExplainOptions> = Object.freeze({
  topK: 5,
  targets: { kind: 'top1' } as TargetSpec,
  method: 'gradcam',
  score: 'prob',
  resize: 'nearest',
  colormap: 'viridis',
  alpha: 0.5,
  overlayFormat: 'jpeg',
});
