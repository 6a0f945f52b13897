/**
 * `npm run train:demo-model`: train the demo classifier on synthetic scenes and save it to
 * models/demo/ in TF.js Layers format (model.json + one shard), with labels.json and training.json.
 *
 * The default recipe has three stages, all deterministic:
 *  1. `coarse`: the narrow network from a seeded He initialisation, every block pooled (an 8x8
 *     Grad-CAM grid), which is cheaper per step while the features form;
 *  2. `fine`: the same weights with the last block's pool removed (the final 16x16 grid), fine-tuned
 *     on a fresh image stream. Weight shapes do not depend on the pooling, so the hand-over is exact;
 *  3. `wide`: the network widened to the final filter counts without changing its function
 *     (widen.ts), trained on another fresh stream with label smoothing.
 * Every batch is freshly generated from the stage's seed (an endless, reproducible data stream), so
 * the network cannot memorise images; validation uses a different seed.
 *
 *   npm run train:demo-model -- [--out models/demo]
 *   npm run train:demo-model -- --init DIR --steps N [--seed S] [--learning-rate LR] [--label-smoothing E] [--filters 24,48,96,96]   (one extra stage)
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { buildDemoLayersModel, DEMO_ARCHITECTURE, DEMO_NARROW_ARCHITECTURE, disposeParams, forwardLogits, initParams, LAST_CONV_LAYER, MODEL_NAME, toLayerWeights, TRAINING_INPUT_SCALE, type DemoArchitecture, type DemoParams } from './architecture.js';
import { useBackend, type ScriptBackend } from './backend.js';
import { caffeBatch, generateRange } from './data.js';
import { fileSaveHandler, loadLayersModelFromDir } from './model-io.js';
import { Prng } from './prng.js';
import { matchesArchitecture, widenParams } from './widen.js';
import { DEFAULT_SCENE_OPTIONS, DEMO_CLASSES, SHORTCUT_EVAL_SCENE_OPTIONS, SHORTCUT_TRAIN_SCENE_OPTIONS, type SceneOptions } from './synth.js';

export interface TrainStage {
  name: string;
  /** Network used in this stage; if it has more filters than the weights so far, they are widened first (widen.ts). */
  architecture: DemoArchitecture;
  /** Seed of the stage's training images. */
  seed: number;
  /** Optimiser steps (each a fresh batch). */
  steps: number;
  /** Peak Adam learning rate, reached after `warmupSteps`, then cosine-decayed to 5% of it. */
  learningRate: number;
  /** Linear warm-up steps. */
  warmupSteps: number;
  /**
   * Label smoothing of the cross-entropy targets (0 = one-hot). Without it a confident network
   * drives its logit gaps so high that the softmax probability saturates to exactly 1 in float32;
   * the probability score's gradient then vanishes and its Grad-CAM map is flat. Default 0.
   */
  labelSmoothing?: number;
}

export interface TrainOptions {
  /** Stages run in order on the same weights, each with a fresh Adam state. Default `DEMO_RECIPE`. */
  stages: TrainStage[];
  /** Seed of the weight initialisation. Default 1. */
  initSeed: number;
  /** Start from the weights in this folder instead of a fresh initialisation (warm restart). */
  initFrom?: string;
  /** Images per step. Default 32. */
  batchSize: number;
  /** Seed of the validation images; must differ from every stage's seed. Default 1001. */
  validationSeed: number;
  /**
   * `clean`: the demo scenes. `shortcut`: the watermarked variant (synth.ts `SHORTCUT_WATERMARK`):
   * trained on `SHORTCUT_TRAIN_SCENE_OPTIONS`, validated on `SHORTCUT_EVAL_SCENE_OPTIONS`. Default clean.
   */
  scene: SceneKind;
  /** Validation images scored after training. Default 250. */
  validationSize: number;
  /** Log every this many steps. Default 25. */
  logEvery: number;
  /** Save the model (and a quick validation score) every this many steps of a stage; 0 only at the end. Default 300. */
  checkpointEvery: number;
  /** Output folder. Default models/demo. */
  outDir: string;
  backend: ScriptBackend;
}

export type SceneKind = 'clean' | 'shortcut';

