/**
 * Objects the dashboard streams instead of keeping (a finished run's manifest, a part file above
 * the part cache's size limit) are read under the same bounds as the other part reads: a GET that
 * never answers, or an answer that stops mid-body, fails the request with a 503 naming the object
 * instead of holding it open forever. The stalls are made by a fault proxy between the dashboard
 * (wired as the CLI wires it) and the real S3 server.
 */
import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectDashboard, type DashboardConnections } from '../../../src/dashboard/connections.js';
import { DASHBOARD_DEFAULTS, type DashboardOptions } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import { loadConfig } from '../../../src/shared/config.js';
import { silentLogger } from '../../../src/shared/logger.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { partName, partsPrefix } from '../../../src/shared/queue/result-parts.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import { S3ObjectStore } from '../../../src/shared/storage/s3-store.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import { s3Options, services, testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { cleanupBucket } from './harness.js';
import { createSeedRun, type SeededRun } from './seed.js';

const OPTIONS: Partial<DashboardOptions> = { partWaitMs: 300, partReads: { attemptTimeoutMs: 300, attempts: 2, concurrency: 8 } };
/** Two attempts of 300 ms plus room for a loaded 2-core machine; an unbounded read never answers. */
const ANSWER_BOUND_MS = 4000;

const ok = (key: string): RunManifestLine => ({ key, status: 'ok', top1: { index: 1, label: 'class 1', probability: 0.9 }, degenerate: false });

describe('a dashboard request while a streamed S3 read stalls', () => {
  let t: TestRedis;
  let b: TestBucket;
  let proxy: FaultProxy;
  let proxied: S3ObjectStore;
  let conns: DashboardConnections;
  let app: FastifyInstance;
  let finished: SeededRun;
  let live: SeededRun;
  let largePart: string;

  beforeAll(async () => {
    t = await testRedis();
    b = await testBucket();
    proxy = await startFaultProxy(services().s3Endpoint);
    proxied = S3ObjectStore.fromConfig(s3Options({ endpoint: proxy.url }));
    const writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    const target = { runs: writer, store: b.store, bucket: b.bucket };

    // A finished run: its lines are in manifest.jsonl only (the finalizer deleted the parts).
    finished = await createSeedRun(target, 'finished', ['a.png', 'b.png', 'c.png']);
    for (const key of finished.keys) await writer.recordResult(finished.runId, ok(key));
    expect((await finalizeRun(finished.runId, { runs: writer, redis: t.redis, upload: s3StreamUploader(b.store.client) })).status).toBe('written');

    // A live run with a merged part above the part cache's 1 MiB limit (streamed, never kept).
    live = await createSeedRun(target, 'live', ['a.png', 'b.png']);
    const record = await writer.requireRun(live.runId);
    const padded = (key: string): string => `${JSON.stringify({ ...ok(key), pad: 'x'.repeat(600 * 1024) })}\n`;
    largePart = `${partsPrefix(`${live.outputPrefix}`, record.epoch)}${partName(Date.now(), 'merged', 0)}`;
    await b.store.put(b.bucket, largePart, live.keys.map(padded).join(''), { contentType: 'application/x-ndjson' });

    const options = { ...DASHBOARD_DEFAULTS, ...OPTIONS, auth: { kind: 'none' } } as DashboardOptions;
    conns = await connectDashboard(loadConfig({}, { redisUrl: t.url, keyPrefix: t.prefix, queueName: t.queueName }), proxied, silentLogger(), options);
    app = await createDashboard(conns.deps, options);
  });

  afterAll(async () => {
    await proxy?.close(); // ends any GET still held, so the requests and the app can close
    await app?.close();
    await conns?.close();
    proxied?.destroy();
    if (b) await cleanupBucket(b);
    await t?.cleanup();
  });

  /** A gallery page, timed; a request still open after twice the bound is reported as such. */
  async function gallery(run: SeededRun): Promise<{ ms: number; status: number | 'no answer'; body: { error?: string; message?: string; items?: RunManifestLine[] } }> {
    const started = Date.now();
    const request = app.inject({ method: 'GET', url: `/api/runs/${run.runId}/images?limit=24` });
    let timer: NodeJS.Timeout | undefined;
    const unanswered = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 2 * ANSWER_BOUND_MS)));
    const res = (await Promise.race([request, unanswered]).finally(() => clearTimeout(timer))) as LightMyRequestResponse | null;
    return { ms: Date.now() - started, status: res ? res.statusCode : 'no answer', body: res ? res.json() : {} };
  }

  const objectGets = (suffix: string) => (r: { method: string; path: string }) => r.method === 'GET' && r.path.split('?')[0]!.endsWith(suffix);

  it("a finished run's manifest GET that never answers: 503 naming the manifest, within the bound", async () => {
    proxy.setRules([{ kind: 'hang', match: objectGets('/manifest.jsonl') }]);
    const res = await gallery(finished);
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(res.body).toMatchObject({ error: 'TRANSIENT' });
    expect(res.body.message).toMatch(/^reading s3:\/\/.*\/gradcam-audit\/finished\/manifest\.jsonl: no answer within 300 ms, 2 attempts/);
  });

  it('a manifest answer that stops mid-body: 503 saying S3 sent nothing more, within the bound', async () => {
    proxy.setRules([{ kind: 'stall', afterBytes: 40, match: objectGets('/manifest.jsonl') }]);
    const res = await gallery(finished);
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(res.body.message).toMatch(/manifest\.jsonl: S3 sent nothing for 300 ms mid-object/);
  });

  it('a part above the cache limit whose GET never answers: 503 naming the part', async () => {
    proxy.setRules([{ kind: 'hang', match: objectGets('.jsonl') }]);
    const res = await gallery(live);
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(res.body.message).toContain(`${largePart}: no answer within 300 ms`);
  });

  it('once S3 answers again, both read whole', async () => {
    proxy.setRules([]);
    expect((await gallery(finished)).body.items?.map((l) => l.key)).toEqual(finished.keys);
    expect((await gallery(live)).body.items?.map((l) => l.key)).toEqual(live.keys);
  });
});
