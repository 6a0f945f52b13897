import { Queue } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../../src/dev/free-port.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { createRedis } from '../../../src/shared/queue/redis.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import { cleanupBucket } from './harness.js';
import { testBucket } from '../../helpers/services.js';

describe('dashboard with Redis down', () => {
  it('answers 503 with an actionable message instead of hanging or a bare 500', async () => {
    // A port nothing listens on, with the same client settings the dashboard uses in production.
    const url = `redis://127.0.0.1:${await freePort()}`;
    const redis = createRedis(url, { role: 'client', maxReconnectDelayMs: 200 });
    redis.on('error', () => undefined);
    const queueConnection = createRedis(url, { role: 'client', maxReconnectDelayMs: 200 });
    queueConnection.on('error', () => undefined);
    const queue = new Queue('q', { connection: queueConnection });
    queue.on('error', () => undefined);
    const b = await testBucket();
    const app = await createDashboard(
      { runs: new RunStore(redis, { prefix: 'x' }), redis, keySpace: { prefix: 'x' }, store: b.store, queue, logger: silentLogger() },
      { ...DASHBOARD_DEFAULTS, auth: { kind: 'none' } },
    );
    try {
      const started = Date.now();
      for (const url of ['/api/runs', '/api/workers', '/api/runs/r1']) {
        const res = await app.inject({ method: 'GET', url });
        expect(res.statusCode, url).toBe(503);
        expect(res.json().message).toContain('Redis is unavailable');
      }
      expect(Date.now() - started).toBeLessThan(10_000);
    } finally {
      await app.close();
      await queue.close().catch(() => undefined);
      queueConnection.disconnect();
      redis.disconnect();
      await cleanupBucket(b);
    }
  });
});
