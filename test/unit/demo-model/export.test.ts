/**
 * The trained variables and the saved Layers model are the same network: the functional training
 * forward pass (on input divided by TRAINING_INPUT_SCALE) and the exported `tf.Sequential` (on plain
 * caffe input, the scale folded into the first kernel) give the same logits, and the model survives
 * a save/load round trip through the file handlers.
 */
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDemoLayersModel, DEMO_ARCHITECTURE, disposeParams, forwardLogits, initParams, LAST_CONV_LAYER, toLayerWeights, TRAINING_INPUT_SCALE } from '../../../scripts/demo-model/architecture.js';
import { useBackend } from '../../../scripts/demo-model/backend.js';
import { caffeBatch, generateRange } from '../../../scripts/demo-model/data.js';
import { fileSaveHandler, loadLayersModelFromDir, WEIGHTS_FILE } from '../../../scripts/demo-model/model-io.js';
import { Prng } from '../../../scripts/demo-model/prng.js';

describe('demo model export', () => {
  let dir = '';
  beforeAll(async () => {
    await useBackend('wasm');
    dir = await mkdtemp(path.join(tmpdir(), 'demo-export-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('folds the training input scale into the first kernel exactly', async () => {
    const params = initParams(new Prng(3));
    // Random biases too, so a wrong bias mapping cannot hide behind zeros.
    const prng = new Prng(4);
    for (const v of [...params.convs.map((c) => c.bias), params.dense.bias]) {
      v.assign(tf.tensor1d(Float32Array.from({ length: v.size }, () => 0.1 * prng.normal())));
    }
    const model = buildDemoLayersModel();
    const weights = toLayerWeights(params);
    model.setWeights(weights);
    tf.dispose(weights);
    expect(model.layers.map((l) => l.name)).toContain(LAST_CONV_LAYER);
    expect(model.getLayer('predictions').getConfig()).toMatchObject({ activation: 'softmax', units: DEMO_ARCHITECTURE.numClasses });

    const x = caffeBatch(generateRange(77, 0, 3));
    const logits = tf.tidy(() => forwardLogits(params, tf.div(x, TRAINING_INPUT_SCALE) as tf.Tensor4D));
    const expected = tf.tidy(() => tf.softmax(logits));
    const got = model.predict(x) as tf.Tensor;
    const e = await expected.data();
    const g = await got.data();
    e.forEach((v, i) => expect(g[i]).toBeCloseTo(v, 5));

    await model.save(fileSaveHandler(dir));
    const bytes = (await stat(path.join(dir, WEIGHTS_FILE))).size;
    expect(bytes).toBe(model.countParams() * 4);
    const loaded = await loadLayersModelFromDir(dir);
    const again = loaded.predict(x) as tf.Tensor;
    const a = await again.data();
    g.forEach((v, i) => expect(a[i]).toBe(v));

    tf.dispose([x, logits, expected, got, again]);
    model.dispose();
    loaded.dispose();
    disposeParams(params);
  });
});
