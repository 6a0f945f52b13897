import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IMAGE_MANIFEST_SCHEMA, type ImageManifest, type RunManifestLine } from '../../../src/shared/manifest.js';
import { listWorkers } from '../../../src/shared/queue/heartbeat.js';
import { jobIdFor } from '../../../src/shared/queue/contract.js';
import { MANIFEST_FILE } from '../../../src/shared/run-finalizer.js';
import { outputKeysFor } from '../../../src/shared/storage/output-keys.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { META_OPTIONS_HASH, META_SOURCE_ETAG } from '../../../src/worker/pipeline/image-job.js';
import { startMetricsServer, type MetricsServer } from '../../../src/worker/pipeline/metrics.js';
import type { PipelineWorker } from '../../../src/worker/pipeline/pipeline-worker.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from './helpers.js';

const GOOD = ['in/a.png', 'in/b.png', 'in/sub dir/ç+%.png', 'in/d.png', 'in/e.png'];
const BAD = 'in/not-an-image.png';

describe('pipeline worker against real Redis and S3', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;
  let worker: PipelineWorker;
  let metrics: MetricsServer;
  const batches: Array<{ size: number; reason: string }> = [];

  beforeAll(async () => {
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), tinyEngine()]);
    h = pipelineHarness(t, b);
    await Promise.all(GOOD.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 1, 40 + 4 * i, 36), { contentType: 'image/png' })));
    await b.store.put(b.bucket, BAD, 'this is a text file, not a PNG', { contentType: 'image/png' });
    worker = await h.startWorker(engine, { batchSize: 4, maxBatchDelayMs: 200, heartbeatIntervalMs: 200 });
    worker.batcher.on('batch', (e) => batches.push({ size: e.size, reason: e.reason }));
    metrics = await startMetricsServer(worker.metrics.registry, '127.0.0.1', 0);
  });

  afterAll(async () => {
    await metrics?.close();
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
  });

  let runId: string;
  let truthFile: string;
  const output = () => `s3://${b.bucket}/out/`;

  it('processes a prefix end to end: outputs, manifests, run completion, exactly-once manifest.jsonl', async () => {
    // Ground truth for every good image (class 1, by index), with a box for the first one.
    truthFile = path.join(await mkdtemp(path.join(os.tmpdir(), 'truth-')), 'truth.csv');
    await writeFile(truthFile, ['key,label,x0,y0,x1,y1', `${GOOD[0]},1,0,0,20,18`, ...GOOD.slice(1).map((k) => `${k},1`)].join('\n'));
    runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: output(), runId: 'run-one', truth: truthFile });
    const run = await h.waitForRun(runId);
    expect(run).toMatchObject({ total: 6, done: 5, failed: 1, state: 'completed' });

    // The good images were batched together (across jobs), never one engine call per job.
    expect(batches.some((x) => x.size > 1)).toBe(true);
    expect(batches.reduce((n, x) => n + x.size, 0)).toBe(5);

    for (const key of GOOD) {
      const keys = outputKeysFor('out/', key, 'jpeg');
      expect(keys.overlay.startsWith('out/overlays/')).toBe(true);
      const [overlay, heatmap, prediction] = await Promise.all([b.store.head(b.bucket, keys.overlay), b.store.head(b.bucket, keys.heatmap), b.store.get(b.bucket, keys.prediction)]);
      expect(overlay?.contentType).toBe('image/jpeg');
      expect(heatmap?.contentType).toBe('image/png');
      const source = await b.store.head(b.bucket, key);
      expect(prediction.metadata[META_SOURCE_ETAG]).toBe(source?.etag);
      expect(prediction.metadata[META_OPTIONS_HASH]).toMatch(/^[0-9a-f]{64}$/);
      const m = JSON.parse(prediction.body.toString('utf8')) as ImageManifest;
      expect(m.schema).toBe(IMAGE_MANIFEST_SCHEMA);
      expect(m.source).toMatchObject({ bucket: b.bucket, key, etag: source?.etag, format: 'png', height: 36 });
      expect(m.run).toEqual({ runId, workerId: worker.options.workerId, jobId: jobIdFor(runId, run.epoch, key) });
      expect(m.outputs.overlay).toBe(`s3://${b.bucket}/${keys.overlay}`);
      expect(m.predictions).toHaveLength(5);
      expect(m.targets[0].gridHeight).toBe(16); // 32x32 input, one 2x2 pool before the last conv layer (block2_conv2)
      expect(m.provenance).toMatchObject({ engine: 'tfjs', modelName: 'vgg-small', method: 'gradcam' });
      for (const stage of ['download', 'decode', 'queueWait', 'infer', 'inferBatchSize', 'inferBatchMs', 'render', 'upload']) {
        expect(m.timings[stage], stage).toBeGreaterThanOrEqual(0);
      }
      expect(m.timings.inferBatchSize).toBeGreaterThanOrEqual(1);
      // The audit's per-image record: truth matched to the model's classes, metrics from the result.
      expect(m.truth).toEqual({ label: '1', index: 1, boxes: key === GOOD[0] ? 1 : 0 });
      expect(m.metrics).toMatchObject({ top1Prob: m.predictions[0].probability, correct: m.predictions[0].index === 1, imageWidth: m.source.width });
      // Map metrics describe a map; the tiny model's saturated softmax can leave none (degenerate).
      const hasBoxMetrics = key === GOOD[0] && m.targets[0].degenerate === null;
      expect(typeof m.metrics.boxEnergy).toBe(hasBoxMetrics ? 'number' : 'undefined');
    }

    const manifest = (await b.store.get(b.bucket, `out/${MANIFEST_FILE}`)).body.toString('utf8');
    const lines = manifest.trim().split('\n').map((l) => JSON.parse(l) as RunManifestLine);
    expect(lines.map((l) => l.key).sort()).toEqual([...GOOD, BAD].sort());
    expect(lines.filter((l) => l.status === 'ok')).toHaveLength(5);
    // Each ok line carries what its prediction document says (the run's analysis reads the lines).
    for (const line of lines.filter((l) => l.status === 'ok')) {
      const doc = JSON.parse((await b.store.get(b.bucket, outputKeysFor('out/', line.key, 'jpeg').prediction)).body.toString('utf8')) as ImageManifest;
      expect(line.truth).toEqual(doc.truth);
      expect(line.metrics).toEqual(doc.metrics);
      expect(line.outputs).toEqual(doc.outputs);
    }
  });

  it('fails a bad image at once with UnrecoverableError and a clear reason, without retries', async () => {
    const result = await h.runs.getResult(runId, BAD);
    expect(result?.status).toBe('failed');
    expect(result?.error).toMatch(/^NOT_AN_IMAGE: .*not-an-image\.png/);
    const job = await h.queue.getJob(jobIdFor(runId, (await h.runs.requireRun(runId)).epoch, BAD));
    expect(await job?.getState()).toBe('failed');
    expect(job?.attemptsMade).toBe(1); // of 6 allowed: no retry for a permanent error
    expect(job?.failedReason).toMatch(/NOT_AN_IMAGE/);
  });

  it('serves Prometheus metrics with the documented names', async () => {
    const text = await (await fetch(`http://127.0.0.1:${metrics.port}/metrics`)).text();
    for (const name of [
      'gradcam_audit_images_processed_total',
      'gradcam_audit_images_failed_total',
      'gradcam_audit_batch_size_bucket',
      'gradcam_audit_stage_seconds_bucket',
      'gradcam_audit_queue_depth',
      'gradcam_audit_engine_busy_seconds_total',
      'gradcam_audit_jobs_in_flight',
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/gradcam_audit_images_processed_total\{outcome="ok"\} 5/);
    expect(text).toMatch(/gradcam_audit_images_failed_total\{reason="NOT_AN_IMAGE"\} 1/);
    for (const stage of ['download', 'decode', 'infer', 'render', 'upload']) expect(text).toContain(`stage="${stage}"`);
    expect(text).toMatch(/gradcam_audit_queue_depth 0/);
  });

  it('writes a heartbeat with the engine, batch size and counts', async () => {
    await new Promise((r) => setTimeout(r, 300)); // one heartbeat period after the run
    const [hb] = await listWorkers(t.redis, { prefix: t.prefix });
    expect(hb).toMatchObject({ workerId: worker.options.workerId, engine: 'tfjs', batchSize: 4, processed: 5, failed: 1, inFlight: 0, status: 'running' });
  });

  it('treats a re-run over existing outputs as a no-op: outputs untouched, the run still completes', async () => {
    const keys = GOOD.map((k) => outputKeysFor('out/', k, 'jpeg'));
    const before = await Promise.all(keys.flatMap((k) => [k.overlay, k.heatmap, k.prediction]).map((k) => b.store.head(b.bucket, k)));
    const batchesBefore = batches.length;
    // Same source, options, truth and output prefix under another run id: every job finds its outputs.
    const second = await h.enqueue(`s3://${b.bucket}/in/`, { output: output(), runId: 'run-two', exclude: 'not-an-image.png', truth: truthFile });
    const run = await h.waitForRun(second);
    expect(run).toMatchObject({ total: 5, done: 5, failed: 0 });
    const after = await Promise.all(keys.flatMap((k) => [k.overlay, k.heatmap, k.prediction]).map((k) => b.store.head(b.bucket, k)));
    expect(after.map((x) => x?.etag)).toEqual(before.map((x) => x?.etag));
    expect(batches.length).toBe(batchesBefore); // the engine never ran
    const text = await (await fetch(`http://127.0.0.1:${metrics.port}/metrics`)).text();
    expect(text).toMatch(/gradcam_audit_images_processed_total\{outcome="skipped"\} 5/);
  });

  it('drains on stop: heartbeat removed, clean outcome', async () => {
    const outcome = await worker.stop(5_000);
    expect(outcome.clean).toBe(true);
    expect(await listWorkers(t.redis, { prefix: t.prefix })).toEqual([]);
  });
});
