/**
 * Fault: the worker that completes a run is SIGKILLed while it writes the manifest, holding the
 * finalizer lock. The lock lives one job lock duration (here 4 s) and the sweep of any other
 * worker runs at least that often, so another worker finishes the run within seconds. (With the
 * lock's former 10-minute lifetime the run stayed in "finalizing" for 10 minutes, as the chaos run
 * showed.) Real `gradcam-audit worker` and `enqueue` processes; the victim reaches S3 through a
 * proxy that never answers its manifest upload, so it surely dies mid-finalization.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../helpers/cluster.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import { services, testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, namespaceEnv, startCliWorker, waitForCompletedRun, writeTinyModel } from './faults-support.js';
import { pipelineHarness, sampleImage, type PipelineHarness } from './helpers.js';

const IMAGES = 4;
const LOCK_MS = 4_000;
const WORKER_ARGS = ['--lock-duration-ms', String(LOCK_MS), '--stalled-interval-ms', '1000', '--batch-size', '4', '--max-batch-delay-ms', '50'];

describe('fault: the finalizing worker is killed', { timeout: 120_000 }, () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let proxy: FaultProxy;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;
  const cluster = new Cluster();
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/img-${i}.png`);

  beforeAll(async () => {
    [t, b, model] = await Promise.all([testRedis(), testBucket(), writeTinyModel()]);
    h = pipelineHarness(t, b);
    proxy = await startFaultProxy(services().s3Endpoint, {
      rules: [{ kind: 'hang', match: (r) => (r.method === 'PUT' || r.method === 'POST') && r.path.includes('/out/manifest.jsonl') }],
    });
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 1), { contentType: 'image/png' })));
  });

  afterAll(async () => {
    await cluster.stopAll();
    await proxy?.close();
    await h?.close();
    await b?.cleanup();
    await t?.cleanup();
    await model?.remove();
  });

  it('another worker finishes the run within a few lock durations; every key once', async () => {
    const env = namespaceEnv(t, { LOG_LEVEL: 'info' });
    const victim = await startCliWorker(cluster, { id: 'victim', modelJson: model.modelJson, env: { ...env, AWS_ENDPOINT_URL_S3: proxy.url }, args: WORKER_ARGS });
    const output = `s3://${b.bucket}/out/`;
    await enqueueCli(cluster, `s3://${b.bucket}/in/`, env, ['--output', output, '--run-id', 'fin-kill']);

    // The victim holds the finalizer lock and its manifest upload hangs at the proxy.
    const lockKey = h.runs.keys('fin-kill').finalizer;
    await expect.poll(() => proxy.stats.byKind.hang ?? 0, { timeout: 60_000 }).toBeGreaterThan(0);
    expect(await t.redis.get(lockKey)).toContain(`:${victim.pid}:`);
    const ttl = await t.redis.pttl(lockKey);
    expect(ttl, 'the finalizer lock lives one job lock duration').toBeGreaterThan(0);
    expect(ttl).toBeLessThanOrEqual(LOCK_MS);
    victim.kill('SIGKILL');
    await victim.exited;
    expect((await h.runs.requireRun('fin-kill')).state).toBe('finalizing');

    const killedAt = Date.now();
    await startCliWorker(cluster, { id: 'survivor', modelJson: model.modelJson, env, args: WORKER_ARGS });
    const run = await waitForCompletedRun(h.runs, 'fin-kill', 60_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });
    process.stderr.write(`[finalizer-kill] run completed ${((Date.now() - killedAt) / 1000).toFixed(1)} s after the kill (survivor start-up included)\n`);
    await expectExactlyOnce(b.store, output, keys);
  });
});
