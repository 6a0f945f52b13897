/**
 * `npm run train:demo-model`: train the demo classifier on synthetic scenes and save it to
 * models/demo/ in TF.js Layers format (model.json + one shard), with labels.json and training.json.
 *
 * Every batch is freshly generated from the training seed (an endless, reproducible data stream), so
 * the network cannot memorise images; validation uses a different seed.
 *
 *   npm run train:demo-model -- [--steps 1800] [--batch-size 32] [--seed 1] [--out models/demo]
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import * as tf from '@tensorflow/tfjs';
import { buildDemoLayersModel, DEMO_ARCHITECTURE, disposeParams, forwardLogits, initParams, LAST_CONV_LAYER, MODEL_NAME, toLayerWeights, TRAINING_INPUT_SCALE, type DemoParams } from './architecture.js';
import { useBackend, type ScriptBackend } from './backend.js';
import { caffeBatch, generateRange } from './data.js';
import { fileSaveHandler, loadLayersModelFromDir } from './model-io.js';
import { Prng } from './prng.js';
import { DEFAULT_SCENE_OPTIONS, DEMO_CLASSES } from './synth.js';

export interface TrainOptions {
  /** Optimiser steps. Default 1800. */
  steps: number;
  /** Images per step. Default 32. */
  batchSize: number;
  /** Seed of the training images and of the weight initialisation. Default 1. */
  seed: number;
  /** Seed of the validation images; must differ from `seed`. Default 1001. */
  validationSeed: number;
  /** Validation images scored after training. Default 250. */
  validationSize: number;
  /** Peak Adam learning rate, reached after `warmupSteps`, then cosine-decayed to 5% of it. Default 2e-3. */
  learningRate: number;
  /** Linear warm-up steps. Default 50. */
  warmupSteps: number;
  /** Log every this many steps. Default 25. */
  logEvery: number;
  /** Save the model (and a quick validation score) every this many steps; 0 saves only at the end. Default 300. */
  checkpointEvery: number;
  /** Start from the weights in this folder instead of a fresh initialisation (warm restart). */
  initFrom?: string;
  /** Output folder. Default models/demo. */
  outDir: string;
  backend: ScriptBackend;
}

