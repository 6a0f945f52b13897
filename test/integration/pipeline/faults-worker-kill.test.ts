/**
 * Fault: a worker dies (SIGKILL, no drain) with a batch in the engine and more jobs in hand. The
 * other worker's stalled checker must take those jobs over once their locks expire, and the run
 * must still end with every key exactly once in manifest.jsonl and the three outputs of every ok
 * image. Real `gradcam-audit worker` and `enqueue` processes, real Redis and S3.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jobIdFor } from '../../../src/shared/queue/contract.js';
import { Cluster } from '../../helpers/cluster.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, namespaceEnv, startCliWorker, waitForCompletedRun, writeTinyModel } from './faults-support.js';
import { pipelineHarness, sampleImage, type PipelineHarness } from './helpers.js';

const IMAGES = 40;
// Short locks so recovery takes seconds, not the production minute. The tiny model's batches take
// milliseconds, so a live worker renews (every lock/4) long before its own locks could expire.
const LOCK_ARGS = ['--lock-duration-ms', '4000', '--stalled-interval-ms', '1000'];
const BATCH_ARGS = ['--batch-size', '4', '--prefetch', '8', '--max-batch-delay-ms', '100'];
// The victim gathers slowly: when its first batch starts, up to 16 more jobs sit in its hands
// waiting seconds for batch-mates, so it surely dies holding jobs even if the kill lands late.
const VICTIM_BATCH_ARGS = ['--batch-size', '8', '--prefetch', '16', '--max-batch-delay-ms', '3000'];

// Each test waits on real processes and a whole run; leave room for a loaded CI machine.
describe('fault: a worker is killed mid-batch', { timeout: 90_000 }, () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;
  const cluster = new Cluster();
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/img-${String(i).padStart(2, '0')}.png`);

  beforeAll(async () => {
    [t, b, model] = await Promise.all([testRedis(), testBucket(), writeTinyModel()]);
    h = pipelineHarness(t, b);
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 1), { contentType: 'image/png' })));
  });

  afterAll(async () => {
    await cluster.stopAll();
    await h?.close();
    await b?.cleanup();
    await t?.cleanup();
    await model?.remove();
  });

  it('recovers the dead worker\'s jobs on the other worker; every key once, every ok image complete', async () => {
    const env = namespaceEnv(t, { LOG_LEVEL: 'info' });
    const [victim, survivor] = await Promise.all([
      startCliWorker(cluster, { id: 'victim', modelJson: model.modelJson, env, args: [...VICTIM_BATCH_ARGS, ...LOCK_ARGS] }),
      startCliWorker(cluster, { id: 'survivor', modelJson: model.modelJson, env, args: [...BATCH_ARGS, ...LOCK_ARGS] }),
    ]);
    const output = `s3://${b.bucket}/out/`;
    const enqueued = await enqueueCli(cluster, `s3://${b.bucket}/in/`, env, ['--output', output, '--run-id', 'kill-run']);
    expect(enqueued.enqueue.counts.added).toBe(IMAGES);

    await victim.waitForLog((l) => l.msg === 'batch started', 60_000);
    victim.kill('SIGKILL');
    const { signal } = await victim.exited;
    expect(signal).toBe('SIGKILL');
    // It died holding jobs: none of its work was handed back gracefully.
    expect(victim.logs.some((l) => l.msg === 'worker stopped')).toBe(false);

    const run = await waitForCompletedRun(h.runs, 'kill-run', 60_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });

    // The survivor's stalled checker moved the victim's jobs back to the queue and then ran them.
    const stalled = survivor.logs.filter((l) => l.msg === 'job stalled (its worker stopped renewing the lock); it goes back to the queue');
    expect(stalled.length).toBeGreaterThan(0);
    // Nothing half done or failed is left behind; each job ran to completion once in BullMQ's books.
    // Polled: the run counts a job's result just before BullMQ moves that job to completed.
    await expect
      .poll(() => h.queue.getJobCounts('active', 'waiting', 'delayed', 'failed', 'completed'))
      .toMatchObject({ active: 0, waiting: 0, delayed: 0, failed: 0, completed: IMAGES });
    const recovered = await Promise.all(stalled.map(async (l) => h.queue.getJob(String(l.jobId))));
    for (const job of recovered) {
      expect(job?.stalledCounter).toBeGreaterThanOrEqual(1);
      expect(await job?.getState()).toBe('completed');
    }
    const jobIds = new Set(keys.map((k) => jobIdFor('kill-run', run.epoch, k)));
    expect(recovered.every((j) => j !== undefined && jobIds.has(String(j.id)))).toBe(true);

    const lines = await expectExactlyOnce(b.store, output, keys);
    expect([...lines.values()].every((l) => l.status === 'ok')).toBe(true);
    expect(survivor.child.exitCode).toBeNull();
  });
});
