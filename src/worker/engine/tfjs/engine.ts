/**
 * The TF.js engine: one forward pass per batch through the convolution stack, then gradients
 * through the head only (target layer → logits), never through the convolutions. The backward
 * therefore costs about as much as the head's forward, a small fraction of the whole network.
 *
 * Several targets per image are served by one backward pass: the target activation is expanded
 * to M = Σ targets rows and each row gets its own one-hot mask. Because the score is summed over
 * rows and rows do not interact in the head, each row's gradient is exactly its own dS/dA.
 */
import * as tf from '@tensorflow/tfjs';
import type { CamMap, Engine, EngineImageResult, EngineInfo, EngineRequest, PreprocessedImage } from '../engine.js';
import type { ModelSpec } from '../../model/spec.js';
import type { ScoreMode } from '../../../shared/explain-options.js';
import { InvalidInputError } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/logger.js';
import { silentLogger } from '../../../shared/logger.js';
import { DEFAULT_CAM_POST_OPTIONS, postProcessCam } from '../cam-post.js';
import type { CamPostOptions } from '../cam-post.js';
import { resolveTargets, validateRequest } from '../targets.js';
import type { ActiveBackend, BackendChoice, BackendDeps } from './backend.js';
import { defaultBackendDeps, initBackend } from './backend.js';
import { compileModel } from './build.js';
import type { CompiledModel } from './build.js';
import { camMaps } from './cam-methods.js';

export interface TfjsEngineOptions {
  spec: ModelSpec;
  /** Target layer; default `block5_conv3` when present, else the last conv layer. */
  layer?: string;
  /** Default `auto` (node-gpu, node, wasm, cpu in that order). */
  backend?: BackendChoice;
  logger?: Logger;
  /** Degenerate-map thresholds; defaults in `DEFAULT_CAM_POST_OPTIONS`. */
  camPost?: CamPostOptions;
  /** Test seam for backend discovery. */
  backendDeps?: BackendDeps;
}

export async function createTfjsEngine(options: TfjsEngineOptions): Promise<TfjsEngine> {
  const logger = options.logger ?? silentLogger();
  const backend = await initBackend(options.backend ?? 'auto', options.backendDeps ?? defaultBackendDeps(logger));
  const model = compileModel(options.spec, options.layer);
  return new TfjsEngine(model, backend, options.spec.weightsHash, options.camPost ?? DEFAULT_CAM_POST_OPTIONS);
}

/** dS/dA for rows of the target activation: row r's score is class `classes[r]` of its own head output. */
export function headGradient(model: CompiledModel, aRows: tf.Tensor4D, classes: readonly number[], score: ScoreMode): tf.Tensor4D {
  const m = aRows.shape[0];
  if (classes.length !== m) throw new RangeError(`${classes.length} classes for ${m} activation rows`);
  // A one-hot mask rather than gather: the wasm backend lacks UnsortedSegmentSum, gather's gradient.
  const mask = new Float32Array(m * model.numClasses);
  classes.forEach((c, r) => (mask[r * model.numClasses + c] = 1));
  return tf.tidy(() => {
    const maskT = tf.tensor2d(mask, [m, model.numClasses]);
    const total = (a: tf.Tensor): tf.Scalar => {
      const logits = model.head(a as tf.Tensor4D);
      const s = score === 'logit' ? logits : model.probabilities(logits);
      return tf.sum(tf.mul(s, maskT));
    };
    return tf.grad(total)(aRows) as tf.Tensor4D;
  });
}

export class TfjsEngine implements Engine {
  readonly info: EngineInfo;
  private disposed = false;

  constructor(
    private readonly model: CompiledModel,
    backend: ActiveBackend,
    weightsHash: string,
    private readonly camPost: CamPostOptions,
  ) {
    this.info = {
      engine: 'tfjs',
      backend: backend.name,
      device: backend.device,
      modelName: model.name,
      layer: model.layer,
      inputHeight: model.inputShape[0],
      inputWidth: model.inputShape[1],
      numClasses: model.numClasses,
      weightsHash,
    };
  }