export const DEFAULT_TRAIN_OPTIONS: Readonly<TrainOptions> = Object.freeze({
  steps: 1800,
  batchSize: 32,
  seed: 1,
  validationSeed: 1001,
  validationSize: 250,
  learningRate: 2e-3,
  warmupSteps: 50,
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

function learningRateAt(step: number, o: TrainOptions): number {
  if (step < o.warmupSteps) return (o.learningRate * (step + 1)) / o.warmupSteps;
  const t = (step - o.warmupSteps) / Math.max(1, o.steps - o.warmupSteps);
  return o.learningRate * (0.05 + 0.95 * 0.5 * (1 + Math.cos(Math.PI * t)));
}

function oneHot(labels: number[], classes: number): tf.Tensor2D {
  const data = new Float32Array(labels.length * classes);
  labels.forEach((label, i) => (data[i * classes + label] = 1));
  return tf.tensor2d(data, [labels.length, classes]);
}

/** Accuracy of the functional network on `count` images of the set named by `seed`. */
async function accuracy(params: DemoParams, seed: number, count: number): Promise<number> {
  let correct = 0;
  for (let start = 0; start < count; start += 50) {
    const images = generateRange(seed, start, Math.min(50, count - start));
    const predicted = tf.tidy(() => forwardLogits(params, tf.div(caffeBatch(images), TRAINING_INPUT_SCALE) as tf.Tensor4D).argMax(1));
    const values = await predicted.data();
    predicted.dispose();
    images.forEach((im, i) => (correct += values[i] === im.classIndex ? 1 : 0));
  }
  return correct / count;
}

interface SaveInfo {
  stepsDone: number;
  seconds: number;
  validationAccuracy: number;
  validationImages: number;
}

/** Export the trained variables as a `tf.Sequential` and write model.json, the shard, labels and a training record. */
async function saveModel(params: DemoParams, options: TrainOptions, backend: string, info: SaveInfo): Promise<number> {
  const model = buildDemoLayersModel(DEMO_ARCHITECTURE);
  const weights = toLayerWeights(params);
  model.setWeights(weights);
  tf.dispose(weights);
  const saved = await model.save(fileSaveHandler(options.outDir));
  await writeFile(path.join(options.outDir, 'labels.json'), `${JSON.stringify([...DEMO_CLASSES], null, 2)}\n`);
  const record = {
    model: MODEL_NAME,
    classes: [...DEMO_CLASSES],
    inputShape: [DEMO_ARCHITECTURE.inputSize, DEMO_ARCHITECTURE.inputSize, 3],
    preprocessing: 'keras caffe (RGB->BGR, minus ImageNet mean, 0..255)',
    gradcamLayer: LAST_CONV_LAYER,
    parameters: model.countParams(),
    weightBytes: saved.modelArtifactsInfo.weightDataBytes,
    training: {
      steps: info.stepsDone,
      plannedSteps: options.steps,
      batchSize: options.batchSize,
      seed: options.seed,
      learningRate: options.learningRate,
      warmupSteps: options.warmupSteps,
      initFrom: options.initFrom ?? null,
      scene: DEFAULT_SCENE_OPTIONS,
      backend,
      seconds: Math.round(info.seconds),
    },
    validation: { seed: options.validationSeed, images: info.validationImages, accuracy: info.validationAccuracy },
  };
  await writeFile(path.join(options.outDir, 'training.json'), `${JSON.stringify(record, null, 2)}\n`);
  model.dispose();
  return record.weightBytes ?? 0;
}

/** Load saved weights into the training variables, undoing the input-scale fold of the first kernel. */
async function loadInto(params: DemoParams, dir: string): Promise<void> {
  const model = await loadLayersModelFromDir(dir);
  const weights = model.getWeights();
  const targets = [...params.convs.flatMap((c) => [c.kernel, c.bias]), params.dense.kernel, params.dense.bias];
  if (weights.length !== targets.length) throw new Error(`${dir} has ${weights.length} weight arrays, the demo network ${targets.length}`);
  weights.forEach((w, i) => {
    const target = targets[i] as tf.Variable;
    target.assign(i === 0 ? tf.mul(w, TRAINING_INPUT_SCALE) : w);
  });
  model.dispose();
}

export async function train(options: TrainOptions): Promise<void> {
  if (options.seed === options.validationSeed) throw new RangeError('validation seed must differ from the training seed');
  const backend = await useBackend(options.backend);
  const params = initParams(new Prng(options.seed ^ 0x5eed), DEMO_ARCHITECTURE);
  const optimizer = new ScheduledAdam(options.learningRate, 0.9, 0.999, 1e-7);
  if (options.initFrom !== undefined) await loadInto(params, options.initFrom);
  const variables = [...params.convs.flatMap((c) => [c.kernel, c.bias]), params.dense.kernel, params.dense.bias];
  console.log(`training ${MODEL_NAME} on ${backend}: ${options.steps} steps x ${options.batchSize} images`);
  const started = Date.now();
  let windowLoss = 0;
  let windowCorrect = 0;
  let dataMs = 0;
  for (let step = 0; step < options.steps; step++) {
    const t0 = Date.now();
    const images = generateRange(options.seed, step * options.batchSize, options.batchSize);
    dataMs += Date.now() - t0;
    const x = tf.tidy(() => tf.div(caffeBatch(images), TRAINING_INPUT_SCALE) as tf.Tensor4D);
    const y = oneHot(images.map((im) => im.classIndex), DEMO_ARCHITECTURE.numClasses);
    optimizer.setLearningRate(learningRateAt(step, options));
    let correct: tf.Tensor | null = null;
    const loss = optimizer.minimize(
      () => {
        const logits = forwardLogits(params, x);
        correct = tf.keep(tf.sum(tf.cast(tf.equal(tf.argMax(logits, 1), tf.argMax(y, 1)), 'float32')));
        return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
      },
      true,
      variables,
    );
    windowLoss += (await loss!.data())[0] as number;
    windowCorrect += (await (correct as tf.Tensor | null)!.data())[0] as number;
    tf.dispose([x, y, loss!, correct!]);
    if ((step + 1) % options.logEvery === 0 || step + 1 === options.steps) {
      const n = ((step % options.logEvery) + 1);
      const elapsed = (Date.now() - started) / 1000;
      console.log(
        `step ${step + 1}/${options.steps}  loss ${(windowLoss / n).toFixed(4)}  batch acc ${(windowCorrect / (n * options.batchSize)).toFixed(3)}  lr ${learningRateAt(step, options).toExponential(2)}  ${elapsed.toFixed(0)}s (data ${(dataMs / 1000).toFixed(0)}s)`,
      );
      windowLoss = 0;
      windowCorrect = 0;
    }
    if (options.checkpointEvery > 0 && (step + 1) % options.checkpointEvery === 0 && step + 1 < options.steps) {
      const quick = await accuracy(params, options.validationSeed, 100);
      await saveModel(params, options, backend, { stepsDone: step + 1, seconds: (Date.now() - started) / 1000, validationAccuracy: quick, validationImages: 100 });
      console.log(`checkpoint at step ${step + 1}: validation accuracy ${quick.toFixed(3)} on 100 images`);
    }
  }
  const trainSeconds = (Date.now() - started) / 1000;
  const validationAccuracy = await accuracy(params, options.validationSeed, options.validationSize);
  console.log(`validation accuracy ${validationAccuracy.toFixed(4)} on ${options.validationSize} images (seed ${options.validationSeed})`);

  const bytes = await saveModel(params, options, backend, { stepsDone: options.steps, seconds: trainSeconds, validationAccuracy, validationImages: options.validationSize });
  console.log(`saved ${options.outDir}/model.json (${bytes} weight bytes) after ${trainSeconds.toFixed(0)}s of training`);
  optimizer.dispose();
  disposeParams(params);
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
    },
  });
  const int = (flag: string, raw: string | undefined, fallback: number): number => {
    if (raw === undefined) return fallback;
    const v = Number(raw);
    if (!Number.isInteger(v) || v <= 0) throw new RangeError(`--${flag} must be a positive integer, got '${raw}'`);
    return v;
  };
  const backend = values.backend ?? DEFAULT_TRAIN_OPTIONS.backend;
  if (backend !== 'wasm' && backend !== 'cpu') throw new RangeError(`--backend must be wasm or cpu, got '${backend}'`);
  const lr = values['learning-rate'] === undefined ? DEFAULT_TRAIN_OPTIONS.learningRate : Number(values['learning-rate']);
  if (!(lr > 0)) throw new RangeError(`--learning-rate must be a positive number, got '${values['learning-rate']}'`);
  return {
    ...DEFAULT_TRAIN_OPTIONS,
    steps: int('steps', values.steps, DEFAULT_TRAIN_OPTIONS.steps),
    batchSize: int('batch-size', values['batch-size'], DEFAULT_TRAIN_OPTIONS.batchSize),
    seed: int('seed', values.seed, DEFAULT_TRAIN_OPTIONS.seed),
    learningRate: lr,
    outDir: values.out ?? DEFAULT_TRAIN_OPTIONS.outDir,
    checkpointEvery: values['checkpoint-every'] === undefined ? DEFAULT_TRAIN_OPTIONS.checkpointEvery : int('checkpoint-every', values['checkpoint-every'], 0),
    ...(values.init === undefined ? {} : { initFrom: values.init }),
    backend,
  };
}

await train(parseOptions(process.argv.slice(2)));