/** Scenes a stage trains on and scenes it is validated on, per scene kind. */
const SCENES: Record<SceneKind, { train: Readonly<SceneOptions>; validate: Readonly<SceneOptions> }> = {
  clean: { train: DEFAULT_SCENE_OPTIONS, validate: DEFAULT_SCENE_OPTIONS },
  shortcut: { train: SHORTCUT_TRAIN_SCENE_OPTIONS, validate: SHORTCUT_EVAL_SCENE_OPTIONS },
};

/** The recipe that produced the committed models/demo weights. */
export const DEMO_RECIPE: readonly TrainStage[] = Object.freeze([
  {
    name: 'coarse',
    architecture: { ...DEMO_NARROW_ARCHITECTURE, blocks: DEMO_NARROW_ARCHITECTURE.blocks.map((b) => ({ ...b, pool: true })) },
    seed: 1,
    steps: 1800,
    learningRate: 2e-3,
    warmupSteps: 50,
  },
  { name: 'fine', architecture: DEMO_NARROW_ARCHITECTURE, seed: 2, steps: 1200, learningRate: 1e-3, warmupSteps: 50 },
  // Widened to DEMO_ARCHITECTURE at the start of this stage. Label smoothing keeps the logit gaps
  // moderate, so the softmax probability never saturates and its Grad-CAM stays informative.
  { name: 'wide', architecture: DEMO_ARCHITECTURE, seed: 4, steps: 1500, learningRate: 1e-3, warmupSteps: 50, labelSmoothing: 0.05 },
]);

/**
 * The recipe of the committed models/demo-shortcut weights: the clean demo model fine-tuned on the
 * watermarked scenes, so the two models differ only in what the watermark taught the second one.
 */
export const SHORTCUT_RECIPE: readonly TrainStage[] = Object.freeze([
  { name: 'shortcut', architecture: DEMO_ARCHITECTURE, seed: 5, steps: 600, learningRate: 5e-4, warmupSteps: 30, labelSmoothing: 0.05 },
]);
export const SHORTCUT_DEFAULTS = Object.freeze({ initFrom: 'models/demo', outDir: 'models/demo-shortcut' });

export const DEFAULT_TRAIN_OPTIONS: Readonly<TrainOptions> = Object.freeze({
  stages: [...DEMO_RECIPE],
  initSeed: 1,
  batchSize: 32,
  validationSeed: 1001,
  scene: 'clean' as SceneKind,
  validationSize: 250,
  logEvery: 25,
  checkpointEvery: 300,
  outDir: 'models/demo',
  backend: 'wasm' as ScriptBackend,
});

/** Adam whose learning rate a schedule may change between steps (tfjs keeps it protected). */
class ScheduledAdam extends tf.AdamOptimizer {
  setLearningRate(rate: number): void {
    this.learningRate = rate;
  }
}

function learningRateAt(step: number, s: TrainStage): number {
  if (step < s.warmupSteps) return (s.learningRate * (step + 1)) / s.warmupSteps;
  const t = (step - s.warmupSteps) / Math.max(1, s.steps - s.warmupSteps);
  return s.learningRate * (0.05 + 0.95 * 0.5 * (1 + Math.cos(Math.PI * t)));
}

function oneHot(labels: number[], classes: number): tf.Tensor2D {
  const data = new Float32Array(labels.length * classes);
  labels.forEach((label, i) => (data[i * classes + label] = 1));
  return tf.tensor2d(data, [labels.length, classes]);
}

/** Accuracy of the functional network on `count` images of the set named by `seed`. */
async function accuracy(params: DemoParams, arch: DemoArchitecture, seed: number, count: number, scene: Readonly<SceneOptions>): Promise<number> {
  let correct = 0;
  for (let start = 0; start < count; start += 50) {
    const images = generateRange(seed, start, Math.min(50, count - start), scene);
    const predicted = tf.tidy(() => forwardLogits(params, tf.div(caffeBatch(images), TRAINING_INPUT_SCALE) as tf.Tensor4D, arch).argMax(1));
    const values = await predicted.data();
    predicted.dispose();
    images.forEach((im, i) => (correct += values[i] === im.classIndex ? 1 : 0));
  }
  return correct / count;
}