  async predict(images: PreprocessedImage[]): Promise<Float32Array[]> {
    if (images.length === 0) return [];
    const { probs } = await this.forward(images, false);
    return probs;
  }

  async explain(request: EngineRequest): Promise<EngineImageResult[]> {
    const model = this.model;
    validateRequest(request, model.numClasses);
    if (request.images.length === 0) return [];
    const { a, probs, logits } = await this.forward(request.images, true);
    try {
      const rows: number[] = [];
      const classes: number[] = [];
      probs.forEach((p, i) => {
        for (const c of resolveTargets(request.targets, request.topK, p)) {
          rows.push(i);
          classes.push(c);
        }
      });
      const [h, w] = model.targetShape;
      const identity = rows.length === probs.length;
      const [mapsT, gmaxT] = tf.tidy(() => {
        // Expand only when some image has several targets; top-1 reuses the activation as is.
        const aRows = identity ? a : (tf.gather(a, tf.tensor1d(rows, 'int32')) as tf.Tensor4D);
        const g = headGradient(model, aRows, classes, request.score);
        return [camMaps(request.method, aRows, g), tf.max(tf.abs(g), [1, 2, 3])];
      });
      const [maps, gmax] = await Promise.all([mapsT.data() as Promise<Float32Array>, gmaxT.data() as Promise<Float32Array>]);
      mapsT.dispose();
      gmaxT.dispose();

      const results: EngineImageResult[] = probs.map((p, i) => ({ probabilities: p, logits: logits[i], cams: [] as CamMap[] }));
      rows.forEach((i, r) => {
        const c = classes[r];
        const probability = probs[i][c];
        const score = request.score === 'logit' ? logits[i][c] : probability;
        results[i].cams.push(
          postProcessCam(
            maps.subarray(r * h * w, (r + 1) * h * w),
            { classIndex: c, score, scoreMode: request.score, probability, gradientMaxAbs: gmax[r], height: h, width: w },
            this.camPost,
          ),
        );
      });
      return results;
    } finally {
      a.dispose();
    }
  }

  private async forward(images: PreprocessedImage[], keepActivation: true): Promise<{ a: tf.Tensor4D; probs: Float32Array[]; logits: Float32Array[] }>;
  private async forward(images: PreprocessedImage[], keepActivation: false): Promise<{ a: null; probs: Float32Array[]; logits: Float32Array[] }>;
  private async forward(images: PreprocessedImage[], keepActivation: boolean): Promise<{ a: tf.Tensor4D | null; probs: Float32Array[]; logits: Float32Array[] }> {
    if (this.disposed) throw new Error('engine is disposed');
    const x = this.toBatch(images);
    const a = this.model.features(x);
    x.dispose();
    const [logitsT, probsT] = tf.tidy(() => {
      const l = this.model.head(a);
      return [l, this.model.probabilities(l)];
    });
    if (!keepActivation) a.dispose();
    const [l, p] = await Promise.all([logitsT.data() as Promise<Float32Array>, probsT.data() as Promise<Float32Array>]);
    logitsT.dispose();
    probsT.dispose();
    const c = this.model.numClasses;
    const split = (flat: Float32Array): Float32Array[] => images.map((_, i) => flat.slice(i * c, (i + 1) * c));
    return { a: keepActivation ? a : null, probs: split(p), logits: split(l) };
  }

  private toBatch(images: PreprocessedImage[]): tf.Tensor4D {
    const [h, w, c] = this.model.inputShape;
    const size = h * w * c;
    const flat = new Float32Array(images.length * size);
    images.forEach((img, i) => {
      if (img.height !== h || img.width !== w || img.data.length !== size) {
        throw new InvalidInputError(
          'INPUT_SHAPE',
          `image ${i} is ${img.width}x${img.height} with ${img.data.length} values; the model expects ${w}x${h}x${c} = ${size} (resize it in preprocessing)`,
        );
      }
      flat.set(img.data, i * size);
    });
    return tf.tensor4d(flat, [images.length, h, w, c]);
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    this.model.dispose();
  }
}
