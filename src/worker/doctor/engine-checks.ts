/**
 * What the model does on this machine: which engine and target layer it gets, whether the chosen
 * engine/provider agrees with an independent CPU path on two real images, and how many images per
 * second it explains on a short batch.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../shared/explain-options.js';
import { describeError } from '../../shared/errors.js';
import { PACKAGE_ROOT } from '../../shared/package-root.js';
import type { Engine, EngineImageResult, EngineInfo, EngineRequest, PreprocessedImage } from '../engine/engine.js';
import { describePlacement } from '../engine/onnx/placement.js';
import { decodeImage } from '../image/decode.js';
import { preprocess } from '../image/preprocess.js';
import type { ModelInput } from '../model/graph/from-sequential.js';
import { toModelGraph } from '../model/graph/from-sequential.js';
import { numClassesOf } from '../model/graph/walker.js';
import type { CheckResult } from './report.js';
import type { ModelSetup } from '../../shared/model-setup.js';
import type { ModelPreprocessing } from '../../shared/preprocessing.js';

/**
 * fp32 parity tolerances between two engines or providers: max absolute difference of any class
 * probability, and of any cell of the normalised [0, 1] CAM grid. GPU kernels (cuDNN's algorithms,
 * TF32 on Ampere and newer) reorder sums, so exact equality is not expected.
 */
export const FP32_PARITY = Object.freeze({ probability: 1e-3, cam: 1e-2 });

/**
 * The same with a float16 trunk (`--onnx-precision fp16`) against a float32 reference: float16
 * keeps 11 significant bits, so activations carry ~5e-4 relative error per layer.
 */
export const FP16_PARITY = Object.freeze({ probability: 1e-2, cam: 2e-2 });

/** The tolerance for an engine's precision. */
export function parityTolerance(info: Pick<EngineInfo, 'precision'>): { probability: number; cam: number } {
  return info.precision === 'fp16' ? FP16_PARITY : FP32_PARITY;
}

/** The two bundled images the doctor runs through the model (one shape, one photo). */
export const PARITY_IMAGES = Object.freeze([join(PACKAGE_ROOT, 'samples', 'synthetic', '00-circle.png'), join(PACKAGE_ROOT, 'samples', 'photos', 'chelsea-cat.jpg')]);

/**
 * Decode and preprocess the parity images for this engine's input with the model's own
 * preprocessing (a model trained on [-1, 1] inputs would agree with its reference on caffe inputs
 * too, but on inputs it never sees); a fixed gradient when a file is missing.
 */
export async function parityInputs(engine: Engine, preprocessing: ModelPreprocessing, files: readonly string[] = PARITY_IMAGES): Promise<PreprocessedImage[]> {
  const { inputWidth: width, inputHeight: height } = engine.info;
  return Promise.all(
    files.map(async (file, n) => {
      if (existsSync(file)) return preprocess(await decodeImage(await readFile(file), {}, file), { width, height, mode: preprocessing.mode, centerCrop: preprocessing.centerCrop });
      const data = new Float32Array(width * height * 3);
      for (let i = 0; i < data.length; i++) data[i] = ((i * (n + 7)) % 255) - 120;
      return { data, height, width };
    }),
  );
}

export function modelCheck(spec: ModelInput, weights: string, labels: number | null, setup?: Pick<ModelSetup, 'preprocessing' | 'preprocessFrom'>): CheckResult {
  const classes = lastDenseUnits(spec);
  const preprocess = setup ? `, preprocess ${setup.preprocessing.mode}${setup.preprocessing.centerCrop ? ' + center crop' : ''} (${setup.preprocessFrom})` : '';
  return {
    name: 'model',
    status: 'ok',
    summary: `${spec.name} from ${weights} (sha256 ${spec.weightsHash.replace(/^sha256:/, '').slice(0, 12)}…), input ${spec.inputShape[1]}x${spec.inputShape[0]}, ${classes ?? '?'} classes${labels === null ? ', no labels' : ''}${preprocess}`,
    details: { name: spec.name, weights, weightsHash: spec.weightsHash, inputShape: spec.inputShape, classes, ...(setup ? { preprocessing: setup.preprocessing, preprocessFrom: setup.preprocessFrom } : {}) },
  };
}

export function engineCheck(engine: Engine): CheckResult {
  const i = engine.info;
  const placement = i.placement ? `; nodes: ${describePlacement(i.placement)}` : '';
  const warn = (i.placement?.computeOnCpu ?? 0) > 0;
  return {
    name: 'engine',
    status: warn ? 'warn' : 'ok',
    summary: `${i.engine}/${i.backend} on ${i.device}, target layer ${i.layer}${placement}`,
    details: { ...i },
  };
}

