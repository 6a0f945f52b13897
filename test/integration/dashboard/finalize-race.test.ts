/**
 * The dashboard reads a run's result lines from its part files while the finalizer merges them into
 * manifest.jsonl and deletes them. Each test makes the finalizer (the real one, on the real Redis
 * and S3 server) run at the worst moment of a dashboard read: after the parts were listed and
 * before one is opened, or after the run record was read and before the parts are listed. The
 * store the dashboard reads through (ObservedStore) sends every call to the real S3 server; it
 * only decides when the finalizer runs. Both with and without the part cache the CLI's dashboard
 * reads through (its GETs run ahead of the reader, and a part deleted under them must still send
 * the reader to the manifest).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { silentLogger } from '../../../src/shared/logger.js';
import { PartCache } from '../../../src/shared/queue/part-cache.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import { cleanupBucket, WHOLE_PAGES } from './harness.js';
import { seedRun, type SeedImage } from './seed.js';
import { ObservedStore, type StoreStep } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

/** When the finalizer runs during a dashboard read of part files. */
type Moment = 'before-listing-parts' | 'before-opening-a-part';

/** The real S3 store; the first time a read of part files reaches `moment`, `interleave` runs to completion first. */
class InterleavingStore extends ObservedStore {
  fired = 0;

  arm(moment: Moment, interleave: () => Promise<unknown>): void {
    this.fired = 0;
    const once: StoreStep = async (_bucket, key) => {
      if (!key.includes('_parts/')) return;
      this.beforeList = this.beforeRead = null;
      await interleave();
      this.fired += 1;
    };
    this.beforeList = moment === 'before-listing-parts' ? once : null;
    this.beforeRead = moment === 'before-opening-a-part' ? once : null;
  }
}

const IMAGES: SeedImage[] = [
  { name: 'a.png', status: 'ok', cls: 0, probability: 0.9 },
  { name: 'b.png', status: 'ok', cls: 1, probability: 0.8 },
  { name: 'c.png', status: 'failed', error: 'INVALID_IMAGE: truncated' },
  { name: 'd.png', status: 'ok', cls: 2, probability: 0.7 },
  { name: 'e.png', status: 'ok', cls: 1, probability: 0.6 },
];

for (const cached of [false, true])
describe(`dashboard reads while the finalizer replaces part files by the manifest${cached ? ', through the part cache' : ''}`, () => {
  let t: TestRedis;
  let b: TestBucket;
  let store: InterleavingStore;
  let writer: RunStore;
  let app: FastifyInstance;
  let queueConnection: Redis;
  let queue: Queue;

  beforeAll(async () => {
    t = await testRedis();
    b = await testBucket();
    store = new InterleavingStore(b.store);
    writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    queueConnection = new Redis(t.url, { maxRetriesPerRequest: null });
    queue = new Queue(t.queueName, { connection: queueConnection });
    const runs = new RunStore(t.redis, { prefix: t.prefix }, { store, ...(cached ? { partCache: new PartCache(DASHBOARD_DEFAULTS.partCacheBytes) } : {}) });
    // The finalizer runs inside a read: a request must wait for it here, whatever the machine's load.
    app = await createDashboard({ runs, redis: t.redis, keySpace: { prefix: t.prefix }, store, queue, logger: silentLogger() }, { ...DASHBOARD_DEFAULTS, auth: { kind: 'none' }, ...WHOLE_PAGES });
  });

  afterAll(async () => {
    await app?.close();
    await queue?.close();
    queueConnection?.disconnect();
    if (b) await cleanupBucket(b);
    await t?.cleanup();
  });

  /** A completed-but-not-finalized run (one part file per image) and the finalizer armed at `moment`. */
  async function racedRun(runId: string, moment: Moment): Promise<string[]> {
    const run = await seedRun({ runs: writer, store: b.store, bucket: b.bucket }, runId, IMAGES);
    const parts = [];
    for await (const page of b.store.listPages(b.bucket, `${run.outputPrefix}_parts/`)) parts.push(...page);
    expect(parts.length, 'one part file per recorded batch').toBeGreaterThan(1);
    store.arm(moment, async () => {
      const outcome = await finalizeRun(runId, { runs: writer, redis: t.redis, upload: s3StreamUploader(b.store.client) });
      expect(outcome.status).toBe('written');
    });
    return run.keys;
  }

  for (const moment of ['before-opening-a-part', 'before-listing-parts'] as const) {
    it(`the gallery lists every image when the finalizer runs ${moment.replaceAll('-', ' ')}`, async () => {
      const runId = `gallery-${moment}`;
      const keys = await racedRun(runId, moment);
      const res = await app.inject({ method: 'GET', url: `/api/runs/${runId}/images?limit=24` });
      expect(store.fired, 'the finalizer ran inside the read').toBe(1);
      expect(res.statusCode, res.body).toBe(200);
      const body = res.json() as { total: number; items: Array<{ key: string; status: string }> };
      expect(body.total).toBe(keys.length);
      expect(body.items.map((i) => i.key)).toEqual([...keys].sort());
      expect(body.items.find((i) => i.key.endsWith('c.png'))?.status).toBe('failed');
    });

    it(`the run page's analytics count every image when the finalizer runs ${moment.replaceAll('-', ' ')}`, async () => {
      const runId = `detail-${moment}`;
      await racedRun(runId, moment);
      const detail = await app.inject({ method: 'GET', url: `/api/runs/${runId}` });
      expect(store.fired).toBe(1);
      expect(detail.statusCode, detail.body).toBe(200);
      expect(detail.json().analytics).toMatchObject({ ok: 4, failed: 1 });
    });
  }

  it('the image detail finds its line when the finalizer runs between listing the parts and opening them', async () => {
    const runId = 'image-race';
    const keys = await racedRun(runId, 'before-opening-a-part');
    const last = [...keys].sort().at(-1) as string;
    const res = await app.inject({ method: 'GET', url: `/api/runs/${runId}/image?key=${encodeURIComponent(last)}` });
    expect(store.fired).toBe(1);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().line).toMatchObject({ key: last, status: 'ok' });
  });
});
