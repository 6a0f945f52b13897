/**
 * The engine contract. A batch of preprocessed images plus targets goes in; probabilities and CAM
 * grids come out. Queue, storage and rendering never know which engine or backend ran.
 */
import type { FaithfulnessMetrics } from '../../shared/audit/types.js';
import type { CamMethod, ScoreMode, TargetSpec } from '../../shared/explain-options.js';
import type { NodePlacement } from './onnx/placement.js';

/** One preprocessed image: HWC float32, BGR, ImageNet-mean subtracted (Keras caffe mode). */
export interface PreprocessedImage {
  data: Float32Array;
  height: number;
  width: number;
}

export interface EngineRequest {
  images: PreprocessedImage[];
  targets: TargetSpec;
  /** How many top classes `topk` targets cover (and how many predictions the caller decodes). */
  topK: number;
  method: CamMethod;
  score: ScoreMode;
  /**
   * Most rows one forward run may hold when a method forwards extra copies of the images (Score-CAM's
   * masked inputs). Default: the number of images, i.e. the engine batch size the caller chose.
   */
  forwardRows?: number;
  /** Measure faithfulness (faithfulness.ts): two perturbed forward rows per image. Default false. */
  faithfulness?: boolean;
  /** Per image, the seed of faithfulness's random region (FNV-1a of the image key). Default: the image's position. */
  imageSeeds?: number[];
}

export interface CamMap {
  classIndex: number;
  /** The value of the differentiated score S for this class (probability or logit). */
  score: number;
  /** Row-major grid normalised to [0,1] by its max; all zeros when degenerate. */
  grid: Float32Array;
  height: number;
  width: number;
  /** Pre-normalisation max and mean of the ReLU'd map. */
  rawMax: number;
  rawMean: number;
  /** Why the map carries no information (all ≤ 0, NaN, saturated softmax), or null. */
  degenerate: string | null;
}

export interface EngineImageResult {
  /** Softmax probabilities over all classes. */
  probabilities: Float32Array;
  /** Pre-softmax logits, when the model's last layer is a softmax dense layer. */
  logits: Float32Array | null;
  cams: CamMap[];
  /** With `faithfulness` requested: the drops, or null when the first map is degenerate. */
  faithfulness?: FaithfulnessMetrics | null;
}

export interface EngineInfo {
  engine: 'tfjs' | 'onnx';
  /** e.g. `tensorflow` (tfjs-node), `wasm`, `cpu`, `cuda`, `onnx-cpu`. */
  backend: string;
  /** Human-readable device, e.g. `CPU (2 threads)` or `NVIDIA H100`. */
  device: string;
  /** Where the model's compute runs (`--require-gpu` refuses `cpu`). */
  accelerator: 'cpu' | 'gpu';
  modelName: string;
  layer: string;
  inputHeight: number;
  inputWidth: number;
  numClasses: number;
  /** sha256 of the weights as loaded. */
  weightsHash: string;
  /** Element type of the layers up to the CAM layer (ONNX `--onnx-precision`); absent: float32. */
  precision?: 'fp32' | 'fp16';
  /**
   * Most model sessions the engine holds at once, each with its own copy of the weights and its own
   * activation memory (ONNX Runtime gives every session its own arena): for the ONNX engine, one
   * per gradient method served up to `--onnx-max-sessions` (onnx/session-pool.ts `sessionsAtOnce`);
   * absent: one (TF.js). `--batch-size auto` sizes for all of them (batch-size.ts).
   */
  sessions?: number;
  /** ONNX Runtime: where the nodes of the first batch ran, per execution provider (onnx/placement.ts). */
  placement?: NodePlacement;
}

export interface Engine {
  readonly info: EngineInfo;
  /** Forward pass plus CAMs for one batch. Results are in input order. */
  explain(request: EngineRequest): Promise<EngineImageResult[]>;
  /** Forward pass only (benchmarks, and predictions without explanations). */
  predict(images: PreprocessedImage[]): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}
