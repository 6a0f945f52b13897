/**
 * The committed demo model (models/demo) through the project's own loader and engine: it is small,
 * its labels match the generator's classes, and it recognises freshly generated scenes from a seed
 * that neither training (1 and 2), validation (1001) nor `eval:demo` (2024) uses.
 */
import { readFile, stat } from 'node:fs/promises';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { preprocess } from '../../../src/worker/image/preprocess.js';
import { loadModelSpec } from '../../../src/worker/model/source.js';
import { DEMO_ARCHITECTURE, LAST_CONV_LAYER } from '../../../scripts/demo-model/architecture.js';
import { caffeBatch } from '../../../scripts/demo-model/data.js';
import { DEFAULT_EVAL_OPTIONS, evaluate } from '../../../scripts/demo-model/evaluate.js';
import { loadLayersModelFromDir, WEIGHTS_FILE } from '../../../scripts/demo-model/model-io.js';
import { DEMO_CLASSES, generateImage } from '../../../scripts/demo-model/synth.js';

const DIR = 'models/demo';
const images = Array.from({ length: 40 }, (_, i) => generateImage(31337, i));

describe('committed demo model', () => {
  let engine: Engine;
  beforeAll(async () => {
    const spec = await loadModelSpec(`${DIR}/model.json`);
    engine = await createEngine({ spec, backend: 'wasm' });
  });
  afterAll(async () => {
    await engine?.dispose();
  });

  it('is small and labelled with the generator classes', async () => {
    expect((await stat(`${DIR}/${WEIGHTS_FILE}`)).size).toBeLessThanOrEqual(5 * 1024 * 1024);
    expect(JSON.parse(await readFile(`${DIR}/labels.json`, 'utf8'))).toEqual([...DEMO_CLASSES]);
    expect(engine.info).toMatchObject({ layer: LAST_CONV_LAYER, inputHeight: DEMO_ARCHITECTURE.inputSize, inputWidth: DEMO_ARCHITECTURE.inputSize, numClasses: DEMO_CLASSES.length });
  });

  it('classifies held-out synthetic scenes at 90% or better', async () => {
    const inputs = images.map((im) => preprocess({ data: im.rgb, width: im.width, height: im.height }, { width: DEMO_ARCHITECTURE.inputSize, height: DEMO_ARCHITECTURE.inputSize }));
    const probs = await engine.predict(inputs);
    const correct = probs.filter((p, i) => p.indexOf(Math.max(...p)) === images[i]!.classIndex).length;
    expect(correct / images.length).toBeGreaterThanOrEqual(0.9);

    // The same files loaded by TF.js itself give the same probabilities: loader and export agree.
    const layers = await loadLayersModelFromDir(DIR);
    const x = caffeBatch(images.slice(0, 5));
    const y = layers.predict(x) as tf.Tensor;
    const ref = await y.data();
    probs.slice(0, 5).forEach((p, i) => p.forEach((v, c) => expect(v).toBeCloseTo(ref[i * DEMO_CLASSES.length + c]!, 4)));
    tf.dispose([x, y]);
    layers.dispose();
  });

  it('points its Grad-CAM at the object on held-out scenes', async () => {
    const r = await evaluate(engine, { ...DEFAULT_EVAL_OPTIONS, images: 40, seed: 31337 });
    expect(r.accuracy).toBeGreaterThanOrEqual(0.9);
    // Looser than eval:demo's 0.9 goal on 250 images: 40 images leave more sampling noise.
    expect(r.pointing.logit).toBeGreaterThanOrEqual(0.8);
  });
});
