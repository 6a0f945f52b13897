import { PassThrough, Readable } from 'node:stream';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { RunManifestLine, RunSummary } from '../../../src/shared/manifest.js';
import { compareKeys, listPartKeys, partBody, partName } from '../../../src/shared/queue/result-parts.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader, sweepUnfinalized, type FinalizeOutcome, type FinalizerDeps, type StreamUploader } from '../../../src/shared/run-finalizer.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

describe('finalizeRun against a real Redis and S3', () => {
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

  const deps = (extra: Partial<FinalizerDeps> = {}): FinalizerDeps => ({ runs, redis: t.redis, upload: s3StreamUploader(b.store.client), ...extra });

  /** A run of `n` images with every result recorded: every 10th failed, every 7th ok one degenerate. */
  async function completeRun(id: string, n: number, pad = 0, together = 500): Promise<string[]> {
    await runs.createRun({ id, source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/${id}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    const keys = Array.from({ length: n }, (_, i) => `in/dir ${i % 3}/img+${i}%ü.jpg`);
    for (let i = 0; i < n; i += 1000) {
      await runs.addJobs(id, keys.slice(i, i + 1000).map((key) => ({ key })));
    }
    await runs.finishEnqueue(id);
    const lines = keys.map((key, i): RunManifestLine =>
      i % 10 === 0
        ? { key, status: 'failed', error: `INVALID_IMAGE: not an image ${'x'.repeat(pad)}` }
        : { key, status: 'ok', top1: { index: i % 4, label: `class-${i % 4}`, probability: 0.5 }, degenerate: i % 7 === 0, outputs: { overlay: `o/${key}`, heatmap: `h/${key}`, prediction: `p/${key}${'y'.repeat(pad)}` } },
    );
    for (let i = 0; i < n; i += together) await Promise.all(lines.slice(i, i + together).map((l) => runs.recordResult(id, l)));
    return keys;
  }

  async function readManifest(id: string): Promise<RunManifestLine[]> {
    const obj = await b.store.get(b.bucket, `out/${id}/manifest.jsonl`);
    return obj.body.toString('utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as RunManifestLine);
  }

  it('lets exactly one of several concurrent finalizers write a complete manifest and summary', async () => {
    const keys = await completeRun('fin1', 300);
    const clients = Array.from({ length: 4 }, () => new Redis(t.url));
    let uploads = 0;
    const counting: StreamUploader = async (...args) => {
      uploads++;
      await s3StreamUploader(b.store.client)(...args);
    };
    const outcomes = await Promise.all(
      clients.map((c, i) => finalizeRun('fin1', { runs: new RunStore(c, { prefix: t.prefix }, { store: b.store }), redis: c, upload: counting, owner: `w${i}` })),
    );
    clients.forEach((c) => c.disconnect());

    expect(outcomes.filter((o) => o.status === 'written')).toHaveLength(1);
    expect(outcomes.filter((o) => o.status === 'written' || o.status === 'claimed-elsewhere')).toHaveLength(4);
    expect(uploads).toBe(2); // one manifest + one summary, from the single winner

    const lines = await readManifest('fin1');
    expect(lines).toHaveLength(300);
    expect(new Set(lines.map((l) => l.key))).toEqual(new Set(keys));
    expect(lines.filter((l) => l.status === 'failed')).toHaveLength(30);
    expect(lines.find((l) => l.key === keys[5])?.top1?.label).toBe('class-1');

    const summary = JSON.parse((await b.store.get(b.bucket, 'out/fin1/summary.json')).body.toString('utf8')) as RunSummary;
    expect(summary.counts).toEqual({ total: 300, ok: 270, failed: 30 });
    expect(summary.classHistogram.reduce((s, c) => s + c.count, 0)).toBe(270);
    expect(summary.classHistogram.find((c) => c.index === 1)).toEqual({ index: 1, label: 'class-1', count: keys.filter((_, i) => i % 4 === 1 && i % 10 !== 0).length });
    expect(summary.degenerateMaps).toBe(keys.filter((_, i) => i % 7 === 0 && i % 10 !== 0).length);
    expect(summary.wallTimeSeconds).toBeGreaterThan(0);

    const run = await runs.requireRun('fin1');
    expect(run.state).toBe('completed');
    expect(await finalizeRun('fin1', deps())).toEqual({ status: 'already-completed' });
  });

  it("times the summary from its own timestamps: wall time from creation, throughput over the processing span", async () => {
    await completeRun('fin-t', 40);
    const created = Date.parse((await runs.requireRun('fin-t')).createdAt);
    // A worker took the first image 3 s after enqueue; the results were recorded later (they only
    // set startedAt when nobody marked it), and the run completes 8 s after the start.
    const run = await runs.requireRun('fin-t');
    await t.redis.hdel(runs.keys('fin-t').record, 'startedAt');
    await runs.markStarted('fin-t', new Date(created + 3_000));
    await runs.markStarted('fin-t', new Date(created + 5_000)); // only the first call counts
    const outcome = await finalizeRun('fin-t', deps({ now: () => new Date(created + 11_000) }));
    expect(outcome.status).toBe('written');
    const summary = JSON.parse((await b.store.get(b.bucket, 'out/fin-t/summary.json')).body.toString('utf8')) as RunSummary;
    expect(summary.createdAt).toBe(run.createdAt);
    expect(Date.parse(summary.startedAt ?? '')).toBe(created + 3_000);
    const seconds = (a: string, b: string) => (Date.parse(b) - Date.parse(a)) / 1000;
    expect(summary.wallTimeSeconds).toBe(seconds(summary.createdAt, summary.finishedAt));
    expect(summary.processingSeconds).toBe(seconds(summary.startedAt ?? '', summary.finishedAt));
    expect(summary).toMatchObject({ wallTimeSeconds: 11, processingSeconds: 8, throughputImagesPerSecond: 5 });
    // A deleted run is not recreated by a late start mark.
    await runs.markStarted('no-such-run');
    expect(await runs.getRun('no-such-run')).toBeNull();
  });

  it('does nothing for an incomplete run, and the sweeper finishes a run whose finalizer died', async () => {
    await runs.createRun({ id: 'fin2', source: `s3://${b.bucket}/in/`, output: `s3://${b.bucket}/out/fin2/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } });
    await runs.addJobs('fin2', ['a.jpg', 'b.jpg'].map((key) => ({ key })));
    await runs.finishEnqueue('fin2');
    await runs.recordResult('fin2', { key: 'a.jpg', status: 'ok', top1: { index: 3, probability: 0.9 } });
    expect(await finalizeRun('fin2', deps())).toMatchObject({ status: 'incomplete', done: 1, total: 2 });
    await runs.recordResult('fin2', { key: 'b.jpg', status: 'failed', error: 'DECODE: truncated' });

    // A finalizer that fails mid-upload releases its lock; the sweeper then completes the run.
    const broken: StreamUploader = async (_b, _k, body: Readable) => {
      body.destroy();
      throw new Error('S3 went away');
    };
    await expect(finalizeRun('fin2', deps({ upload: broken }))).rejects.toThrow('S3 went away');
    expect((await runs.requireRun('fin2')).state).toBe('finalizing');
    const swept = await sweepUnfinalized(deps());
    expect(swept).toEqual([{ runId: 'fin2', outcome: 'written' }]);
    expect((await readManifest('fin2')).map((l) => l.key).sort()).toEqual(['a.jpg', 'b.jpg']);
    expect(await sweepUnfinalized(deps())).toEqual([]);
  });

  it('the sweeper finds a run whose finalizer died behind more newer runs than one sweep reads', async () => {
    // 250 runs, oldest first; the one at rank 120 has every result (none: an empty run) and no
    // manifest. Each sweep reads the newest 100 and the next 100 of its walk over the whole index.
    const base = Date.UTC(2026, 0, 1);
    for (let i = 0; i < 250; i++) {
      const id = i === 120 ? 'stuck' : `r${i}`;
      await runs.createRun({ id, source: `s3://${b.bucket}/in/${id}/`, output: `s3://${b.bucket}/out/${id}/`, options: { ...DEFAULT_EXPLAIN_OPTIONS } }, new Date(base + i * 1000));
    }
    await runs.finishEnqueue('stuck');
    expect(await runs.requireRun('stuck')).toMatchObject({ state: 'queued', enqueueComplete: true, total: 0 });
    expect(await sweepUnfinalized(deps())).toEqual([]); // newest 100 and ranks 0-99
    expect(await sweepUnfinalized(deps())).toEqual([{ runId: 'stuck', outcome: 'written' }]); // ranks 100-199
    expect((await runs.requireRun('stuck')).state).toBe('completed');
    // The walk wraps around: the next passes find nothing more to do.
    for (let i = 0; i < 3; i++) expect(await sweepUnfinalized(deps())).toEqual([]);
  });

  it('survives a takeover: a finalizer whose lock expired mid-write and its successor both write complete manifests', async () => {
    const keys = await completeRun('fin4', 300);
    const lockKey = runs.keys('fin4').finalizer;
    /** Pauses the manifest upload after its first chunk (one HSCAN page), so two writers interleave. */
    const gated = (afterFirstChunk: () => Promise<void>): StreamUploader => {
      const real = s3StreamUploader(b.store.client);
      return async (bucket, key, body, contentType) => {
        if (!key.endsWith('manifest.jsonl')) return real(bucket, key, body, contentType);
        const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
        const first = await it.next();
        await afterFirstChunk();
        async function* rest(): AsyncGenerator<Buffer> {
          if (!first.done) yield first.value;
          for (let r = await it.next(); !r.done; r = await it.next()) yield r.value;
        }
        await real(bucket, key, Readable.from(rest()), contentType);
      };
    };
    let releaseA!: () => void;
    const gateA = new Promise<void>((r) => (releaseA = r));
    let markAStarted!: () => void;
    const aStarted = new Promise<void>((r) => (markAStarted = r));
    const a: Promise<FinalizeOutcome> = finalizeRun('fin4', deps({ owner: 'A', lockTtlMs: 300, upload: gated(async () => { markAStarted(); await gateA; }) }));
    await aStarted;
    // A is stuck mid-write (a GC pause, a slow network) long enough for its lock to expire; then B
    // takes over and both stream at the same time.
    while ((await t.redis.exists(lockKey)) === 1) await new Promise((r) => setTimeout(r, 25));
    const bOutcome = finalizeRun('fin4', deps({ owner: 'B', upload: gated(async () => releaseA()) }));
    const [ra, rb] = await Promise.all([a, bOutcome]);
    // A's manifest is complete too, but A lost its lock: it publishes nothing (no seal, no
    // deletion, no completion) and says so.
    expect(ra.status).toBe('superseded');
    expect(rb.status).toBe('written');
    expect(rb.status === 'written' && rb.summary.counts.total).toBe(300);
    const lines = await readManifest('fin4');
    expect(lines.map((l) => l.key).sort()).toEqual([...keys].sort());
    expect((await runs.requireRun('fin4')).state).toBe('completed');
  });

  it('merges many parts in levels into a manifest sorted by key, one line per key, and deletes the parts', async () => {
    const keys = await completeRun('fin5', 40, 0, 5); // 8 batches: 8 part files
    const run = await runs.requireRun('fin5');
    const src = runs.resultSources(run);
    // A worker killed after its PUT and before Redis counted the batch: its lines come again, one
    // of them a failure that a later success replaced.
    const stale = [keys[3] as string, keys[10] as string].map((key): RunManifestLine => ({ key, status: 'failed', error: 'TRANSIENT: killed' }));
    await b.store.put(b.bucket, `${src.partsPrefix}${partName(1, 'dead', 0)}`, partBody(stale).body, { contentType: 'application/x-ndjson' });
    expect((await listPartKeys(b.store, b.bucket, src.partsPrefix)).length).toBe(9);
    const out = await finalizeRun('fin5', deps({ fanIn: 3 })); // 9 parts -> 3 -> manifest
    expect(out.status).toBe('written');
    const lines = await readManifest('fin5');
    expect(lines.map((l) => l.key)).toEqual([...keys].sort(compareKeys));
    expect(lines.find((l) => l.key === keys[3])?.status).toBe('ok');
    // Two failures for one key: the greater serialisation, whichever part it came from.
    expect(lines.find((l) => l.key === keys[10])).toMatchObject({ status: 'failed', error: 'TRANSIENT: killed' });
    expect(await listPartKeys(b.store, b.bucket, `out/fin5/_parts/`)).toEqual([]);
    expect(out.status === 'written' && out.summary.counts).toEqual({ total: 40, ok: 36, failed: 4 });
  });

  it('streams a 10k-result manifest with flat memory', async () => {
    // ~1 KB per line: a 10 MB manifest, which a collect-then-upload finalizer would hold in full.
    runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store, batching: { maxLines: 2500 } });
    const keys = await completeRun('fin3', 10_000, 900, 2500);
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    gc();
    const baseline = process.memoryUsage().heapUsed;
    let peak = 0;
    let bytes = 0;
    // Sample retained heap (after a full GC) while the manifest flows into the real S3 upload.
    const sampling: StreamUploader = async (bucket, key, body, contentType) => {
      const tap = new PassThrough();
      let chunks = 0;
      tap.on('data', (c: Buffer) => {
        bytes += c.length;
        if (++chunks % 2 === 0) {
          gc();
          peak = Math.max(peak, process.memoryUsage().heapUsed - baseline);
        }
      });
      body.pipe(tap);
      await s3StreamUploader(b.store.client)(bucket, key, tap, contentType);
    };
    const out = await finalizeRun('fin3', deps({ upload: sampling }));
    expect(out.status).toBe('written');
    const manifestBytes = (await b.store.head(b.bucket, 'out/fin3/manifest.jsonl'))?.size ?? 0;
    expect(manifestBytes).toBeGreaterThan(9_000_000);
    expect(bytes).toBeGreaterThan(manifestBytes);
    // Retained heap stays a small fraction of the manifest size: about one read chunk per open part
    // (4 parts of 2,500 lines), not the run's lines.
    console.log(`finalizer: manifest ${manifestBytes} B, peak retained heap growth ${peak} B`);
    expect(peak).toBeLessThan(manifestBytes / 4);
    const lines = await readManifest('fin3');
    expect(lines).toHaveLength(keys.length);
    expect(new Set(lines.map((l) => l.key)).size).toBe(keys.length);
  });
});