/** Explain one batch with the doctor's fixed request (top-1 Grad-CAM on the logit: never saturated). */
function explainRequest(images: PreprocessedImage[]): EngineRequest {
  return { images, targets: { kind: 'top1' }, topK: 1, method: DEFAULT_EXPLAIN_OPTIONS.method, score: 'logit' };
}

export interface ParityDiff {
  probability: number;
  cam: number;
  /** Images whose top-1 class differs between the two. */
  top1Mismatches: number;
}

/** Largest absolute differences between two engines' results for the same images. */
export function parityDiff(a: EngineImageResult[], b: EngineImageResult[]): ParityDiff {
  let probability = 0;
  let cam = 0;
  let top1Mismatches = 0;
  a.forEach((ra, i) => {
    const rb = b[i] as EngineImageResult;
    for (let k = 0; k < ra.probabilities.length; k++) probability = Math.max(probability, Math.abs((ra.probabilities[k] as number) - (rb.probabilities[k] as number)));
    const [ca, cb] = [ra.cams[0], rb.cams[0]];
    if (!ca || !cb || ca.classIndex !== cb.classIndex) {
      top1Mismatches++;
      return;
    }
    for (let k = 0; k < ca.grid.length; k++) cam = Math.max(cam, Math.abs((ca.grid[k] as number) - (cb.grid[k] as number)));
  });
  return { probability, cam, top1Mismatches };
}

/**
 * The chosen engine against a reference on the CPU (a different provider or engine), on the same
 * two images. `reference` null: no independent CPU path exists for this setup (said so, not failed).
 */
export async function parityCheck(
  engine: Engine,
  reference: { engine: Engine; label: string } | null,
  images: PreprocessedImage[],
  tolerance: { probability: number; cam: number } = parityTolerance(engine.info),
): Promise<CheckResult> {
  if (!reference) return { name: 'parity', status: 'skip', summary: 'no independent CPU path for this engine and model' };
  try {
    const [mine, theirs] = [await engine.explain(explainRequest(images)), await reference.engine.explain(explainRequest(images))];
    const d = parityDiff(mine, theirs);
    const details = { reference: reference.label, images: images.length, ...d, tolerance };
    const numbers = `max |Δp| ${d.probability.toExponential(1)} (≤ ${tolerance.probability}), max |ΔCAM| ${d.cam.toExponential(1)} (≤ ${tolerance.cam})`;
    const ok = d.top1Mismatches === 0 && d.probability <= tolerance.probability && d.cam <= tolerance.cam;
    const what = `${images.length} images, ${engine.info.engine}/${engine.info.backend} vs ${reference.label}`;
    if (ok) return { name: 'parity', status: 'ok', summary: `${what}: ${numbers}`, details };
    return { name: 'parity', status: 'fail', summary: `${what} disagree: ${numbers}${d.top1Mismatches ? `, ${d.top1Mismatches} different top-1 classes` : ''}`, details };
  } catch (err) {
    return { name: 'parity', status: 'fail', summary: `could not compare with ${reference.label}: ${describeError(err)}` };
  }
}

/** Images per second explaining `batch` images at a time: one warm-up batch, then `runs` timed ones. */
export async function speedCheck(engine: Engine, images: PreprocessedImage[], batch = 8, runs = 3): Promise<CheckResult> {
  try {
    const input = Array.from({ length: batch }, (_, i) => images[i % images.length] as PreprocessedImage);
    await engine.explain(explainRequest(input));
    const t0 = performance.now();
    for (let r = 0; r < runs; r++) await engine.explain(explainRequest(input));
    const seconds = (performance.now() - t0) / 1000;
    const imagesPerSecond = (batch * runs) / seconds;
    return {
      name: 'speed',
      status: 'ok',
      summary: `${imagesPerSecond.toFixed(imagesPerSecond < 10 ? 2 : 1)} img/s explaining batches of ${batch} (Grad-CAM, ${runs} runs after a warm-up), engine only`,
      details: { imagesPerSecond, batch, runs, seconds },
    };
  } catch (err) {
    return { name: 'speed', status: 'fail', summary: `the engine failed on a batch of ${batch}: ${describeError(err)}` };
  }
}

function lastDenseUnits(spec: ModelInput): number | null {
  try {
    return numClassesOf(toModelGraph(spec));
  } catch {
    return null;
  }
}
