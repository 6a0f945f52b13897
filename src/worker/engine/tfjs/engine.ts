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
import type { ModelInput } from '../../model/graph/from-sequential.js';
import { toModelGraph } from '../../model/graph/from-sequential.js';
import type { ScoreMode } from '../../../shared/explain-options.js';
import { needsGradient } from '../../../shared/explain-options.js';
import { EngineDisposedError, InvalidInputError } from '../../../shared/errors.js';
import type { Logger } from '../../../shared/logger.js';
import { silentLogger } from '../../../shared/logger.js';
import { DEFAULT_CAM_POST_OPTIONS, postProcessCam } from '../cam-post.js';
import type { CamPostOptions } from '../cam-post.js';
import { resolveTargets, targetCount, validateRequest } from '../targets.js';
import type { ActiveBackend, BackendChoice, BackendDeps } from './backend.js';
import { defaultBackendDeps, initBackend } from './backend.js';
import { compileModel, repeatRows } from './build.js';
import type { CompiledModel, HeadInputs } from './build.js';
import { camMaps } from './cam-methods.js';
import { explainGradientFree } from '../gradient-free/explain.js';
import { measureFaithfulness } from '../faithfulness.js';
import type { ForwardHost, ForwardRows } from '../gradient-free/forward-host.js';

export interface TfjsEngineOptions {
  /** The model: a graph, or a sequential Keras spec (converted on entry). */
  spec: ModelInput;
  /** Target: node, tensor or Keras layer name; default the feature map the head pools (walker.ts). */
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
  const graph = toModelGraph(options.spec);
  const model = compileModel(graph, options.layer);
  return new TfjsEngine(model, backend, graph.weightsHash, options.camPost ?? DEFAULT_CAM_POST_OPTIONS);
}

/** dS/dA for rows of the target activation: row r's score is class `classes[r]` of its own head output. */
export function headGradient(model: CompiledModel, aRows: tf.Tensor4D, classes: readonly number[], score: ScoreMode, extras?: HeadInputs): tf.Tensor4D {
  const m = aRows.shape[0];
  if (classes.length !== m) throw new RangeError(`${classes.length} classes for ${m} activation rows`);
  // A one-hot mask rather than gather: the wasm backend lacks UnsortedSegmentSum, gather's gradient.
  const mask = new Float32Array(m * model.numClasses);
  classes.forEach((c, r) => (mask[r * model.numClasses + c] = 1));
  return tf.tidy(() => {
    const maskT = tf.tensor2d(mask, [m, model.numClasses]);
    const total = (a: tf.Tensor): tf.Scalar => {
      const logits = model.head(a as tf.Tensor4D, extras);
      const s = score === 'logit' ? logits : model.probabilities(logits);
      return tf.sum(tf.mul(s, maskT));
    };
    return tf.grad(total)(aRows) as tf.Tensor4D;
  });
}

