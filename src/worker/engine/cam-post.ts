/**
 * Backend-independent CAM post-processing: turn a raw (already ReLU'd) class activation map into the
 * normalised grid the manifests carry, and decide when a map carries no information. Both engines
 * (TF.js and ONNX) call this, so the same degenerate rules and messages apply whatever ran.
 */
import type { CamMap } from './engine.js';
import type { ScoreMode } from '../../shared/explain-options.js';

/**
 * Thresholds for the degenerate-map rules. A softmax probability within `saturationMargin` of 1
 * has a gradient of roughly p·(1-p) times the logit gradient, and float32 computes 1-p with
 * catastrophic cancellation there, so the map is numerical noise even when it is not exactly zero.
 */
export interface CamPostOptions {
  /** `1 - p` below this counts as a saturated softmax. Default 1e-6. */
  saturationMargin: number;
  /** A probability above this makes saturation the likely cause of an all-zero map. Default 0.99. */
  likelySaturated: number;
}

export const DEFAULT_CAM_POST_OPTIONS: Readonly<CamPostOptions> = Object.freeze({
  saturationMargin: 1e-6,
  likelySaturated: 0.99,
});

/** What the engine knows about the map besides its values. */
export interface CamContext {
  classIndex: number;
  /** The differentiated score S (probability or logit). */
  score: number;
  scoreMode: ScoreMode;
  /** The softmax probability of the class, whatever the score mode. */
  probability: number;
  /** max |dS/dA| over the target activation of this image and class; null for gradient-free methods (no gradient rules apply). */
  gradientMaxAbs: number | null;
  height: number;
  width: number;
}

const LOGIT_HINT = 'use --score logit, which differentiates the pre-softmax score and does not saturate';

/** Normalise `raw` (length height*width, row-major) to [0,1] by its max, or flag it as degenerate. */
export function postProcessCam(raw: Float32Array, ctx: CamContext, options: CamPostOptions = DEFAULT_CAM_POST_OPTIONS): CamMap {
  if (raw.length !== ctx.height * ctx.width) {
    throw new RangeError(`CAM has ${raw.length} values, expected ${ctx.height}x${ctx.width}`);
  }
  let max = -Infinity;
  let sum = 0;
  let finite = true;
  for (let i = 0; i < raw.length; i++) {
    const v = raw[i];
    if (!Number.isFinite(v)) {
      finite = false;
      break;
    }
    if (v > max) max = v;
    sum += v;
  }
  const base = { classIndex: ctx.classIndex, score: ctx.score, height: ctx.height, width: ctx.width };
  const zeros = (): Float32Array => new Float32Array(raw.length);

  if (!finite || (ctx.gradientMaxAbs !== null && !Number.isFinite(ctx.gradientMaxAbs))) {
    return { ...base, grid: zeros(), rawMax: Number.NaN, rawMean: Number.NaN, degenerate: 'CAM contains NaN or Inf values (non-finite activations or gradients)' };
  }
  const rawMean = raw.length > 0 ? sum / raw.length : 0;
  const rawMax = raw.length > 0 ? max : 0;
  // A saturated softmax starves gradients only; gradient-free maps are judged on their values alone.
  const gradientFree = ctx.gradientMaxAbs === null;
  const saturated = !gradientFree && ctx.scoreMode === 'prob' && 1 - ctx.probability < options.saturationMargin;
  if (saturated) {
    return {
      ...base,
      grid: zeros(),
      rawMax,
      rawMean,
      degenerate: `vanishing gradient: softmax saturated (p=${ctx.probability.toPrecision(8)} for class ${ctx.classIndex}); ${LOGIT_HINT}`,
    };
  }
  if (ctx.gradientMaxAbs === 0) {
    const hint = ctx.scoreMode === 'prob' && ctx.probability > options.likelySaturated ? `; the softmax is nearly saturated, ${LOGIT_HINT}` : '';
    return { ...base, grid: zeros(), rawMax, rawMean, degenerate: `gradient of the score is zero everywhere at the target layer${hint}` };
  }
  if (!(rawMax > 0)) {
    const hint = !gradientFree && ctx.scoreMode === 'prob' && ctx.probability > options.likelySaturated ? `; the softmax is nearly saturated, ${LOGIT_HINT}` : '';
    return { ...base, grid: zeros(), rawMax, rawMean, degenerate: `CAM is zero or negative everywhere (max ${rawMax}); nothing supports class ${ctx.classIndex}${hint}` };
  }
  const grid = new Float32Array(raw.length);
  const inv = 1 / rawMax;
  for (let i = 0; i < raw.length; i++) grid[i] = raw[i] * inv;
  return { ...base, grid, rawMax, rawMean, degenerate: null };
}
