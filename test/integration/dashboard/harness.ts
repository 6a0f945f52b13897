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
import { DASHBOARD_DEFAULTS, type DashboardOptions } from '../../../src/dashboard/options.js';
import { createDashboard } from '../../../src/dashboard/server.js';
import type { DashboardDeps } from '../../../src/dashboard/deps.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
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
