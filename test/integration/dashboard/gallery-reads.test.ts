/**
 * What one gallery page costs in S3 reads while a run is still in part files (one per recorded
 * batch: hundreds in a live run). The page used to look up each of its images with a read of every
 * part, 25 reads of each part for a page of 24, which made the chaos run's gallery requests take
 * more than 15 s; now the page's lines come from one read of the parts after the key listing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import { cleanupBucket } from './harness.js';
import { createSeedRun, type SeededRun } from './seed.js';
import { ObservedStore } from '../../helpers/observed-store.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

const IMAGES = 60;

describe('gallery pages read each part file a bounded number of times', () => {
  let t: TestRedis;
  let b: TestBucket;
  let store: ObservedStore;
  let app: FastifyInstance;
  let queueConnection: Redis;
  let queue: Queue;
  let run: SeededRun;
  let parts: number;

  beforeAll(async () => {
    t = await testRedis();
    b = await testBucket();
    const writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
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
    queueConnection = new Redis(t.url, { maxRetriesPerRequest: null });
    queue = new Queue(t.queueName, { connection: queueConnection });
    const runs = new RunStore(t.redis, { prefix: t.prefix }, { store });
    app = await createDashboard({ runs, redis: t.redis, keySpace: { prefix: t.prefix }, store, queue, logger: silentLogger() }, { ...DASHBOARD_DEFAULTS, auth: { kind: 'none' } });
  });

  afterAll(async () => {
    await app?.close();
    await queue?.close();
    queueConnection?.disconnect();
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
      expect(store.counts.getStream, `${query}: part reads for ${parts} parts`).toBeLessThanOrEqual(2 * parts);
    }
  });
});
