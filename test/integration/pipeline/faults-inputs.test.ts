/**
 * Fault: hostile and odd files in the audited prefix, then the same prefix enqueued again and
 * again. One real `gradcam-audit worker` serves both: each hostile file is processed correctly or
 * failed with a reason naming the problem and the file, the worker survives all of them and keeps
 * processing, and re-enqueueing adds no job and rewrites no output.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { ImageManifest } from '../../../src/shared/manifest.js';
import { listWorkers } from '../../../src/shared/queue/heartbeat.js';
import { parseS3Uri } from '../../../src/shared/storage/uri.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { decodeImage } from '../../../src/worker/image/decode.js';
import { preprocess } from '../../../src/worker/image/preprocess.js';
import { Cluster, type CliProcess } from '../../helpers/cluster.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, namespaceEnv, snapshotObjects, startCliWorker, waitForCompletedRun, writeTinyModel } from './faults-support.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from './helpers.js';

const HOSTILE_DIR = fileURLToPath(new URL('../../fixtures/images/hostile/', import.meta.url));

interface HostileFixture {
  file: string;
  description: string;
  /** `ok`, or the error code the image must fail with. */
  expect: string;
  format?: string;
  width?: number;
  height?: number;
}

const FIXTURES = JSON.parse(readFileSync(`${HOSTILE_DIR}manifest.json`, 'utf8')) as HostileFixture[];
// The cases the pipeline must cover; the fixture set may grow, but never lose one of these.
const REQUIRED = ['empty.jpg', 'truncated.jpg', 'text.jpg', 'bomb-30000x30000.png', 'cmyk.jpg', 'rgb16.png', 'gray16.png', 'rgba.png', 'animated.gif', 'exif-rotate6.jpg', 'lossless.webp', 'pattern.tiff'];

