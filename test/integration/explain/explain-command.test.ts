/**
 * `explain` end to end on a small generated model in both weight formats (Keras HDF5 full-model
 * file and TF.js Layers), real images, real decoding, engine, rendering and file output. One run
 * goes through the real CLI binary in a child process to check flags, output and the exit code.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, beforeEach, describe, expect, onTestFailed, test } from 'vitest';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { loadModelSpec } from '../../../src/worker/model/source.js';
import { writeKerasHdf5 } from '../../../scripts/weights/write-keras-hdf5.js';
import { writeTfjsLayers } from '../../../scripts/weights/write-tfjs-layers.js';
import { silentLogger } from '../../../src/shared/logger.js';
import type { ImageManifest, RunManifestLine } from '../../../src/shared/manifest.js';
import { IMAGE_MANIFEST_SCHEMA } from '../../../src/shared/manifest.js';
import { parseExplainFlags } from '../../../src/worker/explain/options.js';
import { defaultExplainDeps, runExplain } from '../../../src/worker/explain/run.js';
import { PACKAGE_VERSION } from '../../../src/shared/version.js';
import * as tf from '@tensorflow/tfjs';
import { applicationModel, saveWeightsOnlyH5, seedWeights } from '../../unit/model/helpers/keras-functional.js';
import { CLI_BIN } from '../../helpers/cluster.js';

const root = path.resolve(import.meta.dirname, '../../..');
const fixtures = path.join(root, 'test/fixtures/images');
let dir: string;
let h5: string;
let modelJson: string;
let labelsFile: string;
let images: string[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'explain-'));
  const spec = vggShapedSpec({ seed: 9, inputShape: [32, 32, 3], classes: 4, inputStd: 60 });
  h5 = path.join(dir, 'small.h5');
  await writeKerasHdf5(h5, spec, { style: 'modern', fullModel: true });
  modelJson = await writeTfjsLayers(path.join(dir, 'tfjs'), spec);
  labelsFile = path.join(dir, 'labels.txt');
  await writeFile(labelsFile, 'circle\nsquare\ntriangle\nstar\n');
  // Two inputs share a base name (a/x.jpg, b/x.jpg); one name has characters unsafe in paths.
  await mkdir(path.join(dir, 'a'));
  await mkdir(path.join(dir, 'b'));
  images = [path.join(dir, 'a', 'x.jpg'), path.join(dir, 'b', 'x.jpg'), path.join(dir, '..weird name;$(x).png'), path.join(dir, 'gray.png')];
  await copyFile(path.join(fixtures, 'parity/photo-333x217.jpg'), images[0]);
  await copyFile(path.join(fixtures, 'parity/rgb-97x401.png'), images[1]);
  await copyFile(path.join(fixtures, 'parity/rgba-123x77.png'), images[2]);
  await copyFile(path.join(fixtures, 'parity/gray-150x90.png'), images[3]);
}, 60_000);

let failed = false;
beforeEach(() => {
  onTestFailed(() => {
    failed = true;
  });
});
afterAll(async () => {
  // A failed run's files stay for inspection.
  if (failed) console.error(`explain test files kept in ${dir}`);
  else await rm(dir, { recursive: true, force: true });
});

async function manifests(out: string): Promise<ImageManifest[]> {
  const names = (await readdir(path.join(out, 'predictions'))).filter((n) => n.endsWith('.json')).sort();
  return Promise.all(names.map(async (n) => JSON.parse(await readFile(path.join(out, 'predictions', n), 'utf8')) as ImageManifest));
}

describe('explain', () => {
  test('TF.js Layers weights: outputs per image, safe distinct names, complete manifests, bad images reported', async () => {
    const out = path.join(dir, 'out-tfjs');
    const lines: string[] = [];
    const deps = { ...(await defaultExplainDeps(silentLogger())), report: (l: string) => lines.push(l) };
    const truncated = path.join(fixtures, 'hostile/truncated.jpg');
    const missing = path.join(dir, 'missing.jpg');
    const options = parseExplainFlags([...images, truncated, missing], {
      weights: modelJson, out, targets: 'topk', topK: '2', method: 'gradcam++', score: 'logit', labels: labelsFile, backend: 'wasm', batchSize: '3', format: 'png', maxSide: '200',
    });
    const summary = await runExplain(options, deps);
    expect(summary).toMatchObject({ ok: 4, failed: 2 });
    expect(lines.filter((l) => l.startsWith('FAILED')).join('\n')).toMatch(/truncated\.jpg: CORRUPT_IMAGE/);
    expect(lines.filter((l) => l.startsWith('FAILED')).join('\n')).toMatch(/missing\.jpg: NOT_FOUND: no such file/);

    // The run's naming scheme (shared/artifacts.ts): one folder per artifact.
    expect((await readdir(out)).sort()).toEqual(['heatmaps', 'overlays', 'predictions']);
    const files = (await readdir(out, { recursive: true })).filter((f) => f.includes('.')).sort();
    expect(files).toHaveLength(12);
    expect(files.every((f) => /^(overlays|heatmaps|predictions)\/[A-Za-z0-9][A-Za-z0-9._-]*$/.test(f))).toBe(true);
    const xs = files.filter((f) => /^predictions\/x-[0-9a-f]{10}\.json$/.test(f));
    expect(xs).toHaveLength(2);
    expect(files).toContain('predictions/weird_name_x_.json');
    expect(files).toContain('overlays/gray.png');
    expect(files).toContain('heatmaps/gray.png');

    const spec = await loadModelSpec(modelJson);
    for (const m of await manifests(out)) {
      expect(m.schema).toBe(IMAGE_MANIFEST_SCHEMA);
      expect(m.provenance).toMatchObject({
        weightsSource: modelJson, weightsHash: spec.weightsHash, layer: 'block2_conv2', method: 'gradcam++', score: 'logit', resize: 'nearest', engine: 'tfjs', backend: 'wasm', packageVersion: PACKAGE_VERSION,
      });
      expect(m.predictions).toHaveLength(2);
      expect(m.predictions[0].label).toBe(['circle', 'square', 'triangle', 'star'][m.predictions[0].index]);
      expect(m.targets.map((t) => t.classIndex)).toEqual(m.predictions.map((p) => p.index));
      for (const t of m.targets) {
        expect(t.grid).toHaveLength(t.gridHeight * t.gridWidth);
        expect([t.gridHeight, t.gridWidth]).toEqual([16, 16]);
        expect(t.grid.every((v) => v >= 0 && v <= 1)).toBe(true);
        if (t.degenerate === null) expect(Math.max(...t.grid)).toBe(1);
      }
      expect(Object.keys(m.timings)).toEqual(expect.arrayContaining(['read', 'decode', 'preprocess', 'queueWait', 'infer', 'inferBatchSize', 'metrics', 'render', 'write']));
      expect(m.units.timings).toMatch(/^milliseconds/);
      expect(m.units.grid).toMatch(/^row-major/);
      expect(m.outputs).toEqual({ overlay: expect.stringMatching(/^overlays\/.+\.png$/), heatmap: expect.stringMatching(/^heatmaps\/.+\.png$/), prediction: expect.stringMatching(/^predictions\/.+\.json$/) });
      // The audit's metrics record, as the workers write it (no truth for local files).
      expect(m.metrics.top1Prob).toBe(m.predictions[0].probability);
      expect(m.metrics.imageWidth).toBe(m.source.width);
      expect(m.truth).toBeUndefined();
      const overlay = await sharp(path.join(out, m.outputs.overlay)).metadata();
      const scale = Math.min(1, 200 / Math.max(m.source.width, m.source.height));
      expect(overlay.format).toBe('png');
      expect([overlay.width, overlay.height]).toEqual([Math.round(m.source.width * scale), Math.round(m.source.height * scale)]);
      const heat = await sharp(path.join(out, m.outputs.heatmap)).metadata();
      // The image's aspect ratio at the model's input side (32 here), never larger than the image.
      const side = Math.min(32, Math.max(m.source.width, m.source.height)) / Math.max(m.source.width, m.source.height);
      expect([heat.width, heat.height, heat.channels]).toEqual([Math.round(m.source.width * side), Math.round(m.source.height * side), 1]);
    }
    const photo = (await manifests(out)).find((m) => m.source.uri === images[0])!;
    expect(photo.source).toMatchObject({ format: 'jpeg', width: 333, height: 217 });
  });

  test('--method scorecam and eigencam run on ONNX Runtime at a layer whose head it cannot differentiate, recorded in provenance', async () => {
    const deps = { ...(await defaultExplainDeps(silentLogger())), report: () => undefined };
    for (const method of ['scorecam', 'eigencam']) {
      const out = path.join(dir, `out-${method}`);
      // block1_conv2 leaves convolutions in the head: no compiled backward, but no gradient is needed.
      const options = parseExplainFlags(images.slice(0, 2), { weights: h5, out, method, score: 'logit', layer: 'block1_conv2', engine: 'onnx', batchSize: '2' });
      expect(await runExplain(options, deps)).toMatchObject({ ok: 2, failed: 0 });
      for (const m of await manifests(out)) {
        expect(m.provenance).toMatchObject({ method, score: 'logit', layer: 'block1_conv2', engine: 'onnx' });
        expect(m.targets[0].degenerate).toBeNull();
        expect(Math.max(...m.targets[0].grid)).toBe(1);
      }
    }
  });

  test('--faithfulness: the three metrics in every prediction document, the same on a rerun (random region seeded by the path)', async () => {
    const deps = { ...(await defaultExplainDeps(silentLogger())), report: () => undefined };
    const runs: ImageManifest[][] = [];
    for (const name of ['faith-1', 'faith-2']) {
      const out = path.join(dir, name);
      const options = parseExplainFlags(images.slice(0, 3), { weights: h5, out, faithfulness: true, score: 'logit', engine: 'onnx', batchSize: '2' });
      expect(options.faithfulness).toBe(true);
      expect(await runExplain(options, deps)).toMatchObject({ ok: 3, failed: 0 });
      runs.push(await manifests(out));
    }
    for (const [i, m] of runs[0].entries()) {
      expect(m.provenance.faithfulness).toEqual({ fraction: 0.2, blurSigma: 0.04 });
      const { faithTopDrop, faithRandomDrop, faithfulness } = m.metrics as Record<string, number>;
      expect([faithTopDrop, faithRandomDrop, faithfulness].every((v) => typeof v === 'number' && v >= -1 && v <= 1)).toBe(true);
      expect(faithfulness).toBeCloseTo(faithTopDrop - faithRandomDrop, 12);
      expect(runs[1][i].metrics).toMatchObject({ faithTopDrop, faithRandomDrop, faithfulness });
    }
  });

  test('Keras HDF5 weights through the CLI binary, a directory and a glob, --json: same predictions as TF.js weights, exit code 1 when an image fails', async () => {
    const out = path.join(dir, 'out-h5');
    // A directory (a/ holds x.jpg), a glob the shell does not expand (execFile has no shell), a bad file.
    const args = [CLI_BIN, 'explain', path.join(dir, 'a'), path.join(dir, 'gr*.png'), path.join(fixtures, 'hostile/text.jpg'), '--weights', h5, '--out', out, '--backend', 'wasm', '--top-k', '3', '--labels', labelsFile, '--json'];
    const run = await promisify(execFile)(process.execPath, args, { cwd: root, env: { ...process.env, LOG_LEVEL: 'warn' } }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/2 explained, 1 failed/);
    expect(run.stderr).toMatch(/FAILED .*text\.jpg: NOT_AN_IMAGE/);
    // stdout is JSON Lines only: the manifest line of each image, in argument order.
    const lines = run.stdout.trim().split('\n').map((l) => JSON.parse(l) as RunManifestLine);
    expect(lines.map((l) => [path.basename(l.key), l.status])).toEqual([['x.jpg', 'ok'], ['gray.png', 'ok'], ['text.jpg', 'failed']]);
    expect(lines[0]).toMatchObject({ top1: { index: expect.any(Number) }, outputs: { overlay: 'overlays/x.jpg', prediction: 'predictions/x.json' }, metrics: { top1Prob: expect.any(Number) } });
    expect(lines[2].error).toMatch(/^NOT_AN_IMAGE/);
    const h5Manifests = await manifests(out);
    expect(h5Manifests.map((m) => path.basename(m.source.uri)).sort()).toEqual(['gray.png', 'x.jpg']);
    expect(h5Manifests.every((m) => m.outputs.overlay.endsWith('.jpg'))).toBe(true);

    // The same weights in the other format give the same predictions.
    const tfjs = await manifests(path.join(dir, 'out-tfjs'));
    for (const m of h5Manifests) {
      expect(m.provenance.method).toBe('gradcam');
      expect(m.targets).toHaveLength(1);
      const other = tfjs.find((t) => t.source.uri === m.source.uri)!;
      expect(m.predictions[0].index).toBe(other.predictions[0].index);
      expect(m.predictions[0].probability).toBeCloseTo(other.predictions[0].probability, 5);
    }
  }, 150_000); // a CLI child plus a model load: slow on a loaded 2-core machine

  test('flag errors name the flag and exit with code 2', async () => {
    const run = await promisify(execFile)(process.execPath, [CLI_BIN, 'explain', images[0], '--weights', h5, '--method', 'gradcam+++'], { cwd: root }).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/CONFIG: --method: expected one of gradcam, gradcam\+\+, hirescam, xgradcam, layercam, eigencam, scorecam, got "gradcam\+\+\+"/);
    expect(() => parseExplainFlags(['a.jpg'], { weights: 'w.h5', targets: '3,x' })).toThrow(/--targets: expected top1, topk or comma-separated/);
    expect(() => parseExplainFlags(['a.jpg'], { weights: 'w.h5', alpha: '1.5' })).toThrow(/--alpha: expected a number from 0 to 1/);
    expect(() => parseExplainFlags(['a.jpg'], { weights: 'w.h5', batchSize: '0' })).toThrow(/--batch-size/);
    expect(() => parseExplainFlags(['a.jpg'], { weights: 'w.h5', backend: 'tpu' })).toThrow(/--backend/);
    expect(() => parseExplainFlags(['a.jpg'], { weights: 'w.h5', engine: 'torch' })).toThrow(/--engine/);
    expect(() => parseExplainFlags(['a.jpg'], { weights: 'w.h5', maxSide: '-3' })).toThrow(/--max-side/);
    expect(() => parseExplainFlags(['a.jpg'], {})).toThrow(/--weights: required/);
  });

  test('a Keras weights-only .h5 with --architecture mobilenetv2 and a model card (input size, preprocessing): explained at the Keras target layer', async () => {
    await tf.setBackend('cpu');
    const model = await applicationModel('mobilenetv2', [64, 64, 3], 5);
    const weights = path.join(dir, 'mnv2.weights.h5');
    try {
      seedWeights(model, 4);
      await saveWeightsOnlyH5(model, weights);
    } finally {
      model.dispose();
    }
    // `<weights name without extension>.model.json`: mnv2.weights.h5 → mnv2.weights.model.json.
    await writeFile(path.join(dir, 'mnv2.weights.model.json'), JSON.stringify({ inputSize: [64, 64], preprocess: 'tf' }));
    const out = path.join(dir, 'out-mnv2');
    const deps = { ...(await defaultExplainDeps(silentLogger())), report: () => undefined };
    const summary = await runExplain(parseExplainFlags([images[0]], { weights, out, architecture: 'mobilenetv2', backend: 'cpu', engine: 'tfjs' }), deps);
    expect(summary).toMatchObject({ ok: 1, failed: 0 });
    const [m] = await manifests(out);
    expect(m.provenance).toMatchObject({ layer: 'out_relu', preprocess: 'tf', engine: 'tfjs' });
    expect(m.predictions[0].index).toBeLessThan(5);
    expect([m.targets[0].gridHeight, m.targets[0].gridWidth]).toEqual([2, 2]);
    // Without --architecture the file is read as VGG16, whose layers it does not have.
    await expect(runExplain(parseExplainFlags([images[0]], { weights, out, backend: 'cpu', engine: 'tfjs' }), deps)).rejects.toThrow(/no weights for layer "block1_conv1" of vgg16/);
    expect(() => parseExplainFlags([images[0]], { weights, architecture: 'resnet' })).toThrow(/--architecture: .*vgg16, resnet50, mobilenetv2/);
  }, 60_000);
});
