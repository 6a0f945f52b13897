/**
 * The chaos run at full size (test/integration/chaos/harness.ts): 1,000 images by default, three
 * workers with one SIGKILLed and replaced every few seconds, Redis crashed and restarted once,
 * S3 faults, the dashboard polled throughout. Starts its own Redis (always: the run restarts it)
 * and s3rver (or uses AWS_ENDPOINT_URL_S3 with AWS_* credentials). Exits 1 when an invariant broke.
 *
 *   npm run chaos -- [--images 1000] [--duration-s 0] [--seed 1] [--workers 3] [--kill-interval-ms 3000]
 *                    [--s3-fault-rate 0.04] [--rss-bound-mib 1536] [--no-hostile] [--no-large] [--log-dir DIR] [--json]
 *
 * `--duration-s N` keeps starting new runs over the same images until N seconds have passed (a soak:
 * memory must stay flat from run to run). `--log-dir` keeps every process's log (workers, enqueue,
 * dashboard) for a post-mortem.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { startS3rver, type LocalService } from '../src/dev/local-services.js';
import { parseIntInRange, parseNumberInRange } from '../src/shared/config.js';
import { S3ObjectStore } from '../src/shared/storage/s3-store.js';
import { CHAOS_DEFAULTS, runChaos, type ChaosReport } from '../test/integration/chaos/harness.js';

const MiB = 1024 * 1024;

const { values: flags } = parseArgs({
  options: {
    images: { type: 'string', default: String(CHAOS_DEFAULTS.images) },
    'duration-s': { type: 'string', default: String(CHAOS_DEFAULTS.durationMs / 1000) },
    seed: { type: 'string', default: String(CHAOS_DEFAULTS.seed) },
    workers: { type: 'string', default: String(CHAOS_DEFAULTS.workers) },
    'kill-interval-ms': { type: 'string', default: String(CHAOS_DEFAULTS.killIntervalMs) },
    's3-fault-rate': { type: 'string', default: String(CHAOS_DEFAULTS.s3FaultRate) },
    'rss-bound-mib': { type: 'string', default: String(CHAOS_DEFAULTS.workerRssBoundBytes / MiB) },
    'no-hostile': { type: 'boolean', default: false },
    'no-large': { type: 'boolean', default: false },
    'log-dir': { type: 'string' },
    json: { type: 'boolean', default: false },
  },
  strict: true,
});

async function main(): Promise<number> {
  const config = {
    images: parseIntInRange('--images', flags.images, 0, 1_000_000),
    durationMs: parseIntInRange('--duration-s', flags['duration-s'], 0, 86_400) * 1000,
    seed: parseIntInRange('--seed', flags.seed, 0, 2 ** 31),
    workers: parseIntInRange('--workers', flags.workers, 1, 32),
    killIntervalMs: parseIntInRange('--kill-interval-ms', flags['kill-interval-ms'], 100, 3_600_000),
    s3FaultRate: parseNumberInRange('--s3-fault-rate', flags['s3-fault-rate'], 0, 0.5),
    workerRssBoundBytes: parseIntInRange('--rss-bound-mib', flags['rss-bound-mib'], 64, 1_000_000) * MiB,
    hostile: !flags['no-hostile'],
    large: !flags['no-large'],
    logDir: flags['log-dir'],
  };
  const stops: LocalService[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'gca-chaos-s3-'));
  try {
    const external = process.env.AWS_ENDPOINT_URL_S3;
    let s3Endpoint = external;
    if (s3Endpoint === undefined) {
      const s3rver = await startS3rver(dir);
      stops.push(s3rver);
      s3Endpoint = s3rver.url;
    }
    // s3rver checks signatures against its fixed development credentials.
    const s3Credentials = external ? undefined : { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };
    const store = S3ObjectStore.fromConfig({ endpoint: s3Endpoint, region: process.env.AWS_REGION ?? 'us-east-1', forcePathStyle: true, maxAttempts: 5, credentials: s3Credentials });
    const bucket = `chaos-${config.seed}-${Date.now().toString(36)}`;
    await store.createBucket(bucket);
    const report = await runChaos(config, { s3Endpoint, s3Credentials: s3Credentials ?? credentialsFromEnv(), store, bucket }, (line) => process.stderr.write(`[chaos] ${line}\n`));
    store.destroy();
    process.stdout.write(flags.json ? `${JSON.stringify(report, null, 2)}\n` : summarize(report));
    return report.problems.length === 0 ? 0 : 1;
  } finally {
    for (const s of stops) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function credentialsFromEnv(): { accessKeyId: string; secretAccessKey: string } | undefined {
  const { AWS_ACCESS_KEY_ID: accessKeyId, AWS_SECRET_ACCESS_KEY: secretAccessKey } = process.env;
  return accessKeyId && secretAccessKey ? { accessKeyId, secretAccessKey } : undefined;
}

function summarize(r: ChaosReport): string {
  const mib = (b: number): string => `${(b / MiB).toFixed(0)} MiB`;
  const lines = [
    `chaos: ${r.images} images x ${r.runs.length} run(s) in ${r.seconds.toFixed(1)} s on ${cpus().length} cores (load ${loadavg()[0].toFixed(1)}), seed ${r.config.seed}`,
    ...r.runs.map((run) => `  ${run.runId}: ${run.ok} ok, ${run.failed} failed, ${run.seconds.toFixed(1)} s`),
    `  workers: ${r.config.workers}, ${r.workerKills} SIGKILLed, ${r.workerStarts} started; Redis restarts: ${r.redisRestarts}`,
    `  S3: ${r.s3.forwarded} requests forwarded, ${r.s3.injected} faults injected ${JSON.stringify(r.s3.byKind)}`,
    `  dashboard: ${r.dashboard.requests} requests, ${r.dashboard.ok} ok, ${r.dashboard.redisDown} 503 while Redis was down, ${r.dashboard.bad.length} bad, slowest ${r.dashboard.slowestMs} ms`,
    `  RSS: worker peak ${mib(r.rss.peakWorkerBytes)} (bound ${mib(r.config.workerRssBoundBytes)}), dashboard peak ${mib(r.rss.peakDashboardBytes)}, ${r.rss.samples} samples`,
    `  processes started: ${r.processes}`,
    r.problems.length === 0 ? 'PASS: every invariant held' : `FAIL: ${r.problems.length} problem(s):\n${r.problems.map((p) => `  - ${p}`).join('\n')}`,
  ];
  return `${lines.join('\n')}\n`;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`chaos: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(2);
  },
);
