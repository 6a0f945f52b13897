/**
 * The dashboard while its Redis is down, wired as `gradcam-audit dashboard` wires it
 * (connectDashboard): a Redis server owned by the test (append-only, as in production) is crashed
 * and kept down for several seconds. Every endpoint the pages and bull-board call must answer
 * within a moment, and once Redis is back every one must answer 200 again without a restart.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../../src/shared/config.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { connectDashboard, type DashboardConnections } from '../../../src/dashboard/connections.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import { cleanupBucket } from './harness.js';
import { mixedImages, seedRun } from './seed.js';
import { testBucket, uniqueName, type TestBucket } from '../../helpers/services.js';
import { startRestartableRedis, type RestartableRedis } from '../pipeline/faults-support.js';

/** Long enough that a request waiting for Redis cannot pass for a prompt answer. */
const DOWN_MS = 8_000;
/** A prompt answer: milliseconds when idle; seconds of margin for a loaded 2-core machine. */
const PROMPT_MS = 2_500;

describe('dashboard while Redis is down and coming back', () => {
  let server: RestartableRedis;
  let b: TestBucket;
  let conns: DashboardConnections;
  let app: FastifyInstance;
  let paths: string[];

  beforeAll(async () => {
    server = await startRestartableRedis();
    b = await testBucket();
    const config = loadConfig({}, { redisUrl: server.url, keyPrefix: uniqueName('p'), queueName: uniqueName('q') });
    conns = await connectDashboard(config, b.store, silentLogger());
    const run = await seedRun({ runs: conns.deps.runs, store: b.store, bucket: b.bucket }, 'outage', mixedImages());
    app = await createDashboard(conns.deps, { ...DASHBOARD_DEFAULTS, auth: { kind: 'none' } });
    const key = encodeURIComponent(run.keys[0] as string);
    paths = [
      '/api/queue',
      '/api/runs',
      '/api/workers',
      '/api/runs/outage',
      '/api/runs/outage/images?limit=24',
      '/api/runs/outage/images?status=failed&limit=24',
      '/api/runs/outage/failures?limit=50',
      `/api/runs/outage/image?key=${key}`,
      '/queues/api/queues',
    ];
  });

  afterAll(async () => {
    await app?.close();
    await conns?.close();
    if (b) await cleanupBucket(b);
    await server?.stop();
  });

  it('answers every page request at once with a 503 that names Redis, then serves again by itself', async () => {
    for (const path of paths) expect((await app.inject({ method: 'GET', url: path })).statusCode, path).toBe(200);

    let back = false;
    const restarted = server.restart(DOWN_MS).then(() => (back = true));
    await expect.poll(() => conns.deps.redis.status, { timeout: 10_000 }).not.toBe('ready');
    const slow: string[] = [];
    for (const path of paths) {
      const started = Date.now();
      const res = await app.inject({ method: 'GET', url: path });
      const ms = Date.now() - started;
      if (ms > PROMPT_MS) slow.push(`${path}: ${ms} ms`);
      if (back) continue; // the answer came after Redis was back; only its time counts
      if (path.startsWith('/queues/')) {
        // bull-board's own error answer; it must come promptly and must not claim success.
        expect(res.statusCode, path).toBeGreaterThanOrEqual(500);
        continue;
      }
      expect(res.statusCode, `${path}: ${res.body}`).toBe(503);
      expect(res.json(), path).toMatchObject({ error: 'TRANSIENT', message: expect.stringContaining('Redis is unavailable') });
    }
    expect(slow, 'requests that waited for Redis instead of answering').toEqual([]);
    expect(back, `Redis came back before the probes ended (${DOWN_MS} ms): the machine is too slow for this test`).toBe(false);

    await restarted;
    for (const path of paths) {
      await expect.poll(async () => (await app.inject({ method: 'GET', url: path })).statusCode, { timeout: 20_000, interval: 200 }).toBe(200);
    }
  });
});
