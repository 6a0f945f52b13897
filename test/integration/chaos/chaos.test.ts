/**
 * The chaos run, sized for the suite (test/integration/chaos/harness.ts has the full story;
 * `npm run chaos` runs it with 1,000 images): small images mixed with every hostile fixture, a
 * 65535x1 PNG and a 100-megapixel PNG; three real workers, one SIGKILLed and replaced every few
 * seconds; Redis crashed and restarted once; S3 500/503s and resets; the dashboard polled
 * throughout. Whatever happened, every key is in manifest.jsonl exactly once with its expected
 * outcome, summary.json agrees, ok images have their outputs, workers stay under the memory bound
 * and nothing is left running.
 */
import { describe, expect, it } from 'vitest';
import { CHAOS_DEFAULTS, runChaos, type ChaosReport } from './harness.js';
import { services, testBucket } from '../../helpers/services.js';

const IMAGES = 150;
const TIMEOUT_MS = 600_000;

// Opt-in (GCA_CHAOS=1): on a 2-core machine at load 13-25, start-up of three workers and the
// dashboard alone took 40-80 s and 169 images did not complete within 220 s, far past a suite
// budget. The harness's own deadline (TIMEOUT_MS - 20 s) kills everything before vitest's timeout,
// so a hang fails with the run's numbers and leaves no process behind.
describe.skipIf(process.env.GCA_CHAOS !== '1')('chaos: kills, a Redis restart, S3 faults and hostile files at once', { timeout: TIMEOUT_MS }, () => {
  it('ends with every key once, outputs complete, bounded worker memory and nothing left behind', async () => {
    const b = await testBucket();
    let report: ChaosReport;
    try {
      report = await runChaos(
        { images: IMAGES, seed: 12, timeoutMs: TIMEOUT_MS - 20_000 },
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
    expect(report.workerKills).toBeGreaterThanOrEqual(2);
    expect(report.redisRestarts).toBe(1);
    for (const kind of ['status503', 'status500', 'reset']) expect(report.s3.byKind[kind], kind).toBeGreaterThan(0);
    expect(report.dashboard.ok).toBeGreaterThan(20);
    expect(report.rss.peakWorkerBytes).toBeGreaterThan(0);
    expect(report.rss.peakWorkerBytes).toBeLessThan(CHAOS_DEFAULTS.workerRssBoundBytes);
  });
});