export class TfjsEngine implements Engine, ForwardHost {
  readonly info: EngineInfo;
  readonly inputShape: readonly [number, number, number];
  readonly numClasses: number;
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
      accelerator: backend.choice === 'node-gpu' ? 'gpu' : 'cpu',
      modelName: model.name,
      layer: model.layer,
      inputHeight: model.inputShape[0],
      inputWidth: model.inputShape[1],
      numClasses: model.numClasses,
      weightsHash,
    };
    this.inputShape = model.inputShape;
    this.numClasses = model.numClasses;
  }

  async predict(images: PreprocessedImage[]): Promise<Float32Array[]> {
    if (images.length === 0) return [];
    return (await this.forward(images, false)).probabilities;
  }

  async explain(request: EngineRequest): Promise<EngineImageResult[]> {
    const results = await this.explainBatch(request);
    return request.faithfulness ? measureFaithfulness(request, results, this) : results;
  }

  private async explainBatch(request: EngineRequest): Promise<EngineImageResult[]> {
    const model = this.model;
    validateRequest(request, model.numClasses);
    if (request.images.length === 0) return [];
    if (this.disposed) throw new EngineDisposedError();
    if (!needsGradient(request.method)) return explainGradientFree(request, this, this.camPost);
    const b = request.images.length;
    const c = model.numClasses;
    // Every image has the same number of targets T, so rows are target-major: row k·B + i is image
    // i's k-th target.
    const t = targetCount(request, c);
    const x = this.toBatch(request.images);
    const { target: a, extras } = model.features(x);
    x.dispose();
    let probs: Float32Array[] = [];
    let logits: Float32Array[] = [];
    const classes: number[] = [];
    try {
      const [mapsT, gmaxT] = tf.tidy(() => {
        const aRows = repeatRows(a, t);
        const extraRows: HeadInputs = { tensors: extras.tensors.map((e) => repeatRows(e, t)), nhwc: extras.nhwc };
        const total = (z: tf.Tensor): tf.Scalar => {
          const l = model.head(z as tf.Tensor4D, extraRows);
          const p = model.probabilities(l);
          // Top-1/top-k targets depend on this very forward pass: reading the scores here lets one
          // head forward serve both the predictions and the backward.
          const split = (flat: Float32Array): Float32Array[] => Array.from({ length: b }, (_, i) => flat.slice(i * c, (i + 1) * c));
          probs = split(p.dataSync() as Float32Array);
          logits = split(l.dataSync() as Float32Array);
          const perImage = probs.map((row) => resolveTargets(request.targets, request.topK, row));
          // A one-hot mask rather than gather: the wasm backend lacks gather's gradient.
          const mask = new Float32Array(b * t * c);
          for (let k = 0; k < t; k++) {
            for (let i = 0; i < b; i++) {
              classes.push(perImage[i][k]);
              mask[(k * b + i) * c + perImage[i][k]] = 1;
            }
          }
          return tf.sum(tf.mul(request.score === 'logit' ? l : p, tf.tensor2d(mask, [b * t, c])));
        };
        const g = tf.grad(total)(aRows) as tf.Tensor4D;
        return [camMaps(request.method, aRows, g), tf.max(tf.abs(g), [1, 2, 3])];
      });
      const [h, w] = model.targetShape;
      const [maps, gmax] = await Promise.all([mapsT.data() as Promise<Float32Array>, gmaxT.data() as Promise<Float32Array>]);
      mapsT.dispose();
      gmaxT.dispose();

      const results: EngineImageResult[] = probs.map((p, i) => ({ probabilities: p, logits: logits[i], cams: [] as CamMap[] }));
      // Target-major rows visit each image's targets in order.
      classes.forEach((cls, r) => {
        const i = r % b;
        const probability = probs[i][cls];
        const score = request.score === 'logit' ? logits[i][cls] : probability;
        results[i].cams.push(
          postProcessCam(
            maps.subarray(r * h * w, (r + 1) * h * w),
            { classIndex: cls, score, scoreMode: request.score, probability, gradientMaxAbs: gmax[r], height: h, width: w },
            this.camPost,
          ),
        );
      });
      return results;
    } finally {
      a.dispose();
      extras.tensors.forEach((e) => e.dispose());
    }
  }

  /** ForwardHost: logits and probabilities of every row, and on request the target activation (channels-last). */
  async forward(images: PreprocessedImage[], activations: boolean): Promise<ForwardRows> {
    if (this.disposed) throw new EngineDisposedError();
    const x = this.toBatch(images);
    const { target: a, extras } = this.model.features(x);
    x.dispose();
    const [logitsT, probsT] = tf.tidy(() => {
      const l = this.model.head(a, extras);
      return [l, this.model.probabilities(l)];
    });
    extras.tensors.forEach((e) => e.dispose());
    try {
      const [l, p] = (await Promise.all([logitsT.data(), probsT.data()])) as [Float32Array, Float32Array];
      const c = this.model.numClasses;
      const rows = (flat: Float32Array, size: number): Float32Array[] => images.map((_, i) => flat.slice(i * size, (i + 1) * size));
      const out: ForwardRows = { probabilities: rows(p, c), logits: rows(l, c) };
      if (activations) {
        const [h, w, k] = this.model.targetShape;
        out.activations = { data: rows((await a.data()) as Float32Array, h * w * k), height: h, width: w, channels: k };
      }
      return out;
    } finally {
      a.dispose();
      logitsT.dispose();
      probsT.dispose();
    }
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
