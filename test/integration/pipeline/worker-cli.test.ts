/**
 * The real `gradcam-audit worker` as a child process: configuration from flags and environment,
 * JSON logs on stderr, metrics over HTTP, and a SIGTERM drain that finishes in-flight batches and
 * exits 0.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listWorkers } from '../../../src/shared/queue/heartbeat.js';
import { writeTfjsLayers } from '../../../scripts/weights/write-tfjs-layers.js';
import { Cluster } from '../../helpers/cluster.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { pipelineHarness, sampleImage, tinySpec, type PipelineHarness } from './helpers.js';

// One full batch of 4 plus 2 that wait for batch-mates (max delay 1.5 s) when SIGTERM arrives.
const IMAGES = 6;

describe('gradcam-audit worker (child process)', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let dir: string;
  let modelJson: string;
  const cluster = new Cluster();

  beforeAll(async () => {
    [t, b] = await Promise.all([testRedis(), testBucket()]);
    h = pipelineHarness(t, b);
    dir = await mkdtemp(join(tmpdir(), 'gca-worker-cli-'));
    modelJson = await writeTfjsLayers(dir, tinySpec());
    await Promise.all(Array.from({ length: IMAGES }, async (_, i) => b.store.put(b.bucket, `in/img-${i}.png`, await sampleImage(i + 3), { contentType: 'image/png' })));
  });

  afterAll(async () => {
    await cluster.stopAll();
    await h?.close();
    await b?.cleanup();
    await t?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('rejects a bad flag with a message naming it and exit code 2', async () => {
    const r = await cluster.run(['worker', '--weights', modelJson, '--batch-size', '0'], { GRADCAM_AUDIT_PREFIX: t.prefix, GRADCAM_AUDIT_QUEUE: t.queueName });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--batch-size: expected an integer from 1 to 1024, got 0/);
  });

  it('serves metrics, then drains in-flight batches on SIGTERM and exits 0', async () => {
    const worker = cluster.start('worker', ['worker', '--weights', modelJson, '--batch-size', '4', '--prefetch', '4', '--max-batch-delay-ms', '1500', '--metrics-port', '0', '--worker-id', 'cli-w1'], {
      GRADCAM_AUDIT_PREFIX: t.prefix,
      GRADCAM_AUDIT_QUEUE: t.queueName,
      LOG_LEVEL: 'info',
    });
    const listening = await worker.waitForLog((l) => l.msg === 'metrics server listening', 90_000);
    await worker.waitForLog((l) => l.msg === 'worker ready', 90_000);
    expect(worker.logs.find((l) => l.msg === 'engine ready')).toMatchObject({ thread: true, inputHeight: 32 });
    // The worker sets V8's heap growth for a long-running process (heap-growth.ts).
    expect(worker.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('V8 heap growth'))).toMatchObject({ v8Flag: '--heap-growing-percent=300' });
    // The doctor's checks, as far as a worker has them, logged once at start.
    const doctor = worker.logs.find((l) => typeof l.msg === 'string' && l.msg.startsWith('doctor: ')) as { msg: string; doctor?: Array<{ name: string; status: string }> } | undefined;
    expect(doctor?.msg).toMatch(/^doctor: node (ok|warn), model ok, engine ok, gpu (skip|warn), parity skip, redis ok$/);
    expect(doctor?.doctor?.map((c) => c.name)).toEqual(['node', 'model', 'engine', 'gpu', 'parity', 'redis']);
    expect((await listWorkers(t.redis, { prefix: t.prefix })).map((w) => w.workerId)).toEqual(['cli-w1']);
    const metrics = await (await fetch(String(listening.url))).text();
    expect(metrics).toContain('gradcam_audit_images_processed_total');
    expect(metrics).toContain('gradcam_audit_queue_depth');

    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { runId: 'cli-run' });
    await worker.waitForLog((l) => l.msg === 'batch started', 60_000);
    worker.kill('SIGTERM');
    const { code } = await worker.exited;
    expect(code).toBe(0);

    // The signal arrived with jobs in hand (the second batch still gathering batch-mates)...
    const draining = worker.logs.find((l) => l.msg === 'draining: no new jobs; finishing in-flight batches');
    expect(Number(draining?.inFlight)).toBeGreaterThan(0);
    // ...and they were flushed at once rather than abandoned.
    expect(worker.logs.some((l) => l.msg === 'batch started' && l.reason === 'drain')).toBe(true);
    const stopped = worker.logs.find((l) => l.msg === 'worker stopped');
    expect(stopped).toMatchObject({ clean: true, abandoned: 0 });
    // Nothing is left half done: every job either finished or was never fetched.
    const counts = await h.queue.getJobCounts('active', 'completed', 'waiting', 'failed');
    expect(counts.active).toBe(0);
    expect(counts.failed).toBe(0);
    expect(counts.completed).toBeGreaterThanOrEqual(1);
    expect(counts.completed + counts.waiting).toBe(IMAGES);
    const run = await h.runs.requireRun(runId);
    expect(run.done).toBe(counts.completed);
    expect(await listWorkers(t.redis, { prefix: t.prefix })).toEqual([]);
  });
  it('--processes 2: two workers with their own ids and one metrics port, one restarted after it is killed, both drained on SIGTERM', async () => {
    // Jobs the test above left waiting would be counted by whichever process takes them.
    await h.queue.drain(true);
    const group = cluster.start('group', ['worker', '--weights', modelJson, '--processes', '2', '--worker-id', 'grp', '--batch-size', '2', '--max-batch-delay-ms', '50', '--metrics-port', '0'], {
      GRADCAM_AUDIT_PREFIX: t.prefix,
      GRADCAM_AUDIT_QUEUE: t.queueName,
      LOG_LEVEL: 'info',
    });
    const ready = (id: string, n = 1) => (l: { msg?: string; workerId?: unknown }) => l.msg === 'worker ready' && l.workerId === id && group.logs.filter((x) => x.msg === 'worker ready' && x.workerId === id).length >= n;
    await Promise.all([group.waitForLog(ready('grp-0'), 120_000), group.waitForLog(ready('grp-1'), 120_000)]);
    expect((await listWorkers(t.redis, { prefix: t.prefix })).map((w) => w.workerId).sort()).toEqual(['grp-0', 'grp-1']);

    // A worker process that dies is started again by the group; the other keeps serving.
    const second = group.logs.find((l) => l.msg === 'worker process 2 of 2 started');
    process.kill(Number(second?.pid), 'SIGKILL');
    await group.waitForLog((l) => l.msg === 'worker process 2 of 2 exited unexpectedly' && l.signal === 'SIGKILL', 30_000);
    await group.waitForLog(ready('grp-1', 2), 120_000);

    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { runId: 'grp-run' });
    await expect.poll(async () => (await h.runs.requireRun(runId)).done, { timeout: 60_000, interval: 200 }).toBe(IMAGES);
    // The supervisor's port serves both processes' metrics, summed.
    const url = String(group.logs.find((l) => l.msg === 'metrics server listening')?.url);
    const processed = async (): Promise<number> => {
      const text = await (await fetch(url)).text();
      return [...text.matchAll(/^gradcam_audit_images_processed_total\{[^}]*\} (\d+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);
    };
    await expect.poll(processed, { timeout: 20_000, interval: 200 }).toBe(IMAGES);

    group.kill('SIGTERM');
    expect((await group.exited).code).toBe(0);
    expect(group.logs.filter((l) => l.msg === 'worker stopped').map((l) => l.workerId).sort()).toEqual(['grp-0', 'grp-1']);
    expect(await listWorkers(t.redis, { prefix: t.prefix })).toEqual([]);
  });
});
