/**
 * A dashboard wired to the test run's real Redis and S3 server, with its own key prefix, queue and
 * bucket. The same `createDashboard` the CLI serves; only the dependencies are per-test.
 */
import { Queue } from 'bullmq';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import { s3RunAnalyser } from '../../../src/shared/audit/s3-analysis.js';
import { silentLogger } from '../../../src/shared/logger.js';
import { finalizeRun, s3StreamUploader, type FinalizeOutcome } from '../../../src/shared/run-finalizer.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { connectDashboard } from '../../../src/dashboard/connections.js';
import { DASHBOARD_DEFAULTS, type DashboardOptions } from '../../../src/dashboard/options.js';
import { loadConfig } from '../../../src/shared/config.js';
import { S3ObjectStore } from '../../../src/shared/storage/s3-store.js';
import { startFaultProxy, type FaultProxy } from '../../helpers/fault-proxy.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import type { DashboardDeps } from '../../../src/dashboard/deps.js';
import { s3Options, services, testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import type { SeedTarget } from './seed.js';

export interface DashboardHarness {
  t: TestRedis;
  b: TestBucket;
  deps: DashboardDeps;
  queue: Queue;
  queueConnection: Redis;
  seed: SeedTarget;
  app: FastifyInstance;
  /** The real finalizer with the run analysis, as workers run it. */
  finalize(runId: string): Promise<FinalizeOutcome>;
  close(): Promise<void>;
}

/**
 * Dashboard options for tests that assert a page's whole content: wait for every part file however
 * loaded the machine. The production default answers after 1 s from the parts already read (the
 * subject of stalled-part.test.ts), which on a loaded CI machine can be a partial page.
 */
export const WHOLE_PAGES: Partial<DashboardOptions> = { partWaitMs: 120_000 };

export async function startHarness(options: Partial<DashboardOptions> = {}): Promise<DashboardHarness> {
  const t = await testRedis();
  const b = await testBucket();
  const queueConnection = new Redis(t.url, { maxRetriesPerRequest: null });
  const queue = new Queue(t.queueName, { connection: queueConnection });
  const runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
  const deps: DashboardDeps = { runs, redis: t.redis, keySpace: { prefix: t.prefix }, store: b.store, queue, logger: silentLogger() };
  const app = await createDashboard(deps, { ...DASHBOARD_DEFAULTS, auth: { kind: 'none' }, port: 0, ...WHOLE_PAGES, ...options });
  return {
    t,
    b,
    deps,
    queue,
    queueConnection,
    seed: { runs, store: b.store, bucket: b.bucket },
    app,
    finalize(runId) {
      const upload = s3StreamUploader(b.store.client);
      return finalizeRun(runId, { runs, redis: t.redis, upload, analyse: s3RunAnalyser(b.store, upload) });
    },
    async close() {
      await app.close();
      await queue.obliterate({ force: true }).catch(() => undefined);
      await queue.close();
      queueConnection.disconnect();
      await cleanupBucket(b);
      await t.cleanup();
    },
  };
}

/**
 * s3rver answers 500 to concurrent DELETEs of keys sharing nested folders (it removes empty
 * directories as it goes), so empty the bucket one key at a time before the shared cleanup.
 */
export async function cleanupBucket(b: TestBucket): Promise<void> {
  if (process.env.GCA_KEEP_TEST_DATA !== '1') {
    for await (const page of b.store.listPages(b.bucket, '')) for (const o of page) await b.store.delete(b.bucket, o.key);
  }
  await b.cleanup();
}

export interface ProxiedDashboard {
  t: TestRedis;
  b: TestBucket;
  /** Between the dashboard and the S3 server: its rules stall or break the dashboard's reads. */
  proxy: FaultProxy;
  /** Writes runs as workers do, straight to S3 (not through the proxy). */
  writer: RunStore;
  app: FastifyInstance;
  /** Closes the proxy first, which ends any request it still holds, then the rest. */
  close(): Promise<void>;
}

/**
 * A dashboard wired as the CLI wires it (`connectDashboard`), reading S3 through a fault proxy;
 * `seed` writes runs before the dashboard starts.
 */
export async function startProxiedDashboard(options: Partial<DashboardOptions>, seed: (services: { target: SeedTarget; t: TestRedis; b: TestBucket }) => Promise<void>): Promise<ProxiedDashboard> {
  const t = await testRedis();
  const b = await testBucket();
  const proxy = await startFaultProxy(services().s3Endpoint);
  const proxied = S3ObjectStore.fromConfig(s3Options({ endpoint: proxy.url }));
  const writer = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
  await seed({ target: { runs: writer, store: b.store, bucket: b.bucket }, t, b });
  const all = { ...DASHBOARD_DEFAULTS, ...options, auth: { kind: 'none' } } as DashboardOptions;
  const conns = await connectDashboard(loadConfig({}, { redisUrl: t.url, keyPrefix: t.prefix, queueName: t.queueName }), proxied, silentLogger(), all);
  const app = await createDashboard(conns.deps, all);
  return {
    t,
    b,
    proxy,
    writer,
    app,
    async close() {
      await proxy.close();
      await app.close();
      await conns.close();
      proxied.destroy();
      await cleanupBucket(b);
      await t.cleanup();
    },
  };
}
