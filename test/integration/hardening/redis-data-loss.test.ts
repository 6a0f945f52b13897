/**
 * Redis without persistence loses everything on a restart: run records, run state and the queue,
 * while workers still hold jobs whose results arrive afterwards. Those results must never create a
 * run record (a headless run that a later enqueue would reset while orphaned results stayed), and
 * re-running the same `enqueue` must bring the run to a complete, exactly-once manifest.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { expectExactlyOnce } from '../pipeline/faults-support.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from '../pipeline/helpers.js';

const IMAGES = 24;

describe('Redis data loss mid-run, then the documented re-enqueue', { timeout: 90_000 }, () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;
  const keys = Array.from({ length: IMAGES }, (_, i) => `in/img-${String(i).padStart(2, '0')}.png`);

  beforeAll(async () => {
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), tinyEngine()]);
    h = pipelineHarness(t, b);
    await Promise.all(keys.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 1), { contentType: 'image/png' })));
  });

  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
  });

  /** Every key of the test's namespace: run records, run state and the BullMQ queue. */
  async function loseEverything(): Promise<number> {
    let lost = 0;
    let cursor = '0';
    do {
      const [next, found] = await t.redis.scan(cursor, 'MATCH', `${t.prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (found.length > 0) lost += await t.redis.del(...found);
    } while (cursor !== '0');
    return lost;
  }

  it('results of jobs in flight during the loss create no run, and re-enqueueing converges to every key once', async () => {
    let hold: (() => void) | null = null;
    let armed = false; // after the warm-up batch the worker runs at start
    let holding = false;
    const gated: Engine = {
      info: engine.info,
      explain: async (request) => {
        // The first batch is held in the engine until the data is gone: its results arrive after the loss.
        if (armed && !holding) {
          holding = true;
          await new Promise<void>((r) => (hold = r));
        }
        return engine.explain(request);
      },
      predict: (images) => engine.predict(images),
      dispose: async () => undefined,
    };
    const worker = await h.startWorker(gated, { batchSize: 4, prefetch: 4, maxBatchDelayMs: 20 });
    armed = true;
    const output = `s3://${b.bucket}/out/`;
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { runId: 'lossy', output });
    const deadline = Date.now() + 30_000;
    while (hold === null) {
      if (Date.now() > deadline) throw new Error('the first batch never reached the engine');
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await loseEverything()).toBeGreaterThan(0);
    const release = hold as () => void;
    release();
    // Let the held batch finish and try to record its results against the lost run.
    await new Promise<void>((resolve) => worker.batcher.once('batchDone', () => resolve()));
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await t.redis.exists(h.runs.keys(runId).record)).toBe(0);
    expect(await h.runs.getRun(runId)).toBeNull();

    // The documented recovery: run the same enqueue again.
    expect(await h.enqueue(`s3://${b.bucket}/in/`, { runId: 'lossy', output })).toBe(runId);
    const run = await h.waitForRun(runId, 60_000);
    expect(run).toMatchObject({ total: IMAGES, done: IMAGES, failed: 0 });
    await expectExactlyOnce(b.store, output, keys);
  });

  it('never creates a run record for a result of an unknown run', async () => {
    await h.runs.recordResult('ghost-run', { key: 'in/img-00.png', status: 'ok' }).catch(() => undefined);
    const found = await t.redis.keys(`${t.prefix}:run:*ghost-run*`);
    expect(found).toEqual([]);
  });
});
