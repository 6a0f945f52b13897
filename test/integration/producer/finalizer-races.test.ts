/**
 * Results that change while a run is being finalized: a retried failure that succeeds (a dashboard
 * "retry failures", a duplicate delivery) and new images a re-enqueue registers. Each test places
 * the concurrent writer, a second RunStore on its own Redis connection, at one exact moment of the
 * real finalizer working against the real Redis and S3 server, and checks that the manifest, the
 * summary and the run record agree in the end and that no line is lost.
 */
import type { Readable } from 'node:stream';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseEnqueueRequest } from '../../../src/producer/enqueue-options.js';
import { enqueueRun } from '../../../src/producer/enqueue.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { RunManifestLine, RunSummary } from '../../../src/shared/manifest.js';
import { bullPrefix, type AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { listPartKeys } from '../../../src/shared/queue/result-parts.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader, sweepUnfinalized, type FinalizerDeps, type StreamUploader } from '../../../src/shared/run-finalizer.js';
import { ObservedStore } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const ok = (key: string): RunManifestLine => ({ key, status: 'ok', top1: { index: 1, label: 'cat', probability: 0.5 }, degenerate: false });
const failed = (key: string): RunManifestLine => ({ key, status: 'failed', error: 'TRANSIENT: S3 503' });

/** The real S3 store; `afterPut` runs once a part is stored, before its writer counts it. */
class PausingStore extends ObservedStore {
  afterPut: ((key: string) => Promise<void>) | null = null;

  override async put(...args: Parameters<ObservedStore['put']>): ReturnType<ObservedStore['put']> {
    const stored = await super.put(...args);
    const step = this.afterPut;
    this.afterPut = null;
    await step?.(args[1]);
    return stored;
  }
}

/** When, during a finalization, the concurrent writer acts. */
type Moment = 'merging' | 'deleting-parts' | 'analysing';

describe('finalizeRun while results change under it (real Redis and S3)', () => {
  let t: TestRedis;
  let b: TestBucket;
  let store: ObservedStore;
  let runs: RunStore;
  let otherRedis: Redis;
  let otherStore: PausingStore;
  /** The concurrent writer: another process's RunStore. */
  let other: RunStore;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    store = new ObservedStore(b.store);
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store, batching: { maxDelayMs: 1 } });
    otherRedis = new Redis(t.url);
    otherStore = new PausingStore(b.store);
    other = new RunStore(otherRedis, { prefix: t.prefix }, { store: otherStore, batching: { maxDelayMs: 1 } });
  });
  afterEach(async () => {
    otherRedis.disconnect();
    await t.cleanup();
    await b.cleanup();
  });

  const deps = (extra: Partial<FinalizerDeps> = {}): FinalizerDeps => ({ runs, redis: t.redis, upload: s3StreamUploader(b.store.client), ...extra });

  /** Runs `action` once, when the manifest upload starts: after the parts were listed, before they are read. */
  const whenMerging = (action: () => Promise<unknown>): StreamUploader => {
    let fired = false;
    return async (bucket, key, body: Readable, contentType) => {
      if (key.endsWith('manifest.jsonl') && !fired) {
        fired = true;
        await action();
      }
      await s3StreamUploader(b.store.client)(bucket, key, body, contentType);
    };
  };

  /** A complete run of a.jpg, b.jpg (ok) and c.jpg (failed). */
  async function runWithFailure(id: string): Promise<void> {
    await runs.createRun({ id, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    await runs.addJobs(id, ['in/a.jpg', 'in/b.jpg', 'in/c.jpg'].map((key) => ({ key })));
    await runs.finishEnqueue(id);
    await Promise.all([runs.recordResult(id, ok('in/a.jpg')), runs.recordResult(id, ok('in/b.jpg')), runs.recordResult(id, failed('in/c.jpg'))]);
  }

  async function manifest(id: string): Promise<RunManifestLine[]> {
    const body = (await b.store.get(b.bucket, `out/${id}/manifest.jsonl`)).body.toString('utf8');
    return body.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as RunManifestLine);
  }
  const summary = async (id: string) => JSON.parse((await b.store.get(b.bucket, `out/${id}/summary.json`)).body.toString('utf8')) as RunSummary;

  for (const moment of ['merging', 'deleting-parts', 'analysing'] as Moment[]) {
    it(`keeps a retried failure that succeeds while the finalizer is ${moment}: the next pass merges it`, async () => {
      const id = `up-${moment}`;
      await runWithFailure(id);
      const { generation } = await runs.requireRun(id);
      const retry = async () => expect((await other.recordResult(id, ok('in/c.jpg'))).counted).toBe(true);
      let extra: Partial<FinalizerDeps> = {};
      if (moment === 'merging') extra = { upload: whenMerging(retry) };
      if (moment === 'analysing') {
        // After the manifest was sealed and its parts deleted, before the run is marked completed.
        let fired = false;
        extra = {
          analyse: async () => {
            if (!fired) {
              fired = true;
              await retry();
            }
            return { status: 'written', files: [], flags: 0, seconds: 0 };
          },
        };
      }
      if (moment === 'deleting-parts') {
        // The listing of every epoch's parts is the deletion's, after the manifest was sealed.
        store.beforeList = async (_bucket, prefix) => {
          if (prefix !== `out/${id}/_parts/`) return;
          store.beforeList = null;
          await retry();
        };
      }

      const outcome = await finalizeRun(id, deps(extra));

      expect(outcome.status).toBe('written');
      expect((await manifest(id)).map((l) => [l.key, l.status])).toEqual([
        ['in/a.jpg', 'ok'],
        ['in/b.jpg', 'ok'],
        ['in/c.jpg', 'ok'],
      ]);
      expect((await summary(id)).counts).toEqual({ total: 3, ok: 3, failed: 0 });
      const run = await runs.requireRun(id);
      expect(run).toMatchObject({ state: 'completed', done: 3, failed: 0, manifestWritten: true, generation: generation + 1 });
      expect(await t.redis.hlen(runs.keys(id).failed)).toBe(0);
      // Every part was merged by the last pass, and only then deleted.
      expect(await listPartKeys(b.store, b.bucket, `out/${id}/_parts/`)).toEqual([]);
    });
  }

  it('stores a retried result again when a whole finalization ran between its part and its count', async () => {
    await runWithFailure('between');
    // The retry's part is stored before the finalizer lists the parts, and counted only after the
    // finalizer sealed a manifest (with the failure: the run had not counted the retry) and
    // deleted the parts it merged, that one included.
    let first: Awaited<ReturnType<typeof finalizeRun>> | undefined;
    otherStore.afterPut = async () => {
      first = await finalizeRun('between', deps());
    };
    const retried = await other.recordResult('between', ok('in/c.jpg'));
    expect(first?.status).toBe('written');
    expect(retried).toMatchObject({ counted: true, complete: true, done: 3, failed: 0 });
    // The count reopened the completed run; its result completes it again (as a worker does).
    expect((await runs.requireRun('between')).state).toBe('running');
    expect((await finalizeRun('between', deps())).status).toBe('written');
    expect((await manifest('between')).find((l) => l.key === 'in/c.jpg')?.status).toBe('ok');
    expect((await summary('between')).counts).toEqual({ total: 3, ok: 3, failed: 0 });
    expect(await listPartKeys(b.store, b.bucket, 'out/between/_parts/')).toEqual([]);
  });

  it('gives the lock back when results keep changing, and the sweep finalizes the run', async () => {
    await runWithFailure('unsettled');
    const outcome = await finalizeRun('unsettled', deps({ maxPasses: 1, upload: whenMerging(() => other.recordResult('unsettled', ok('in/c.jpg'))) }));
    expect(outcome).toEqual({ status: 'unsettled', passes: 1 });
    expect(await t.redis.exists(runs.keys('unsettled').finalizer)).toBe(0);
    expect((await runs.requireRun('unsettled')).state).toBe('finalizing');
    // Nothing was deleted: the part with the retried result is still there for the sweep.
    expect(await sweepUnfinalized(deps())).toEqual([{ runId: 'unsettled', outcome: 'written' }]);
    expect((await manifest('unsettled')).find((l) => l.key === 'in/c.jpg')?.status).toBe('ok');
    expect((await summary('unsettled')).counts).toEqual({ total: 3, ok: 3, failed: 0 });
  });

  it('reopens a run being finalized when a re-enqueue registers new images; their last result finalizes it again', async () => {
    const queue = new Queue<AuditJobPayload>(t.queueName, { connection: t.redis.duplicate(), prefix: bullPrefix({ prefix: t.prefix }) });
    try {
      for (const k of ['in/a.jpg', 'in/b.jpg']) await b.store.put(b.bucket, k, 'x', { contentType: 'image/jpeg' });
      const request = parseEnqueueRequest(`s3://${b.bucket}/in/`, { runId: 'grow', output: `s3://${b.bucket}/out/grow/` }, {});
      const enqueueDeps = { store: b.store, queue, runs, redis: t.redis, finalize: (runId: string) => finalizeRun(runId, deps()) };
      await enqueueRun(request, enqueueDeps);
      await Promise.all([runs.recordResult('grow', ok('in/a.jpg')), runs.recordResult('grow', ok('in/b.jpg'))]);

      let added = -1;
      const reEnqueue = async () => {
        await b.store.put(b.bucket, 'in/c.jpg', 'x', { contentType: 'image/jpeg' });
        added = (await enqueueRun(request, enqueueDeps)).counts.added;
      };
      const outcome = await finalizeRun('grow', deps({ upload: whenMerging(reEnqueue) }));

      expect(added).toBe(1);
      expect(outcome).toEqual({ status: 'superseded' });
      const reopened = await runs.requireRun('grow');
      expect(reopened).toMatchObject({ state: 'running', total: 3, done: 2 });
      expect(reopened.finishedAt).toBeUndefined();
      expect(await runs.backlog('grow')).toBe(1);

      const last = await other.recordResult('grow', ok('in/c.jpg'));
      expect(last).toMatchObject({ counted: true, complete: true });
      expect((await finalizeRun('grow', deps())).status).toBe('written');
      expect((await manifest('grow')).map((l) => l.key)).toEqual(['in/a.jpg', 'in/b.jpg', 'in/c.jpg']);
      expect(await runs.requireRun('grow')).toMatchObject({ state: 'completed', total: 3, done: 3 });
    } finally {
      await queue.close();
    }
  });

  it('claims only a complete run: images registered after the sweep found the run leave it unclaimed', async () => {
    await runWithFailure('late');
    expect((await runs.findUnfinalized()).map((r) => r.id)).toEqual(['late']);
    await other.addJobs('late', [{ key: 'in/d.jpg' }]); // a re-enqueue racing the sweep
    expect(await runs.claimFinalizer('late', 'sweep', 60_000)).toBe('incomplete');
    expect(await t.redis.exists(runs.keys('late').finalizer)).toBe(0);
    expect((await runs.requireRun('late')).state).toBe('running');
  });
});
