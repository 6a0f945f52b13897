/**
 * What per-image requests cost in S3 reads on a finished run, whose lines are in its manifest alone
 * (the finalizer deleted the parts). Each request checks its key against the run's lines; that
 * check read the manifest up to the key, every time (78 MB per request for the last key of a
 * 200k-image run), and a retry of K keys read it K times. Now the dashboard (wired as the CLI wires
 * it) indexes the manifest once per version and reads one block per lookup afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../../src/shared/config.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { MANIFEST_BLOCK_BYTES } from '../../../src/shared/queue/manifest-index.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { connectDashboard, type DashboardConnections } from '../../../src/dashboard/connections.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import { cleanupBucket, WHOLE_PAGES } from './harness.js';
import { createSeedRun, type SeededRun } from './seed.js';
import { ObservedStore } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const IMAGES = 3000;
const PAD = 'x'.repeat(240);

function lineOf(key: string, i: number, label = `class ${i % 5} ${PAD}`): RunManifestLine {
  return { key, status: 'ok', top1: { index: i % 5, label, probability: 0.5 }, degenerate: false };
}

describe("dashboard reads of a finished run's manifest", () => {
  let t: TestRedis;
  let b: TestBucket;
  let store: ObservedStore;
  let app: FastifyInstance;
  let conns: DashboardConnections;
  let writer: RunStore;
  let run: SeededRun;
  let manifestKey: string;
  let manifestBytes: number;

  const sealManifest = async (lines: RunManifestLine[]): Promise<void> => {
    const body = lines.map((l) => JSON.stringify(l)).join('\n') + '\n';
    manifestBytes = Buffer.byteLength(body);
    await b.store.put(b.bucket, manifestKey, body, { contentType: 'application/x-ndjson' });
    // As the finalizer's seal step leaves it (FINALIZER_STEP 'seal'); completion comes later.
    await writer.updateRun(run.runId, { manifestWritten: '1' });
    await t.redis.hincrby(writer.keys(run.runId).record, 'seals', 1);
  };
  const manifestRead = (): number => store.bytesRead.get(manifestKey) ?? 0;
  const image = async (key: string): Promise<RunManifestLine> => {
    const res = await app.inject({ method: 'GET', url: `/api/runs/${run.runId}/image?key=${encodeURIComponent(key)}` });
    expect(res.statusCode, res.body).toBe(200);
    return (res.json() as { line: RunManifestLine }).line;
  };

  beforeAll(async () => {
    t = await testRedis();
    b = await testBucket();
    writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    const names = Array.from({ length: IMAGES }, (_, i) => `img-${String(i).padStart(5, '0')}.png`);
    run = await createSeedRun({ runs: writer, store: b.store, bucket: b.bucket }, 'sealed', names);
    manifestKey = `${run.outputPrefix}manifest.jsonl`;
    await sealManifest(run.keys.map((key, i) => lineOf(key, i)));
    await writer.updateRun(run.runId, { state: 'completed', finishedAt: new Date().toISOString() });
    store = new ObservedStore(b.store);
    conns = await connectDashboard(loadConfig({}, { redisUrl: t.url, keyPrefix: t.prefix, queueName: t.queueName }), store, silentLogger());
    app = await createDashboard(conns.deps, { ...DASHBOARD_DEFAULTS, auth: { kind: 'none' }, ...WHOLE_PAGES });
  });

  afterAll(async () => {
    await app?.close();
    await conns?.close();
    if (b) await cleanupBucket(b);
    await t?.cleanup();
  });

  it('concurrent first requests read the manifest once between them', async () => {
    expect(manifestBytes, 'a manifest of many blocks').toBeGreaterThan(10 * MANIFEST_BLOCK_BYTES);
    const keys = run.keys.slice(-5);
    store.resetCounts();
    const lines = await Promise.all(keys.map((key) => image(key)));
    expect(lines.map((l) => l.key)).toEqual(keys);
    // One streamed read builds the index; the five keys share the last block.
    expect(manifestRead()).toBeLessThanOrEqual(manifestBytes + 2 * MANIFEST_BLOCK_BYTES);
  });

  it('later per-image requests read at most one block each, none for a block in memory, and a re-finalized manifest is read again', async () => {
    const spread = [0, 611, 1234, 1999, 2500, IMAGES - 1].map((i) => run.keys[i] as string);
    for (const [n, key] of spread.entries()) {
      store.resetCounts();
      expect((await image(key)).top1?.index, key).toBe([0, 611, 1234, 1999, 2500, IMAGES - 1][n]! % 5);
      // One block: its bytes and the line that passes its end.
      expect(manifestRead(), `request ${n + 1} for ${key}`).toBeLessThanOrEqual(MANIFEST_BLOCK_BYTES + 1024);
    }
    store.resetCounts();
    for (const key of spread) await image(key);
    expect(manifestRead(), 'the same keys again').toBe(0);

    // The record moved (a count), the manifest did not: one check of its first block, no new index.
    const record = writer.keys(run.runId).record;
    await t.redis.hincrby(record, 'failed', 1);
    store.resetCounts();
    expect((await image(spread[3] as string)).key).toBe(spread[3]);
    expect(manifestRead(), 'a version check after the record moved').toBeLessThanOrEqual(MANIFEST_BLOCK_BYTES + 1024);
    await t.redis.hincrby(record, 'failed', -1);

    const missing = await app.inject({ method: 'GET', url: `/api/runs/${run.runId}/image?key=${encodeURIComponent(`${run.sourcePrefix}zz.png`)}` });
    expect(missing.statusCode).toBe(404);

    // Finalized again (a retried image): another version of the manifest, read as soon as it is
    // sealed, before the run is marked completed (the parts it merged are deleted in between).
    const changed = run.keys[1234] as string;
    await sealManifest(run.keys.map((key, i) => (key === changed ? lineOf(key, i, 'relabelled') : lineOf(key, i))));
    expect((await image(changed)).top1?.label).toBe('relabelled');
  });

  it('a retry of K keys reads the manifest at most once', async () => {
    const keys = [...Array.from({ length: 10 }, (_, i) => run.keys[i * 299] as string), ...Array.from({ length: 10 }, (_, i) => `${run.sourcePrefix}unknown-${i}.png`)];
    store.resetCounts();
    const res = await app.inject({ method: 'POST', url: `/api/runs/${run.runId}/retry`, headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ keys }) });
    expect(res.statusCode, res.body).toBe(200);
    const out = res.json() as { retried: string[]; skipped: Array<{ key: string; reason: string }> };
    expect(out.retried).toEqual([]);
    expect(out.skipped.map((s) => s.reason)).toEqual([...Array(10).fill('the image did not fail'), ...Array(10).fill('no such image in this run')]);
    expect(manifestRead()).toBeLessThanOrEqual(manifestBytes);
  });
});