interface SaveInfo {
  architecture: DemoArchitecture;
  stages: { name: string; filters: number[]; seed: number; steps: number; learningRate: number; labelSmoothing: number; seconds: number }[];
  validationAccuracy: number;
  validationImages: number;
}

/** Export the trained variables as a `tf.Sequential` and write model.json, the shard, labels and a training record. */
async function saveModel(params: DemoParams, options: TrainOptions, backend: string, info: SaveInfo): Promise<number> {
  const model = buildDemoLayersModel(info.architecture);
  const weights = toLayerWeights(params);
  model.setWeights(weights);
  tf.dispose(weights);
  const saved = await model.save(fileSaveHandler(options.outDir));
  await writeFile(path.join(options.outDir, 'labels.json'), `${JSON.stringify([...DEMO_CLASSES], null, 2)}\n`);
  const record = {
    model: MODEL_NAME,
    classes: [...DEMO_CLASSES],
    inputShape: [info.architecture.inputSize, info.architecture.inputSize, 3],
    preprocessing: 'keras caffe (RGB->BGR, minus ImageNet mean, 0..255)',
    gradcamLayer: LAST_CONV_LAYER,
    architecture: info.architecture,
    parameters: model.countParams(),
    weightBytes: saved.modelArtifactsInfo.weightDataBytes,
    training: {
      initSeed: options.initSeed,
      initFrom: options.initFrom ?? null,
      batchSize: options.batchSize,
      stages: info.stages,
      scene: SCENES[options.scene].train,
      backend,
      seconds: Math.round(info.stages.reduce((t, s) => t + s.seconds, 0)),
    },
    validation: { seed: options.validationSeed, images: info.validationImages, accuracy: info.validationAccuracy },
  };
  await writeFile(path.join(options.outDir, 'training.json'), `${JSON.stringify(record, null, 2)}\n`);
  model.dispose();
  return record.weightBytes ?? 0;
}

/**
 * Training variables holding the weights saved in `dir` (whatever its filter counts), undoing the
 * input-scale fold of the first kernel.
 */
async function loadParams(dir: string): Promise<DemoParams> {
  const model = await loadLayersModelFromDir(dir);
  const weights = model.getWeights();
  if (weights.length < 4 || weights.length % 2 !== 0) throw new Error(`${dir} has ${weights.length} weight arrays, not a demo network (conv kernel/bias pairs and a dense layer)`);
  const variables = weights.map((w, i) => {
    const value = i === 0 ? tf.mul(w, TRAINING_INPUT_SCALE) : w.clone();
    const v = tf.variable(value, true, `loaded${i}`);
    value.dispose();
    return v;
  });
  model.dispose();
  const convs = [];
  for (let i = 0; i + 2 < variables.length; i += 2) convs.push({ kernel: variables[i] as tf.Variable, bias: variables[i + 1] as tf.Variable });
  return { convs, dense: { kernel: variables[variables.length - 2] as tf.Variable, bias: variables[variables.length - 1] as tf.Variable } };
}

function variablesOf(params: DemoParams): tf.Variable[] {
  return [...params.convs.flatMap((c) => [c.kernel, c.bias]), params.dense.kernel, params.dense.bias];
}

function stageRecord(stage: TrainStage): Omit<SaveInfo['stages'][number], 'seconds'> {
  const { architecture: arch } = stage;
  return { name: stage.name, filters: [...arch.blocks.map((b) => b.filters), arch.lastConvFilters], seed: stage.seed, steps: stage.steps, learningRate: stage.learningRate, labelSmoothing: stage.labelSmoothing ?? 0 };
}

