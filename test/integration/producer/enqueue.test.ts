import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseEnqueueRequest, type EnqueueFlags } from '../../../src/producer/enqueue-options.js';
import { enqueueRun, type EnqueueDeps } from '../../../src/producer/enqueue.js';
import type { AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { bullPrefix, jobIdFor } from '../../../src/shared/queue/contract.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import { AccessDeniedError, NotFoundError } from '../../../src/shared/errors.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { ObservedStore } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

// Keys a real bucket holds: images at several depths and cases, non-images, console folder
// markers, and names with spaces, unicode, '+', '%' and a dot-only segment.
const IMAGES = [
  'photos/cat.jpg',
  'photos/DOG.JPEG',
  'photos/a b/c+d%20e.png',
  'photos/ünïcödé/猫.webp',
  'photos/deep/x/y/z.GIF',
  'photos/scan.tif',
  'photos/scan2.TIFF',
  'photos/.../odd.jpg',
  'photos/skip-me/raw.jpg',
];
const OTHERS = ['photos/', 'photos/a b/', 'photos/readme.txt', 'photos/noext', 'photos/archive.jpg.zip', 'other/outside.jpg'];

describe('enqueueRun against a real Redis, S3 and BullMQ', () => {
  let t: TestRedis;
  let b: TestBucket;
  let runs: RunStore;
  let queue: Queue<AuditJobPayload>;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    queue = new Queue<AuditJobPayload>(t.queueName, { connection: t.redis.duplicate(), prefix: bullPrefix({ prefix: t.prefix }) });
    await Promise.all([...IMAGES, ...OTHERS].map((key) => b.store.put(b.bucket, key, key.endsWith('/') ? '' : `bytes of ${key}`, { contentType: 'application/octet-stream' })));
  });
  afterEach(async () => {
    await queue.close();
    await t.cleanup();
    await b.cleanup();
  });

  const deps = (): EnqueueDeps => ({
    store: b.store,
    queue,
    runs,
    redis: t.redis,
    finalize: (id) => finalizeRun(id, { runs, redis: t.redis, upload: s3StreamUploader(b.store.client) }),
    pageSize: 4, // several pages even for a small fixture
  });
  const request = (flags: EnqueueFlags = {}, prefix = 'photos/') => parseEnqueueRequest(`s3://${b.bucket}/${prefix}`, flags);
  const jobCount = async () => (await queue.getJobCounts('waiting', 'active', 'delayed', 'prioritized', 'completed', 'failed')) as Record<string, number>;

  it('enqueues exactly the images, with payloads the worker can use, and skips folders and non-images', async () => {
    const res = await enqueueRun(request({ topK: '3', method: 'gradcam++', exclude: 'skip-me/**' }), deps());
    const expected = IMAGES.filter((k) => !k.includes('skip-me'));
    expect(res.counts).toMatchObject({ listed: IMAGES.length + OTHERS.length - 1, matched: expected.length, added: expected.length, known: 0 });
    expect(res.counts.skipped).toEqual({ 'folder-marker': 2, output: 0, 'not-image': 3, excluded: 1 });
    expect(res.run).toMatchObject({ total: expected.length, enqueueComplete: true, state: 'queued', source: `s3://${b.bucket}/photos/` });
    expect(res.output).toBe(`s3://${b.bucket}/gradcam-audit/${res.runId}/`);

    const jobs = await queue.getJobs(['waiting']);
    expect(jobs.map((j) => j.data.source.key).sort()).toEqual([...expected].sort());
    const cat = jobs.find((j) => j.data.source.key === 'photos/a b/c+d%20e.png');
    expect(cat?.id).toBe(jobIdFor(res.runId, res.run?.epoch ?? '', 'photos/a b/c+d%20e.png'));
    expect(cat?.data).toMatchObject({ v: 1, runId: res.runId, source: { bucket: b.bucket, size: 'bytes of photos/a b/c+d%20e.png'.length }, output: { bucket: b.bucket, prefix: `gradcam-audit/${res.runId}/` }, options: { topK: 3, method: 'gradcam++' } });
    expect(cat?.data.source.etag).toMatch(/^[0-9a-f]{32}$/);
  });

  it('adds nothing twice when the same prefix is enqueued again, and picks up new images', async () => {
    const first = await enqueueRun(request(), deps());
    const again = await enqueueRun(request(), deps());
    expect(again.runId).toBe(first.runId); // the same command resumes the same run
    expect(again.created).toBe(false);
    expect(again.counts).toMatchObject({ added: 0, known: first.counts.matched });
    expect(again.run?.total).toBe(first.counts.matched);
    expect((await jobCount()).waiting).toBe(first.counts.matched);

    await b.store.put(b.bucket, 'photos/new.png', 'new', { contentType: 'image/png' });
    const third = await enqueueRun(request(), deps());
    expect(third.counts.added).toBe(1);
    expect(third.run?.total).toBe(first.counts.matched + 1);
    expect((await jobCount()).waiting).toBe(first.counts.matched + 1);
  });

  it('re-offers registered keys whose jobs were lost, without duplicating live ones', async () => {
    const first = await enqueueRun(request(), deps());
    const lost = await queue.getJob(jobIdFor(first.runId, first.run?.epoch ?? '', 'photos/cat.jpg'));
    await lost?.remove(); // as if the previous enqueue died between registering and addBulk
    const again = await enqueueRun(request(), deps());
    expect(again.counts.added).toBe(0);
    expect(again.run?.total).toBe(first.counts.matched);
    expect((await jobCount()).waiting).toBe(first.counts.matched);
    expect(await queue.getJob(jobIdFor(first.runId, first.run?.epoch ?? '', 'photos/cat.jpg'))).toBeDefined();
  });

  /** A real BullMQ worker takes one job and runs `processor` on it (throwing fails the job). */
  const runOneJob = async (processor: (job: Job<AuditJobPayload>) => Promise<void>): Promise<void> => {
    const connection = new Redis(t.url, { maxRetriesPerRequest: null });
    const worker = new Worker<AuditJobPayload>(queue.name, processor, { connection, prefix: bullPrefix({ prefix: t.prefix }) });
    await new Promise((r) => {
      worker.once('completed', r);
      worker.once('failed', r);
    });
    await worker.close();
    connection.disconnect();
  };
  const ONE = 'photos/deep/x/y/z.GIF';

  it('gives a run deleted and enqueued again new jobs, though BullMQ keeps the old run\'s job records', async () => {
    const req = request({ runId: 'redo' }, 'photos/deep/');
    const first = await enqueueRun(req, deps());
    // The image fails for good and is recorded, as the pipeline does; its failed job record is kept.
    await runOneJob(async (job) => {
      await runs.recordResult('redo', { key: job.data.source.key, status: 'failed', error: 'CORRUPT_IMAGE: bad' });
      throw new UnrecoverableError('CORRUPT_IMAGE: bad');
    });
    expect(await jobCount()).toMatchObject({ waiting: 0, failed: 1 });
    // docs/operations.md, "Retention": delete the run's Redis state, then run the same enqueue.
    await runs.deleteRun('redo');
    const second = await enqueueRun(req, deps());
    expect(second).toMatchObject({ created: true, counts: { added: 1 }, run: { state: 'queued', total: 1 } });
    expect(second.run?.epoch).not.toBe(first.run?.epoch);
    expect(await jobCount()).toMatchObject({ waiting: 1, failed: 1 });
    const [job] = await queue.getJobs(['waiting']);
    expect(job?.id).toBe(jobIdFor('redo', second.run?.epoch ?? '', ONE));
    // The new job runs and the run completes.
    await runOneJob(async (j) => void (await runs.recordResult('redo', { key: j.data.source.key, status: 'failed', error: 'CORRUPT_IMAGE: bad' })));
    expect(await runs.requireRun('redo')).toMatchObject({ done: 0, failed: 1, total: 1 });
    // Redis loses the run record alone (its other keys and the job records survive): the same.
    await t.redis.del(runs.keys('redo').record);
    const third = await enqueueRun(req, deps());
    expect(third).toMatchObject({ created: true, counts: { added: 1 }, run: { state: 'queued', total: 1 } });
    expect(await jobCount()).toMatchObject({ waiting: 1, failed: 1, completed: 1 });
  });

  it('re-offers a pending image whose job finished without a result, failed or completed', async () => {
    const req = request({ runId: 'stuck' }, 'photos/deep/');
    const first = await enqueueRun(req, deps());
    const id = jobIdFor('stuck', first.run?.epoch ?? '', ONE);
    // The job fails without the image taking a result (e.g. rejected while its run record was missing).
    await runOneJob(async () => {
      throw new UnrecoverableError('UNKNOWN_RUN');
    });
    expect(await runs.backlog('stuck')).toBe(1);
    const again = await enqueueRun(req, deps());
    expect(again.counts).toMatchObject({ added: 0, known: 1 });
    expect(await jobCount()).toMatchObject({ waiting: 1, failed: 0 });
    expect(await queue.getJobState(id)).toBe('waiting');
    // The same for a job that completed without a result; a waiting job is left as it is.
    await runOneJob(async () => undefined);
    expect(await jobCount()).toMatchObject({ waiting: 0, completed: 1 });
    await enqueueRun(req, deps());
    expect(await jobCount()).toMatchObject({ waiting: 1, completed: 0 });
    const waiting = await queue.getJob(id);
    await enqueueRun(req, deps());
    expect((await queue.getJob(id))?.timestamp).toBe(waiting?.timestamp);
    expect(await jobCount()).toMatchObject({ waiting: 1 });
  });

  it('never enqueues its own outputs when they live inside the source prefix', async () => {
    const req = request({ runId: 'self', output: `s3://${b.bucket}/photos/out` });
    await b.store.put(b.bucket, 'photos/out/overlays/photos/cat.jpg.jpg', 'overlay', { contentType: 'image/jpeg' });
    await b.store.put(b.bucket, 'gradcam-audit/older-run/overlays/x.jpg', 'overlay', { contentType: 'image/jpeg' });
    const res = await enqueueRun(req, deps());
    expect(res.counts.skipped.output).toBe(1);
    expect(res.output).toBe(`s3://${b.bucket}/photos/out/`);
    // Default outputs in a whole-bucket audit: every earlier run's output root is skipped too.
    const whole = await enqueueRun(request({}, ''), deps());
    expect(whole.counts.skipped.output).toBe(1);
    // + other/outside.jpg + photos/out/... of run "self". (s3rver lists the '...' key twice in a
    // whole-bucket listing; the run's key registry counts it once.)
    expect(whole.run?.total).toBe(IMAGES.length + 2);
    expect((await jobCount()).waiting).toBe(IMAGES.length + 2 + res.counts.matched);
    // --output equal to the source: last run's heatmaps sit right inside it.
    await b.store.put(b.bucket, 'photos/heatmaps/photos/cat.jpg.png', 'heatmap', { contentType: 'image/png' });
    const same = await enqueueRun(request({ runId: 'same', output: `s3://${b.bucket}/photos/` }), deps());
    expect(same.counts.skipped.output).toBe(1);
    expect(same.counts.matched).toBe(IMAGES.length + 1); // + photos/out/overlays/... of run "self"
    // Pointing the source inside an output folder on purpose audits it.
    const inside = await enqueueRun(request({ runId: 'inside', output: `s3://${b.bucket}/photos/` }, 'photos/heatmaps/'), deps());
    expect(inside.counts).toMatchObject({ matched: 1, skipped: { output: 0 } });
  });

  it('dry-run counts and shows examples without creating a run or a job', async () => {
    const res = await enqueueRun(request({ dryRun: true, include: '*.jpg,*.png' }), { store: b.store });
    expect(res.run).toBeNull();
    expect(res.counts.matched).toBe(4);
    expect(res.counts.added).toBe(0);
    expect(res.examples.length).toBe(4);
    expect(await runs.listRunIds()).toEqual([]);
    expect(await t.redis.keys(`${t.prefix}:run*`)).toEqual([]); // (BullMQ's own queue meta key aside)
  });

  it('completes a run with zero images at once, writing an empty manifest', async () => {
    const res = await enqueueRun(request({}, 'nothing-here/'), deps());
    expect(res.counts.matched).toBe(0);
    expect(res.finalized).toBe('written');
    expect(res.run).toMatchObject({ state: 'completed', total: 0 });
    const manifest = await b.store.get(b.bucket, `gradcam-audit/${res.runId}/manifest.jsonl`);
    expect(manifest.body.length).toBe(0);
    expect(await b.store.exists(b.bucket, `gradcam-audit/${res.runId}/summary.json`)).toBe(true);
  });

  it('records whether the output prefix held objects at each enqueue, and once they may exist keeps it so', async () => {
    const observed = new ObservedStore(b.store);
    const at = (res: { run: { outputsAtEnqueue?: string } | null }) => res.run?.outputsAtEnqueue;
    const out = { output: `s3://${b.bucket}/results/` };
    // A first audit: nothing under the output prefix. One listing of it per enqueue, nothing more.
    const first = await enqueueRun(request({ ...out, runId: 'flag' }), { ...deps(), store: observed });
    expect(at(first)).toBe('empty');
    expect(observed.counts.hasObjects).toBe(1);
    expect(await runs.requireRun('flag')).toMatchObject({ outputsAtEnqueue: 'empty' });
    // Still nothing there: a re-enqueue keeps 'empty'.
    expect(at(await enqueueRun(request({ ...out, runId: 'flag' }), deps()))).toBe('empty');
    // Outputs appeared (written by this run's workers): a re-enqueue turns the flag.
    await b.store.put(b.bucket, 'results/predictions/photos/cat.jpg.json', '{}', { contentType: 'application/json' });
    expect(at(await enqueueRun(request({ ...out, runId: 'flag' }), deps()))).toBe('may-exist');
    // Gone again (deleted by hand): the run keeps 'may-exist' for as long as it lives.
    await b.store.delete(b.bucket, 'results/predictions/photos/cat.jpg.json');
    expect(at(await enqueueRun(request({ ...out, runId: 'flag' }), deps()))).toBe('may-exist');
    expect(await runs.requireRun('flag')).toMatchObject({ outputsAtEnqueue: 'may-exist' });
    // A new run into a prefix holding any object at all starts as 'may-exist'.
    await b.store.put(b.bucket, 'results/manifest.jsonl', '', { contentType: 'application/x-ndjson' });
    expect(at(await enqueueRun(request({ ...out, runId: 'second' }), deps()))).toBe('may-exist');
  });

  it('enqueues when the output prefix cannot be listed, recording that outputs may exist, with one warning naming the prefix', async () => {
    const lines: Array<{ level: number; msg: string; output?: string; err?: string }> = [];
    const logger = pino({ level: 'info' }, new Writable({ write: (c: Buffer, _e, cb) => (lines.push(JSON.parse(c.toString()) as (typeof lines)[number]), cb()) }));
    // A policy that grants PUT but not LIST on the output bucket.
    const denied = Object.create(b.store) as ObjectStore;
    denied.hasObjects = async () => {
      throw new AccessDeniedError(`access denied to s3://${b.bucket}/denied/ (AccessDenied); check the credentials and bucket policy`);
    };
    const res = await enqueueRun(request({ output: `s3://${b.bucket}/denied/`, runId: 'denied' }), { ...deps(), store: denied, logger });
    expect(res.counts.added).toBe(IMAGES.length);
    expect(res.run).toMatchObject({ outputsAtEnqueue: 'may-exist', enqueueComplete: true });
    const warnings = lines.filter((l) => l.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ output: `s3://${b.bucket}/denied/`, err: expect.stringMatching(/ACCESS_DENIED/), msg: expect.stringMatching(/could not list the output prefix/) });
  });

  it('fails clearly on a missing bucket and on a run id reused with other arguments', async () => {
    const missing = parseEnqueueRequest('s3://no-such-bucket-gca/x/', {});
    await expect(enqueueRun(missing, deps())).rejects.toThrow(NotFoundError);
    await expect(enqueueRun(missing, deps())).rejects.toThrow(/bucket "no-such-bucket-gca" does not exist/);
    await enqueueRun(request({ runId: 'fixed' }), deps());
    await expect(enqueueRun(request({ runId: 'fixed', method: 'hirescam' }), deps())).rejects.toThrow(/--run-id: run "fixed" already exists with different explain options/);
    expect(await runs.requireRun('fixed')).toMatchObject({ enqueueComplete: true, state: 'queued' }); // left untouched
  });
});
