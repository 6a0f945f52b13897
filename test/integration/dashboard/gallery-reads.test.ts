/**
 * What the pages of a live run cost in S3 reads while its results are still in part files (one
 * per recorded batch: about one per image when results trickle in, 800 in the chaos run). A page
 * of 24 used to read every part 25 times (once per image), and every poll read every part again,
 * so the chaos run's run page and gallery took more than 15 s; now a page reads each part at most
 * twice, and the dashboard (wired as the CLI wires it) reads a part only once while it is cached,
 * and lists the parts folder once: later parts come from the run's part index in Redis.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../../src/shared/config.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { connectDashboard, type DashboardConnections } from '../../../src/dashboard/connections.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import { cleanupBucket, WHOLE_PAGES } from './harness.js';
import { createSeedRun, type SeededRun } from './seed.js';
import { ObservedStore } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const IMAGES = 60;

describe('dashboard reads of a live run\'s part files', () => {
  let t: TestRedis;
  let b: TestBucket;
  let store: ObservedStore;
  let app: FastifyInstance;
  let conns: DashboardConnections;
  let writer: RunStore;
  let run: SeededRun;
  let parts: number;

  beforeAll(async () => {
    t = await testRedis();
    b = await testBucket();
    writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    run = await createSeedRun({ runs: writer, store: b.store, bucket: b.bucket }, 'reads', Array.from({ length: IMAGES }, (_, i) => `img-${String(i).padStart(3, '0')}.png`));
    // One result at a time: each becomes its own part file, as results of a slow live run do.
    for (const [i, key] of run.keys.entries()) {
      const line: RunManifestLine =
        i % 7 === 3
          ? { key, status: 'failed', error: 'INVALID_IMAGE: truncated' }
          : { key, status: 'ok', top1: { index: i % 3, label: `class ${i % 3}`, probability: 0.5 + (i % 5) / 10 }, degenerate: false };
      await writer.recordResult(run.runId, line);
    }
    parts = 0;
    for await (const page of b.store.listPages(b.bucket, `${run.outputPrefix}_parts/`)) parts += page.length;
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

  it('a page of 24 reads each part at most twice (the key listing, then the page), and shows the right lines', async () => {
    expect(parts, 'one part file per result').toBe(IMAGES);
    for (const [query, sorted] of [
      ['limit=24', [...run.keys].sort().slice(0, 24)],
      ['limit=24&offset=24&order=desc', [...run.keys].sort().reverse().slice(24, 48)],
    ] as const) {
      store.resetCounts();
      const res = await app.inject({ method: 'GET', url: `/api/runs/${run.runId}/images?${query}` });
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as { total: number; items: RunManifestLine[] };
      expect(body.total).toBe(IMAGES);
      expect(body.items.map((l) => l.key)).toEqual(sorted);
      expect(body.items.filter((l) => l.status === 'failed').every((l) => l.error === 'INVALID_IMAGE: truncated')).toBe(true);
      expect(body.items.filter((l) => l.status === 'ok').every((l) => l.top1 !== undefined)).toBe(true);
      expect(store.reads, `${query}: part reads for ${parts} parts`).toBeLessThanOrEqual(2 * parts);
    }
  });

  it('a poll after new results reads only the new parts, and shows them', async () => {
    const detail = async () => (await app.inject({ method: 'GET', url: `/api/runs/${run.runId}` })).json() as { analytics: { ok: number; failed: number } };
    await detail();
    const more = ['late-0.png', 'late-1.png', 'late-2.png'].map((n) => `${run.sourcePrefix}${n}`);
    await writer.addJobs(run.runId, more.map((key) => ({ key })));
    for (const key of more) await writer.recordResult(run.runId, { key, status: 'ok', top1: { index: 1, label: 'class 1', probability: 0.9 }, degenerate: false });

    store.resetCounts();
    const after = await detail();
    expect(after.analytics.ok + after.analytics.failed).toBe(IMAGES + more.length);
    expect(store.reads, 'parts read by a poll after 3 new results').toBe(more.length);
    store.resetCounts();
    const page = (await app.inject({ method: 'GET', url: `/api/runs/${run.runId}/images?q=late` })).json() as { items: RunManifestLine[] };
    expect(page.items.map((l) => l.key)).toEqual(more);
    expect(store.reads, 'parts read by a gallery page, all cached').toBe(0);
  });

  it('one page load (run detail, gallery page, failures filter at once) after a new result lists nothing', async () => {
    // A new result moves the counters: its part comes from the run's part index, shared by the three.
    const key = `${run.sourcePrefix}later.png`;
    await writer.addJobs(run.runId, [{ key }]);
    await writer.recordResult(run.runId, { key, status: 'failed', error: 'INVALID_IMAGE: truncated' });
    store.resetCounts();
    const urls = [`/api/runs/${run.runId}`, `/api/runs/${run.runId}/images?limit=24&sort=top1Prob`, `/api/runs/${run.runId}/images?status=failed&limit=24`];
    const answers = await Promise.all(urls.map((url) => app.inject({ method: 'GET', url })));
    for (const a of answers) expect(a.statusCode, a.body).toBe(200);
    expect(store.counts.listPages).toBe(0);
    expect(store.reads, 'the one new part, at most once per request').toBeLessThanOrEqual(urls.length);
    expect((answers[2]?.json() as { items: RunManifestLine[] }).items.map((l) => l.key)).toContain(key);
  });

  it('a gallery page reads the parts as of the record it started with, not those counted while it runs', async () => {
    const before = [`${run.sourcePrefix}during-a.png`, `${run.sourcePrefix}during-b.png`];
    const meanwhile = `${run.sourcePrefix}during-c.png`;
    await app.inject({ method: 'GET', url: `/api/runs/${run.runId}/images?q=during` }); // every part so far cached
    await writer.addJobs(run.runId, [...before, meanwhile].map((key) => ({ key })));
    for (const key of before) await writer.recordResult(run.runId, { key, status: 'ok', top1: { index: 0, label: 'class 0', probability: 0.6 }, degenerate: false });
    // A result counted while the request reads its first new part: a later step of the same
    // request that read the record again would read this part too.
    let once = true;
    store.beforeRead = async () => {
      if (!once) return;
      once = false;
      await writer.recordResult(run.runId, { key: meanwhile, status: 'ok', top1: { index: 0, label: 'class 0', probability: 0.6 }, degenerate: false });
    };
    store.resetCounts();
    const res = await app.inject({ method: 'GET', url: `/api/runs/${run.runId}/images?q=during` });
    store.beforeRead = null;
    expect(res.statusCode, res.body).toBe(200);
    expect((res.json() as { items: RunManifestLine[] }).items.map((l) => l.key)).toEqual(before);
    expect(store.reads, 'the two parts counted before the request').toBe(2);
  });

  it('polls of a live run never list its parts again while results keep coming, and show every new line', async () => {
    // The chaos run's slow polls: each poll after the counters moved listed the whole parts folder
    // (hundreds of parts, seconds per LIST on s3rver under load).
    const poll = async () => {
      const [detail, gallery, failures] = await Promise.all(
        [`/api/runs/${run.runId}`, `/api/runs/${run.runId}/images?limit=100`, `/api/runs/${run.runId}/failures?limit=100`].map((url) => app.inject({ method: 'GET', url })),
      );
      for (const a of [detail, gallery, failures]) expect(a?.statusCode, a?.body).toBe(200);
      return {
        detail: detail?.json() as { run: { done: number; failed: number }; analytics: { ok: number; failed: number } },
        gallery: gallery?.json() as { total: number; items: RunManifestLine[] },
        failures: failures?.json() as { items: Array<{ key: string }> },
      };
    };
    await poll();
    for (let round = 0; round < 5; round++) {
      const keys = [0, 1].map((j) => `${run.sourcePrefix}round-${round}-${j}.png`);
      await writer.addJobs(run.runId, keys.map((key) => ({ key })));
      await writer.recordResult(run.runId, { key: keys[0] as string, status: 'ok', top1: { index: 2, label: 'class 2', probability: 0.7 }, degenerate: false });
      await writer.recordResult(run.runId, { key: keys[1] as string, status: 'failed', error: 'INVALID_IMAGE: truncated' });
      store.resetCounts();
      const seen = await poll();
      expect(store.counts.listPages, `round ${round}: LISTs of the parts folder`).toBe(0);
      // The two new parts, at most once by each of the two requests that read parts (run, gallery).
      expect(store.reads, `round ${round}: parts read`).toBeLessThanOrEqual(4);
      const counted = seen.detail.run.done + seen.detail.run.failed;
      expect(seen.detail.analytics.ok + seen.detail.analytics.failed, 'analytics count every counted image').toBe(counted);
      expect(seen.gallery.total).toBe(counted);
      const shown = new Map(seen.gallery.items.map((l) => [l.key, l.status]));
      expect(shown.get(keys[0] as string)).toBe('ok');
      expect(shown.get(keys[1] as string)).toBe('failed');
      expect(seen.failures.items.map((f) => f.key)).toContain(keys[1]);
    }
  });
});