/** One stage: `stage.steps` Adam steps on fresh batches from `stage.seed`. Returns its seconds. */
async function runStage(params: DemoParams, stage: TrainStage, done: SaveInfo['stages'], options: TrainOptions, backend: string): Promise<number> {
  const arch = stage.architecture;
  const optimizer = new ScheduledAdam(stage.learningRate, 0.9, 0.999, 1e-7);
  const variables = variablesOf(params);
  console.log(`stage ${stage.name}: ${stage.steps} steps x ${options.batchSize} images (seed ${stage.seed}, peak lr ${stage.learningRate})`);
  const started = Date.now();
  let windowLoss = 0;
  let windowCorrect = 0;
  for (let step = 0; step < stage.steps; step++) {
    const images = generateRange(stage.seed, step * options.batchSize, options.batchSize, SCENES[options.scene].train);
    const x = tf.tidy(() => tf.div(caffeBatch(images), TRAINING_INPUT_SCALE) as tf.Tensor4D);
    const y = oneHot(images.map((im) => im.classIndex), arch.numClasses);
    optimizer.setLearningRate(learningRateAt(step, stage));
    const kept: tf.Tensor[] = [];
    const loss = optimizer.minimize(
      () => {
        const logits = forwardLogits(params, x, arch);
        kept.push(tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(y, 1)), 'float32'))));
        return tf.losses.softmaxCrossEntropy(y, logits, undefined, stage.labelSmoothing ?? 0) as tf.Scalar;
      },
      true,
      variables,
    );
    if (loss === null || kept[0] === undefined) throw new Error('optimizer returned no loss');
    windowLoss += (await loss.data())[0] as number;
    windowCorrect += (await kept[0].data())[0] as number;
    tf.dispose([x, y, loss, ...kept]);
    if ((step + 1) % options.logEvery === 0 || step + 1 === stage.steps) {
      const n = (step % options.logEvery) + 1;
      console.log(
        `  step ${step + 1}/${stage.steps}  loss ${(windowLoss / n).toFixed(4)}  batch acc ${(windowCorrect / (n * options.batchSize)).toFixed(3)}  lr ${learningRateAt(step, stage).toExponential(2)}  ${((Date.now() - started) / 1000).toFixed(0)}s`,
      );
      windowLoss = 0;
      windowCorrect = 0;
    }
    if (options.checkpointEvery > 0 && (step + 1) % options.checkpointEvery === 0 && step + 1 < stage.steps) {
      const quick = await accuracy(params, arch, options.validationSeed, 100, SCENES[options.scene].validate);
      const progress = [...done, { ...stageRecord(stage), steps: step + 1, seconds: (Date.now() - started) / 1000 }];
      await saveModel(params, options, backend, { architecture: arch, stages: progress, validationAccuracy: quick, validationImages: 100 });
      console.log(`  checkpoint at step ${step + 1}: validation accuracy ${quick.toFixed(3)} on 100 images`);
    }
  }
  optimizer.dispose();
  return (Date.now() - started) / 1000;
}

export async function train(options: TrainOptions): Promise<void> {
  const last = options.stages[options.stages.length - 1];
  if (last === undefined) throw new RangeError('no training stages');
  if (options.stages.some((s) => s.seed === options.validationSeed)) throw new RangeError(`validation seed ${options.validationSeed} is also a training seed`);
  const backend = await useBackend(options.backend);
  const first = options.stages[0] as TrainStage;
  let params = options.initFrom === undefined ? initParams(new Prng(options.initSeed ^ 0x5eed), first.architecture) : await loadParams(options.initFrom);
  console.log(`training ${MODEL_NAME} on ${backend}`);
  const done: SaveInfo['stages'] = [];
  for (const stage of options.stages) {
    if (!matchesArchitecture(params, stage.architecture)) {
      // A stage on a wider network starts from the narrower one's function (see widen.ts).
      const wider = widenParams(params, stage.architecture, new Prng(options.initSeed ^ 0x71de));
      disposeParams(params);
      params = wider;
      console.log(`widened to ${stage.architecture.blocks.map((b) => b.filters).join('/')}/${stage.architecture.lastConvFilters} filters`);
    }
    const seconds = await runStage(params, stage, done, options, backend);
    done.push({ ...stageRecord(stage), seconds: Math.round(seconds) });
    const acc = await accuracy(params, stage.architecture, options.validationSeed, options.validationSize, SCENES[options.scene].validate);
    console.log(`stage ${stage.name} done in ${seconds.toFixed(0)}s: validation accuracy ${acc.toFixed(4)} on ${options.validationSize} images (seed ${options.validationSeed})`);
    if (stage === last) {
      const bytes = await saveModel(params, options, backend, { architecture: stage.architecture, stages: done, validationAccuracy: acc, validationImages: options.validationSize });
      console.log(`saved ${options.outDir}/model.json (${bytes} weight bytes)`);
    }
  }
  disposeParams(params);
}

