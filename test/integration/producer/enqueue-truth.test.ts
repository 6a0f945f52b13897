/**
 * `enqueue --truth` against a real Redis, S3 server and BullMQ: each job carries its own image's
 * truth (so Redis holds no per-run truth map), a truth file in S3 works like a local one, a bad row
 * stops the enqueue before any job or run exists, and `--truth-from-path` labels by folder.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parseEnqueueRequest, type EnqueueFlags } from '../../../src/producer/enqueue-options.js';
import { enqueueRun, type EnqueueDeps } from '../../../src/producer/enqueue.js';
import { TruthFileError } from '../../../src/producer/truth/truth-parsers.js';
import { bullPrefix, type AuditJobPayload } from '../../../src/shared/queue/contract.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const KEYS = ['data/cat/1.jpg', 'data/cat/2.jpg', 'data/dog/3.jpg', 'data/dog/4.jpg'];

describe('enqueue with ground truth', () => {
  let t: TestRedis;
  let b: TestBucket;
  let runs: RunStore;
  let queue: Queue<AuditJobPayload>;
  let dir: string;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    queue = new Queue<AuditJobPayload>(t.queueName, { connection: t.redis.duplicate(), prefix: bullPrefix({ prefix: t.prefix }) });
    dir = await mkdtemp(path.join(tmpdir(), 'gca-truth-'));
    await Promise.all(KEYS.map((key) => b.store.put(b.bucket, key, `bytes of ${key}`, { contentType: 'image/jpeg' })));
  });
  afterEach(async () => {
    await queue.close();
    await t.cleanup();
    await b.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  const deps = (): EnqueueDeps => ({
    store: b.store,
    queue,
    runs,
    redis: t.redis,
    finalize: (id) => finalizeRun(id, { runs, redis: t.redis, upload: s3StreamUploader(b.store.client) }),
  });
  const request = (flags: EnqueueFlags) => parseEnqueueRequest(`s3://${b.bucket}/data/`, flags);
  const payloads = async () => new Map((await queue.getJobs(['waiting'])).map((j) => [j.data.source.key, j.data]));

  it('puts each image\'s label and boxes in its own job, from a local CSV or a JSONL in S3', async () => {
    const csv = path.join(dir, 'truth.csv');
    await writeFile(csv, 'key,label,x0,y0,x1,y1\ncat/1.jpg,cat,1,2,30,40\ncat/1.jpg,cat,5,5,9,9\ndata/dog/3.jpg,dog\n4.jpg,dog,0,0,8,8\nmissing.jpg,cat\n');
    const res = await enqueueRun(request({ truth: csv }), deps());
    expect(res.counts.truth).toEqual({ matched: 3, missing: 1, unused: 1 });
    const jobs = await payloads();
    expect(jobs.get('data/cat/1.jpg')?.truth).toEqual({ label: 'cat', boxes: [[1, 2, 30, 40], [5, 5, 9, 9]] });
    expect(jobs.get('data/dog/3.jpg')?.truth).toEqual({ label: 'dog' });
    expect(jobs.get('data/dog/4.jpg')?.truth).toEqual({ label: 'dog', boxes: [[0, 0, 8, 8]] });
    expect(jobs.get('data/cat/2.jpg')?.truth).toBeUndefined();
    // No per-run truth structure in Redis: only the run's own keys and BullMQ's.
    const keys = await t.redis.keys(`${t.prefix}*`);
    expect(keys.filter((k) => /truth/i.test(k))).toEqual([]);

    await b.store.put(b.bucket, 'labels/truth.jsonl', KEYS.map((k) => JSON.stringify({ key: k, label: k.split('/')[1] })).join('\n'), { contentType: 'application/x-ndjson' });
    const fromS3 = await enqueueRun(request({ truth: `s3://${b.bucket}/labels/truth.jsonl`, runId: 's3-truth' }), deps());
    expect(fromS3.counts.truth).toEqual({ matched: 4, missing: 0, unused: 0 });
  });

  it('stops at a bad row, naming file and line, before any run or job exists', async () => {
    const csv = path.join(dir, 'bad.csv');
    await writeFile(csv, 'cat/1.jpg,cat\ncat/2.jpg,cat,10,10,5,20\n');
    const err = await enqueueRun(request({ truth: csv }), deps()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TruthFileError);
    expect((err as Error).message).toBe(`--truth: ${csv}:2: box [10, 10, 5, 20] is empty: need x1 > x0 and y1 > y0 (corners, not x, y, width, height)`);
    expect(await runs.listRunIds()).toEqual([]);
    expect((await queue.getJobCounts('waiting')).waiting).toBe(0);
    await expect(enqueueRun(request({ truth: `s3://${b.bucket}/nope.csv` }), deps())).rejects.toThrow(/--truth: s3:\/\/.*\/nope\.csv does not exist/);
  });

  it('labels by folder with --truth-from-path, and a dry run reports coverage without queueing', async () => {
    const dry = await enqueueRun(request({ truthFromPath: '-2', dryRun: true }), { store: b.store });
    expect(dry.counts.truth).toEqual({ matched: 4, missing: 0, unused: null });
    await enqueueRun(request({ truthFromPath: '-2' }), deps());
    const jobs = await payloads();
    expect([...jobs.values()].map((p) => p.truth?.label).sort()).toEqual(['cat', 'cat', 'dog', 'dog']);
  });
});
