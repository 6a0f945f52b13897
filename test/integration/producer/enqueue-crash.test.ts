/**
 * Fault: the producer is SIGKILLed in the middle of its listing, while a worker drains the run.
 * Running the same `enqueue` again must continue from the run's durable listing cursor (not list
 * the prefix from the start), with the listing fanned out over the prefix's folders and the run must complete with every key in manifest.jsonl exactly
 * once. A real `gradcam-audit enqueue` process (small pages and a small --max-backlog, so the kill
 * lands while the listing is under way), a real pipeline worker, real Redis and S3.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareKeys } from '../../../src/shared/queue/result-parts.js';
import { Cluster } from '../../helpers/cluster.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { enqueueCli, expectExactlyOnce, namespaceEnv, waitForCompletedRun } from '../pipeline/faults-support.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from '../pipeline/helpers.js';

const IMAGES = 80;
const FLAGS = ['--page-size', '6', '--max-backlog', '18', '--list-concurrency', '4'];
/** The kill lands once this many images are registered: over a third of the way through the listing. */
const KILL_AT = 30;

describe('fault: the producer is killed mid-listing', { timeout: 90_000 }, () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  const cluster = new Cluster();
  // In four folders: the listing fans out over them (--list-concurrency), and the kill lands while
  // lanes are reading ahead of what was registered.
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/d${i % 4}/img-${String(i).padStart(3, '0')}.png`).sort();

  beforeAll(async () => {
    [t, b] = await Promise.all([testRedis(), testBucket()]);
    h = pipelineHarness(t, b);
    const bodies = await Promise.all(Array.from({ length: 8 }, (_, i) => sampleImage(i + 1)));
    for (let i = 0; i < keys.length; i += 24) {
      await Promise.all(keys.slice(i, i + 24).map((key, j) => b.store.put(b.bucket, key, bodies[(i + j) % 8] as Buffer, { contentType: 'image/png' })));
    }
  });

  afterAll(async () => {
    await cluster.stopAll();
    await h?.close();
    await b?.cleanup();
    await t?.cleanup();
  });

  it('a restarted enqueue continues from the cursor; every key once', async () => {
    await h.startWorker(await tinyEngine(), { batchSize: 4, prefetch: 4, maxBatchDelayMs: 20 });
    const env = namespaceEnv(t);
    const source = `s3://${b.bucket}/in/`;
    const output = `s3://${b.bucket}/out/`;
    const args = ['enqueue', source, '--output', output, '--run-id', 'crash', '--json', ...FLAGS];

    const victim = cluster.start('enqueue', args, env);
    // Wait on the run's own state, then kill: the producer is between pages, waiting for room under
    // --max-backlog, or registering and queueing a page.
    await expect
      .poll(async () => (await h.runs.getRun('crash'))?.total ?? 0, { timeout: 60_000, interval: 10 })
      .toBeGreaterThanOrEqual(KILL_AT);
    victim.kill('SIGKILL');
    expect((await victim.exited).signal).toBe('SIGKILL');

    const atKill = await h.runs.requireRun('crash');
    expect(atKill).toMatchObject({ enqueueComplete: false, listed: false });
    expect(atKill.total).toBeLessThan(IMAGES);
    // The cursor is the last key of the last registered page: everything up to it is registered.
    expect(atKill.total).toBe(keys.filter((k) => compareKeys(k, atKill.cursor) <= 0).length);

    const again = await enqueueCli(cluster, source, env, ['--output', output, '--run-id', 'crash', ...FLAGS]);
    // It listed only what lay after the cursor, and added exactly the images the first one had not.
    expect(again.enqueue.counts.listed).toBe(keys.filter((k) => compareKeys(k, atKill.cursor) > 0).length);
    expect(again.enqueue.counts.added).toBe(IMAGES - atKill.total);
    expect(again.enqueue.created).toBe(false);

    const run = await waitForCompletedRun(h.runs, 'crash', 60_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });
    await expectExactlyOnce(b.store, output, keys);
  });
});
