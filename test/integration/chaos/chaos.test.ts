/**
 * The chaos run, sized for the suite (test/integration/chaos/harness.ts has the full story;
 * `npm run chaos` runs it with 1,000 images): small images mixed with every hostile fixture, a
 * 65535x1 PNG and a large PNG; three real workers, the first SIGKILLed at its first batch and one
 * replaced every few seconds after that; Redis crashed and restarted once; S3 500/503s and resets;
 * the dashboard polled throughout. Whatever happened, every key is in manifest.jsonl exactly once
 * with its expected outcome, summary.json agrees, ok images have their outputs, workers stay under
 * the memory bound and nothing is left running.
 *
 * By default 70 images and the 100 MP image (10,000 x 10,000, exactly the decode limit): about
 * 36 CPU-seconds, 36-46 s at load 10-12 on 2 cores (docs/benchmarks.md); GCA_CHAOS=1 runs 150 images.
 */
import { describe, expect, it } from 'vitest';
import { CHAOS_DEFAULTS, runChaos, type ChaosConfig, type ChaosReport } from './harness.js';
import { services, testBucket } from '../../helpers/services.js';

const BIG = process.env.GCA_CHAOS === '1';
const SIZE: Partial<ChaosConfig> = BIG ? { images: 150 } : { images: 70, killIntervalMs: 10_000, s3FaultRate: 0.06, dashboardPollMs: 500 };
// Generous: on a loaded 2-core machine worker start-ups alone take tens of seconds. The harness's
// own deadline (TIMEOUT_MS - 20 s) kills everything before vitest's timeout, so a hang fails with
// the run's numbers and leaves no process behind.
const TIMEOUT_MS = BIG ? 600_000 : 300_000;

describe('chaos: kills, a Redis restart, S3 faults and hostile files at once', { timeout: TIMEOUT_MS }, () => {
  it('ends with every key once, outputs complete, bounded worker memory and nothing left behind', async () => {
    const b = await testBucket();
    let report: ChaosReport;
    try {
      report = await runChaos(
        { ...SIZE, seed: 12, timeoutMs: TIMEOUT_MS - 20_000 },
        { s3Endpoint: services().s3Endpoint, s3Credentials: services().s3Credentials, store: b.store, bucket: b.bucket },
        (line) => process.stderr.write(`[chaos] ${line}\n`),
      );
    } finally {
      await b.cleanup();
    }
    const { problems, ...numbers } = report;
    process.stderr.write(`[chaos] ${JSON.stringify({ ...numbers, rss: { ...numbers.rss, peaks: undefined }, config: undefined })}\n`);
    expect(problems).toEqual([]);
    // The chaos really happened.
    expect(report.workerKills).toBeGreaterThanOrEqual(1);
    expect(report.redisRestarts).toBe(1);
    for (const kind of ['status503', 'status500', 'reset']) expect(report.s3.byKind[kind], kind).toBeGreaterThan(0);
    expect(report.dashboard.ok).toBeGreaterThan(8);
    expect(report.rss.peakWorkerBytes).toBeGreaterThan(0);
    expect(report.rss.peakWorkerBytes).toBeLessThan(CHAOS_DEFAULTS.workerRssBoundBytes);
  });
});
