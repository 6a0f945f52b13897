/**
 * `gradcam-audit doctor` against the real Redis and S3 server of the test run, with the bundled
 * demo model on the real engines: every check passes on a working setup, each broken piece (an
 * unreachable Redis, missing S3 credentials, a required GPU that is not there) fails with its
 * reason and exit 1, and a disagreeing engine fails the parity check.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { configuredModelLoader } from '../../../src/worker/model/configured-loader.js';
import { applicationModel, saveWeightsOnlyH5, seedWeights } from '../../unit/model/helpers/keras-functional.js';
import { threadpoolSizeFor } from '../../../bin/threadpool.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_LABELS, DEMO_MODEL } from '../../../src/demo/options.js';
import { loadConfig } from '../../../src/shared/config.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { parityCheck, parityInputs } from '../../../src/worker/doctor/engine-checks.js';
import type { DoctorReport } from '../../../src/worker/doctor/report.js';
import { parseDoctorFlags, runDoctor } from '../../../src/worker/doctor/run.js';
import { loadModelSpec } from '../../../src/worker/model/source.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { REPO_ROOT } from '../../helpers/cluster.js';
import { s3Options, serviceEnv, testBucket, type TestBucket } from '../../helpers/services.js';

const status = (r: DoctorReport) => Object.fromEntries(r.checks.map((c) => [c.name, c.status]));

describe('gradcam-audit doctor', () => {
  let b: TestBucket;
  beforeAll(async () => {
    b = await testBucket();
    await b.store.put(b.bucket, 'photos/a.png', 'x', { contentType: 'image/png' });
  });
  afterAll(async () => {
    await b?.cleanup();
  });

  it('passes every check of a working setup: engine, parity with the CPU path, speed, Redis, S3', async () => {
    const options = parseDoctorFlags({ source: `s3://${b.bucket}/photos/`, batch: '2', onnxCacheDir: 'off' }, DEMO_MODEL, {});
    options.labels = DEMO_LABELS;
    // The harness's S3 credentials go in the config, as the CLI's would come from AWS_* variables.
    const report = await runDoctor(options, { config: { ...loadConfig(serviceEnv()), s3: s3Options() }, loadSpec: (s: string) => loadModelSpec(s) });
    const s = status(report);
    expect(s).toMatchObject({ onnx: 'ok', tfjs: 'ok', model: 'ok', engine: 'ok', parity: 'ok', speed: 'ok', redis: 'ok', s3: 'ok' });
    expect(['ok', 'warn']).toContain(s.node);
    expect(report.ok).toBe(true);
    const parity = report.checks.find((c) => c.name === 'parity');
    // ONNX Runtime on the CPU is checked against TF.js, an independent implementation.
    expect(parity?.summary).toMatch(/onnx\/onnx-cpu vs tfjs\//);
    expect(parity?.details).toMatchObject({ images: 2, top1Mismatches: 0 });
    expect((parity?.details as { probability: number }).probability).toBeLessThan(1e-3);
    expect(report.checks.find((c) => c.name === 's3')?.summary).toContain(`can list s3://${b.bucket}/photos/ (objects found)`);
    expect((report.checks.find((c) => c.name === 'speed')?.details as { imagesPerSecond: number }).imagesPerSecond).toBeGreaterThan(0);
  }, 120_000);

  it('fails the parity check when the engine and its reference disagree', async () => {
    const [a, other]: Engine[] = await Promise.all([
      createEngine({ spec: vggShapedSpec({ seed: 1, inputStd: 64 }), engine: 'onnx', onnx: { cacheDir: null, checkPlacement: false } }),
      createEngine({ spec: vggShapedSpec({ seed: 2, inputStd: 64 }), engine: 'onnx', onnx: { cacheDir: null, checkPlacement: false } }),
    ]);
    try {
      const check = await parityCheck(a, { engine: other, label: 'different weights' }, await parityInputs(a, { mode: 'caffe', centerCrop: false }));
      expect(check.status).toBe('fail');
      expect(check.summary).toMatch(/disagree: max \|Δp\|/);
    } finally {
      await a.dispose();
      await other.dispose();
    }
  });

  it("reads --architecture and the preprocessing from the model card, and feeds the parity check the model's own preprocessing", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'gca-doctor-card-'));
    const model = await applicationModel('mobilenetv2', [32, 32, 3], 4);
    try {
      seedWeights(model, 11);
      const weights = await saveWeightsOnlyH5(model, join(dir, 'net.h5'));
      await writeFile(join(dir, 'net.model.json'), JSON.stringify({ architecture: 'mobilenetv2', inputSize: [32, 32] }));
      const deps = { config: loadConfig(serviceEnv()), loadSpec: configuredModelLoader(s3Options()) };
      const run = (flags: Record<string, string>) => runDoctor(parseDoctorFlags({ weights, offline: true, batch: '1', onnxCacheDir: 'off', ...flags }, DEMO_MODEL, {}), deps);
      const report = await run({});
      expect(status(report), report.checks.find((c) => c.name === 'model')?.summary).toMatchObject({ model: 'ok', engine: 'ok', parity: 'ok' });
      const modelCheck = report.checks.find((c) => c.name === 'model')!;
      // keras.applications' MobileNetV2 preprocess_input maps pixels to [-1, 1].
      expect(modelCheck.details).toMatchObject({ name: 'mobilenetv2_1.00_224', preprocessing: { mode: 'tf', centerCrop: false }, preprocessFrom: 'default' });
      expect(modelCheck.summary).toContain('preprocess tf (default)');
      const flagged = await run({ preprocess: 'raw' });
      expect(flagged.checks.find((c) => c.name === 'model')?.details).toMatchObject({ preprocessing: { mode: 'raw' }, preprocessFrom: 'flag' });
      // The inputs themselves: [-1, 1] for tf, caffe's mean-subtracted BGR far outside it.
      const engine = await createEngine({ spec: vggShapedSpec({ seed: 1, inputStd: 64 }), engine: 'onnx', onnx: { cacheDir: null, checkPlacement: false } });
      try {
        const range = (xs: { data: Float32Array }[]) => xs.reduce(([lo, hi], x) => [Math.min(lo, ...x.data), Math.max(hi, ...x.data)], [Infinity, -Infinity]);
        const [tfLo, tfHi] = range(await parityInputs(engine, { mode: 'tf', centerCrop: false }));
        expect(tfLo).toBeGreaterThanOrEqual(-1);
        expect(tfHi).toBeLessThanOrEqual(1);
        const [caffeLo, caffeHi] = range(await parityInputs(engine, { mode: 'caffe', centerCrop: false }));
        expect(caffeHi - caffeLo).toBeGreaterThan(100);
      } finally {
        await engine.dispose();
      }
    } finally {
      model.dispose();
      await rm(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it('exits 1 with the reason when Redis is unreachable, S3 has no credentials and a GPU is required', async () => {
    const env: NodeJS.ProcessEnv = { ...process.env, ...serviceEnv(), REDIS_URL: 'redis://127.0.0.1:1', GRADCAM_AUDIT_REQUIRE_GPU: 'true', LOG_LEVEL: 'warn' };
    delete env.AWS_ACCESS_KEY_ID;
    delete env.UV_THREADPOOL_SIZE;
    delete env.AWS_SECRET_ACCESS_KEY;
    // No profile or instance role either: the SDK's chain must come up empty.
    Object.assign(env, { AWS_CONFIG_FILE: '/nonexistent', AWS_SHARED_CREDENTIALS_FILE: '/nonexistent', AWS_EC2_METADATA_DISABLED: 'true' });
    const out = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      // Through the installed command, which sizes libuv's threadpool before anything uses it.
      execFile(process.execPath, ['bin/gradcam-audit.js', 'doctor', '--json', '--batch', '1', '--onnx-cache-dir', 'off'], { cwd: REPO_ROOT, env, timeout: 120_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
      );
    });
    expect(out.code, out.stderr).toBe(1);
    const report = JSON.parse(out.stdout) as DoctorReport;
    expect(report.ok).toBe(false);
    const by = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(by.redis).toMatchObject({ status: 'fail', summary: expect.stringMatching(/redis:\/\/127\.0\.0\.1:1: .*REDIS_URL/) });
    expect(by.s3).toMatchObject({ status: 'fail', summary: expect.stringMatching(/no AWS credentials found/) });
    expect(by.gpu).toMatchObject({ status: 'fail' });
    expect(by.engine?.status).toBe('ok');
    expect(by.node?.details).toMatchObject({ threadpool: threadpoolSizeFor(availableParallelism()) });
  }, 150_000);
});
