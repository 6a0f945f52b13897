import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readStatus, watchStatus } from '../../../src/producer/status.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { NotFoundError } from '../../../src/shared/errors.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

describe('status against a real Redis', () => {
  let t: TestRedis;
  let b: TestBucket;
  let runs: RunStore;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
  });
  afterEach(async () => {
    await t.cleanup();
    await b.cleanup();
  });

  async function startRun(id: string, keys: string[]): Promise<void> {
    await runs.createRun({ id, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    await runs.addJobs(id, keys.map((key) => ({ key })));
    await runs.finishEnqueue(id);
  }

  it('reads counters and a recent rate from the run records, newest run first', async () => {
    await startRun('older', ['a.jpg']);
    const keys = Array.from({ length: 40 }, (_, i) => `k${i}.jpg`);
    await startRun('newer', keys);
    const now = Date.now();
    // 20 results 2 s ago: the rate is about 20 images over the seconds since the first result.
    for (const key of keys.slice(0, 20)) await runs.recordResult('newer', { key, status: key === 'k3.jpg' ? 'failed' : 'ok' }, new Date(now - 2000));
    const [newer, older] = await readStatus({ runs, now: () => now });
    expect(older?.run.id).toBe('older');
    expect(newer?.stats).toMatchObject({ runId: 'newer', state: 'running', total: 40, done: 19, failed: 1, remaining: 20 });
    expect(newer?.stats.imagesPerSecond).toBeCloseTo(10, 0);
    expect(newer?.stats.etaSeconds).toBe(2);
    await expect(readStatus({ runs }, 'nope')).rejects.toThrow(NotFoundError);
  });

  it('--watch RUN_ID follows the run until it completes', async () => {
    const keys = ['a.jpg', 'b.jpg', 'c.jpg'];
    await startRun('w1', keys);
    const frames: string[] = [];
    const abort = new AbortController();
    const last = await watchStatus({ runs }, {
      runId: 'w1',
      json: true,
      clear: false,
      signal: abort.signal,
      intervalMs: 20,
      write: (text) => {
        frames.push(text);
        // Workers make progress between refreshes; the last result finalizes the run.
        const key = keys[frames.length - 1];
        if (key !== undefined) {
          void runs.recordResult('w1', { key, status: 'ok' }).then(async (o) => {
            if (o.complete) await finalizeRun('w1', { runs, redis: t.redis, upload: s3StreamUploader(b.store.client) });
          });
        }
      },
    });
    expect(last[0]?.run.state).toBe('completed');
    const docs = frames.map((f) => JSON.parse(f) as { stats: { processed: number } });
    expect(docs[0]?.stats.processed).toBe(0);
    expect(docs.at(-1)?.stats).toMatchObject({ processed: 3, fraction: 1, etaSeconds: 0 });
    // Progress never goes backwards between refreshes.
    const processed = docs.map((d) => d.stats.processed);
    expect(processed).toEqual([...processed].sort((x, y) => x - y));
  });

  it('--watch without RUN_ID refreshes the table until aborted', async () => {
    await startRun('w2', ['a.jpg']);
    const abort = new AbortController();
    let frames = 0;
    await watchStatus({ runs }, {
      json: false,
      clear: true,
      signal: abort.signal,
      intervalMs: 10,
      write: (text) => {
        expect(text.startsWith('\x1b[2J\x1b[H')).toBe(true);
        expect(text).toMatch(/w2 +queued +1 +0 +0 +0\.0%/);
        if (++frames === 3) abort.abort();
      },
    });
    expect(frames).toBe(3);
  });
});