// Each test waits on real processes and a whole run; leave room for a loaded CI machine.
describe('fault: hostile inputs and repeated enqueue', { timeout: 90_000 }, () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;
  let worker: CliProcess;
  let env: Record<string, string>;
  /** The same model in this process: what the worker should have computed for each file. */
  let reference: Engine;
  const cluster = new Cluster();

  beforeAll(async () => {
    [t, b, model, reference] = await Promise.all([testRedis(), testBucket(), writeTinyModel(), tinyEngine()]);
    h = pipelineHarness(t, b);
    env = namespaceEnv(t, { LOG_LEVEL: 'info' });
    await Promise.all(FIXTURES.map(async (f) => b.store.put(b.bucket, `hostile/${f.file}`, readFileSync(`${HOSTILE_DIR}${f.file}`), { contentType: 'application/octet-stream' })));
    await Promise.all(Array.from({ length: 8 }, async (_, i) => b.store.put(b.bucket, `good/g${i}.png`, await sampleImage(i + 11), { contentType: 'image/png' })));
    worker = await startCliWorker(cluster, { id: 'inputs', modelJson: model.modelJson, env, args: ['--batch-size', '4', '--max-batch-delay-ms', '100'] });
  });

  afterAll(async () => {
    await cluster.stopAll();
    await h?.close();
    await b?.cleanup();
    await t?.cleanup();
    await model?.remove();
    await reference?.dispose();
  });

  /** Class probabilities of the reference engine on the file decoded and preprocessed in this process. */
  const referenceProbabilities = async (file: string): Promise<Float32Array> => {
    const o = DEFAULT_EXPLAIN_OPTIONS;
    const { inputWidth: width, inputHeight: height, numClasses } = reference.info;
    const image = preprocess(await decodeImage(readFileSync(`${HOSTILE_DIR}${file}`)), { width, height, resize: o.resize });
    const [r] = await reference.explain({ images: [image], targets: o.targets, topK: Math.min(o.topK, numClasses), method: o.method, score: o.score });
    return r.probabilities;
  };

  it('processes each hostile file correctly or fails it with a clear reason; the worker survives', async () => {
    expect(FIXTURES.map((f) => f.file)).toEqual(expect.arrayContaining(REQUIRED));
    const output = `s3://${b.bucket}/hostile-out/`;
    // --include '*': also the SVG/AVIF/BMP files the default extension filter would skip.
    const enqueued = await enqueueCli(cluster, `s3://${b.bucket}/hostile/`, env, ['--output', output, '--include', '*', '--run-id', 'hostile-run']);
    expect(enqueued.enqueue.counts.added).toBe(FIXTURES.length);

    const run = await waitForCompletedRun(h.runs, 'hostile-run', 60_000);
    const okCount = FIXTURES.filter((f) => f.expect === 'ok').length;
    expect(run).toMatchObject({ total: FIXTURES.length, done: okCount, failed: FIXTURES.length - okCount });

    const lines = await expectExactlyOnce(b.store, output, FIXTURES.map((f) => `hostile/${f.file}`));
    for (const f of FIXTURES) {
      const line = lines.get(`hostile/${f.file}`);
      if (f.expect === 'ok') {
        expect(line?.status, `${f.file} (${f.description}): ${line?.error ?? ''}`).toBe('ok');
        const prediction = parseS3Uri(line?.outputs?.prediction ?? '');
        const m = JSON.parse((await b.store.get(prediction.bucket, prediction.key)).body.toString('utf8')) as ImageManifest;
        // Decoded as what it is, at its displayed size (EXIF rotation applied, first GIF frame).
        expect(m.source, f.file).toMatchObject({ format: f.format, width: f.width, height: f.height });
        // The same pixels reached the model: each reported class has the reference's probability,
        // and the top one is the reference's maximum (compared by value: near-ties of this tiny
        // model may order differently between a batch of 4 and a batch of 1, whose float32 sums
        // differ by about 1e-5).
        const expected = await referenceProbabilities(f.file);
        for (const p of m.predictions) expect(p.probability, `${f.file} class ${p.index}`).toBeCloseTo(expected[p.index], 4);
        expect(m.predictions[0].probability, f.file).toBeCloseTo(Math.max(...expected), 4);
      } else {
        expect(line?.status, f.file).toBe('failed');
        // The reason starts with the machine-readable code and names the file.
        expect(line?.error, f.file).toMatch(new RegExp(`^${f.expect}: `));
        expect(line?.error, f.file).toContain(f.file);
        expect(line?.outputs, f.file).toBeUndefined();
      }
    }
    // Bad files fail at once: one attempt each, no retries with backoff.
    const failed = await h.queue.getFailed();
    expect(failed).toHaveLength(FIXTURES.length - okCount);
    for (const job of failed) expect(job.attemptsMade, job.data.source.key).toBe(1);

    expect(worker.child.exitCode).toBeNull();
    expect(worker.logs.some((l) => (l.level ?? 0) >= 60)).toBe(false); // no fatal log line
    expect((await listWorkers(t.redis, { prefix: t.prefix })).map((w) => w.workerId)).toEqual(['inputs']);
  });

  it('enqueueing the same prefix again adds no job and writes no output twice', async () => {
    // Twice at once: both invocations derive the same run id and split the keys between them.
    const [first, second] = await Promise.all([enqueueCli(cluster, `s3://${b.bucket}/good/`, env), enqueueCli(cluster, `s3://${b.bucket}/good/`, env)]);
    expect(second.id).toBe(first.id);
    expect(first.enqueue.counts.added + second.enqueue.counts.added).toBe(8);
    const runId = first.id;
    const run = await waitForCompletedRun(h.runs, runId, 60_000);
    expect(run).toMatchObject({ total: 8, done: 8, failed: 0 });

    const out = parseS3Uri(run.output);
    const lines = await expectExactlyOnce(b.store, run.output, Array.from({ length: 8 }, (_, i) => `good/g${i}.png`));
    expect([...lines.values()].every((l) => l.status === 'ok')).toBe(true);
    const before = await snapshotObjects(b.store, out.bucket, out.key);
    expect(before.size).toBe(8 * 3 + 5); // three outputs per image, manifest.jsonl, summary.json, audit.json, metrics.parquet, report.html
    const jobsBefore = await h.queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed', 'prioritized');

    // And once more after the run finished.
    const third = await enqueueCli(cluster, `s3://${b.bucket}/good/`, env);
    expect(third.id).toBe(runId);
    expect(third.enqueue.counts).toMatchObject({ matched: 8, added: 0, known: 8 });
    // Give a (wrongly) added job time to be picked up and written before comparing.
    await new Promise((r) => setTimeout(r, 1_500));
    expect(await h.queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed', 'prioritized')).toEqual(jobsBefore);
    expect(await h.runs.requireRun(runId)).toMatchObject({ total: 8, done: 8, failed: 0, state: 'completed', finishedAt: run.finishedAt });
    expect(await snapshotObjects(b.store, out.bucket, out.key)).toEqual(before);
    expect(worker.child.exitCode).toBeNull();
  });
});
