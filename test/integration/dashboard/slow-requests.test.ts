/**
 * Requests slower than `slowRequestMs` are logged with their route, so an unanswered poll (the
 * chaos run's dashboard check) can be traced afterwards; faster ones are not.
 */
import { Writable } from 'node:stream';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import type { DashboardDeps } from '../../../src/dashboard/deps.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';

describe('slow dashboard requests', () => {
  let t: TestRedis;
  let b: TestBucket;
  let queueConnection: Redis;
  let queue: Queue;
  const lines: Array<Record<string, unknown>> = [];

  beforeAll(async () => {
    t = await testRedis();
    b = await testBucket();
    queueConnection = new Redis(t.url, { maxRetriesPerRequest: null });
    queue = new Queue(t.queueName, { connection: queueConnection });
  });
  afterAll(async () => {
    await queue?.close();
    queueConnection?.disconnect();
    await b?.cleanup();
    await t?.cleanup();
  });

  async function dashboard(slowRequestMs: number) {
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        lines.push(JSON.parse(chunk.toString('utf8')) as Record<string, unknown>);
        done();
      },
    });
    const deps: DashboardDeps = { runs: new RunStore(t.redis, { prefix: t.prefix }, { store: b.store }), redis: t.redis, keySpace: { prefix: t.prefix }, store: b.store, queue, logger: pino({ level: 'info' }, sink) };
    return createDashboard(deps, { ...DASHBOARD_DEFAULTS, auth: { kind: 'none' }, slowRequestMs });
  }

  it('logs a request over the threshold with its method, path (no query), status and time', async () => {
    const app = await dashboard(0);
    lines.length = 0;
    expect((await app.inject({ method: 'GET', url: '/api/runs/nope?x=1' })).statusCode).toBe(404);
    await app.close();
    expect(lines.filter((l) => l.msg === 'slow dashboard request')).toEqual([expect.objectContaining({ level: 40, method: 'GET', path: '/api/runs/nope', status: 404, ms: expect.any(Number) })]);
  });

  it('logs nothing for requests under the default threshold', async () => {
    const app = await dashboard(DASHBOARD_DEFAULTS.slowRequestMs);
    lines.length = 0;
    expect((await app.inject({ method: 'GET', url: '/api/runs' })).statusCode).toBe(200);
    await app.close();
    expect(lines.filter((l) => l.msg === 'slow dashboard request')).toEqual([]);
  });
});
