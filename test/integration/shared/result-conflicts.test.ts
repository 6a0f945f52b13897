/**
 * An image can have an `ok` line and a `failed` line in the run's part files: its ok result reached
 * S3 but was never counted (the process lost its Redis or S3 answer between the part's PUT and the
 * counting script, or died there), and its job then failed for good; or it was counted ok and its
 * job failed afterwards (lock lost, stalled too often). Whichever way, the counters, the failures
 * list, manifest.jsonl and summary.json must tell the same story. Real Redis and S3.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import { TransientError } from '../../../src/shared/errors.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

/**
 * The real store, except that while `lose` is set a part file's PUT is stored and then answered
 * with an error: S3 has the object, the writer believes it failed (a timeout after the upload).
 */
function answerLosingStore(store: ObjectStore): { store: ObjectStore; lose: { on: boolean } } {
  const lose = { on: false };
  const wrapped = new Proxy(store, {
    get(target, prop, receiver) {
      if (prop !== 'put') return Reflect.get(target, prop, receiver) as unknown;
      return async (...args: Parameters<ObjectStore['put']>) => {
        const r = await target.put(...args);
        if (lose.on && args[1].includes('/_parts/')) throw new TransientError('the answer to the part PUT was lost (socket timeout)');
        return r;
      };
    },
  });
  return { store: wrapped, lose };
}

describe('an image with an ok line and a failed line', () => {
  let t: TestRedis;
  let b: TestBucket;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
  });
  afterEach(async () => {
    await t.cleanup();
    await b.cleanup();
  });

  const ok = (key: string): RunManifestLine => ({ key, status: 'ok', top1: { index: 3, label: 'tiger shark', probability: 0.9 }, degenerate: false });
  const failed = (key: string): RunManifestLine => ({ key, status: 'failed', error: 'TransientError: S3 throttled after the last attempt' });

  it('counters, failures list, manifest and summary agree', async () => {
    const { store, lose } = answerLosingStore(b.store);
    const runs = new RunStore(t.redis, { prefix: t.prefix }, { store, batching: { maxDelayMs: 1 } });
    const output = `s3://${b.bucket}/out/`;
    await runs.createRun({ id: 'conflict', source: `s3://${b.bucket}/in/`, output, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    await runs.addJobs('conflict', ['in/a.png', 'in/b.png', 'in/c.png'].map((key) => ({ key })));
    await runs.finishEnqueue('conflict');

    // a: its ok line is stored, the answer is lost, so it is never counted; the job's last attempt
    // then records a failure, which is counted.
    lose.on = true;
    await expect(runs.recordResult('conflict', ok('in/a.png'))).rejects.toThrow(TransientError);
    lose.on = false;
    expect(await runs.isEnqueued('conflict', 'in/a.png')).toBe(true);
    expect(await runs.recordResult('conflict', failed('in/a.png'))).toMatchObject({ counted: true });

    // b: counted ok, then its job fails anyway (its lock was lost after the result was recorded):
    // the failure is neither written nor counted.
    expect(await runs.recordResult('conflict', ok('in/b.png'))).toMatchObject({ counted: true });
    expect(await runs.recordResult('conflict', failed('in/b.png'))).toMatchObject({ counted: false });

    // c: an ordinary success completes the run.
    expect(await runs.recordResult('conflict', ok('in/c.png'))).toMatchObject({ counted: true, complete: true });

    const run = await runs.requireRun('conflict');
    expect(run).toMatchObject({ total: 3, done: 2, failed: 1 });
    const failures = [];
    for await (const page of runs.scanFailed('conflict')) failures.push(...page);
    expect(failures.map((l) => l.key)).toEqual(['in/a.png']);

    // fanIn 2: the four parts go through a compaction level first, which must choose alike.
    const out = await finalizeRun('conflict', { runs, redis: t.redis, upload: s3StreamUploader(b.store.client), fanIn: 2 });
    expect(out.status).toBe('written');
    const manifest = (await b.store.get(b.bucket, 'out/manifest.jsonl')).body
      .toString('utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as RunManifestLine);
    expect(manifest.map((l) => [l.key, l.status])).toEqual([
      ['in/a.png', 'failed'],
      ['in/b.png', 'ok'],
      ['in/c.png', 'ok'],
    ]);
    if (out.status !== 'written') return;
    expect(out.summary.counts).toEqual({ total: 3, ok: run.done, failed: run.failed });
    expect(await runs.getResult('conflict', 'in/a.png')).toMatchObject({ status: 'failed' });
  });
});