/** `--filters 24,48,96,96`: the blocks' and the last conv's filter counts, for a widened custom stage. */
function withFilters(arch: DemoArchitecture, raw: string | undefined): DemoArchitecture {
  if (raw === undefined) return arch;
  const counts = raw.split(',').map(Number);
  if (counts.length !== arch.blocks.length + 1 || counts.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new RangeError(`--filters must be ${arch.blocks.length + 1} positive integers (blocks, then last_conv), got '${raw}'`);
  }
  return { ...arch, blocks: arch.blocks.map((b, i) => ({ ...b, filters: counts[i] as number })), lastConvFilters: counts[arch.blocks.length] as number };
}

function parseOptions(argv: string[]): TrainOptions {
  const { values } = parseArgs({
    args: argv,
    options: {
      steps: { type: 'string' },
      'batch-size': { type: 'string' },
      seed: { type: 'string' },
      'learning-rate': { type: 'string' },
      out: { type: 'string' },
      init: { type: 'string' },
      'checkpoint-every': { type: 'string' },
      backend: { type: 'string' },
      filters: { type: 'string' },
      'label-smoothing': { type: 'string' },
      scene: { type: 'string' },
    },
  });
  const int = (flag: string, raw: string | undefined, fallback: number, min = 1): number => {
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v < min) throw new RangeError(`--${flag} must be an integer ≥ ${min}, got '${raw}'`);
    return v;
  };
  const backend = values.backend ?? DEFAULT_TRAIN_OPTIONS.backend;
  if (backend !== 'wasm' && backend !== 'cpu') throw new RangeError(`--backend must be wasm or cpu, got '${backend}'`);
  const scene = values.scene ?? DEFAULT_TRAIN_OPTIONS.scene;
  if (scene !== 'clean' && scene !== 'shortcut') throw new RangeError(`--scene must be clean or shortcut, got '${scene}'`);
  const shortcut = scene === 'shortcut';
  const options: TrainOptions = {
    ...DEFAULT_TRAIN_OPTIONS,
    scene,
    ...(shortcut ? { stages: [...SHORTCUT_RECIPE] } : {}),
    batchSize: int('batch-size', values['batch-size'], DEFAULT_TRAIN_OPTIONS.batchSize),
    outDir: values.out ?? (shortcut ? SHORTCUT_DEFAULTS.outDir : DEFAULT_TRAIN_OPTIONS.outDir),
    checkpointEvery: int('checkpoint-every', values['checkpoint-every'], DEFAULT_TRAIN_OPTIONS.checkpointEvery, 0),
    backend,
    ...(values.init === undefined ? (shortcut ? { initFrom: SHORTCUT_DEFAULTS.initFrom } : {}) : { initFrom: values.init }),
  };
  const smoothing = values['label-smoothing'] === undefined ? 0 : Number(values['label-smoothing']);
  if (!(smoothing >= 0 && smoothing < 1)) throw new RangeError(`--label-smoothing must be in [0, 1), got '${values['label-smoothing']}'`);
  const custom = values.steps !== undefined || values.seed !== undefined || values['learning-rate'] !== undefined;
  if (!custom) return options;
  // A single extra stage on the final architecture, e.g. a warm restart with --init.
  const lr = values['learning-rate'] === undefined ? 1e-3 : Number(values['learning-rate']);
  if (!(lr > 0)) throw new RangeError(`--learning-rate must be a positive number, got '${values['learning-rate']}'`);
  const stage: TrainStage = { name: 'custom', architecture: withFilters(DEMO_ARCHITECTURE, values.filters), seed: int('seed', values.seed, 3), steps: int('steps', values.steps, 600), learningRate: lr, warmupSteps: 50, labelSmoothing: smoothing };
  return { ...options, stages: [stage] };
}

await train(parseOptions(process.argv.slice(2)));
