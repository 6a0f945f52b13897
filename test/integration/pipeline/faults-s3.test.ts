/**
 * Fault: S3 answers 500 and 503 (with S3 XML error bodies) and drops connections on a share of the
 * requests. The worker and the producer reach S3 only through a fault-injecting proxy; the SDK's
 * retries (and BullMQ's, when the SDK gives up) must hide every fault: the run completes with
 * every image ok, exactly once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../helpers/cluster.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import { services, testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, namespaceEnv, startCliWorker, waitForCompletedRun, writeTinyModel } from './faults-support.js';
import { pipelineHarness, sampleImage, type PipelineHarness } from './helpers.js';

const IMAGES = 30;

// Each test waits on real processes and a whole run; leave room for a loaded CI machine.
describe('fault: S3 answers 500/503 and resets connections', { timeout: 90_000 }, () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let proxy: FaultProxy;
  let model: Awaited<ReturnType<typeof writeTinyModel>>;
  const cluster = new Cluster();
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/photo ${i}.png`);

  beforeAll(async () => {
    [t, b, model, proxy] = await Promise.all([testRedis(), testBucket(), writeTinyModel(), startFaultProxy(services().s3Endpoint, { seed: 42 })]);
    h = pipelineHarness(t, b);
    // Uploaded directly: the faults are for the pipeline, not for the fixture.
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 5), { contentType: 'image/png' })));
  });

  afterAll(async () => {
    await cluster.stopAll();
    await proxy?.close();
    await h?.close();
    await b?.cleanup();
    await t?.cleanup();
    await model?.remove();
  });

  it('retries through the faults; the run completes with all ok, each key once, every output present', async () => {
    // One fault kind per request kind, so the counts below show that each path was hit and retried:
    // downloads and listings (GET) see 503 SlowDown, uploads (PUT/POST) 500 InternalError, the
    // idempotency probes (HEAD) dropped connections.
    proxy.setRules([
      { kind: 'status503', probability: 0.25, match: (r) => r.method === 'GET' },
      { kind: 'status500', probability: 0.25, match: (r) => r.method === 'PUT' || r.method === 'POST' },
      { kind: 'reset', probability: 0.2, limit: 10, match: (r) => r.method === 'HEAD' },
    ]);
    const env = namespaceEnv(t, { LOG_LEVEL: 'info', AWS_ENDPOINT_URL_S3: proxy.url, AWS_MAX_ATTEMPTS: '4' });
    const worker = await startCliWorker(cluster, { id: 's3-faults', modelJson: model.modelJson, env, args: ['--batch-size', '4', '--max-batch-delay-ms', '100'] });

    const output = `s3://${b.bucket}/out/`;
    // An object already under the output prefix: the run records that outputs may exist there, so
    // its workers keep the HEAD probes whose connections the rules above drop. (Into an empty
    // prefix, a job's first attempt makes none.)
    await b.store.put(b.bucket, 'out/README.txt', 'outputs of the s3-faults run', { contentType: 'text/plain' });
    const enqueued = await enqueueCli(cluster, `s3://${b.bucket}/in/`, env, ['--output', output, '--run-id', 's3-run']);
    expect(enqueued.enqueue.counts.added).toBe(IMAGES);

    const run = await waitForCompletedRun(h.runs, 's3-run', 75_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });
    expect(proxy.stats.byKind.status503).toBeGreaterThan(0);
    expect(proxy.stats.byKind.status500).toBeGreaterThan(0);
    expect(proxy.stats.byKind.reset).toBeGreaterThan(0);
    // No image failed even once for good: BullMQ's books show no failed job. The run is complete
    // once its last result is counted; that job moves to completed just after, so poll for it.
    await expect.poll(() => h.queue.getJobCounts('failed', 'active', 'completed')).toMatchObject({ failed: 0, active: 0, completed: IMAGES });

    const lines = await expectExactlyOnce(b.store, output, keys);
    expect([...lines.values()].filter((l) => l.status === 'ok')).toHaveLength(IMAGES);
    expect(worker.child.exitCode).toBeNull();
  });
});
