/**
 * The chaos run: real `gradcam-audit` processes (workers, enqueue, dashboard, started through
 * bin/gradcam-audit.js as users start them) audit a bucket of small images mixed with hostile
 * files and a 100-megapixel image while everything around them misbehaves:
 *
 *   - one worker at a time is SIGKILLed (the first at its first batch, then every `killIntervalMs`)
 *     and a new one started in its place;
 *   - the Redis server (owned by the harness, append-only file, fsync always) is crashed and
 *     restarted once, mid-run;
 *   - S3 answers 500/503 and drops connections on a share of the requests (the fault proxy);
 *   - the dashboard's JSON API is polled throughout;
 *   - the workers' resident memory is sampled from /proc throughout.
 *
 * It then checks what must hold whatever happened (`problems` lists each violation): every key
 * exactly once in manifest.jsonl with the expected outcome, summary.json counts equal to the
 * manifest, every ok image's outputs present, failures permanent at the first attempt, the
 * dashboard healthy, worker RSS under the bound, clean SIGTERM exits and no process left behind.
 * Framework-free: the vitest test and `npm run chaos` both call `runChaos`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { Queue } from 'bullmq';
import { bullPrefix, jobIdFor } from '../../../src/shared/queue/contract.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { MANIFEST_FILE, SUMMARY_FILE } from '../../../src/shared/run-finalizer.js';
import type { RunSummary } from '../../../src/shared/manifest.js';
import { Semaphore } from '../../../src/shared/semaphore.js';
import { FOREIGN_JOB_MESSAGE } from '../../../src/worker/pipeline/verify-job.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { parseS3Uri } from '../../../src/shared/storage/uri.js';
import { Cluster, type CliProcess } from '../../helpers/cluster.js';
import { startFaultProxy, type FaultRule } from '../../helpers/fault-proxy.js';
import { alive, descendants } from '../../helpers/processes.js';
import { envFor } from '../../helpers/services.js';
import { enqueueCli, readRunManifest, startCliWorker, startRestartableRedis, waitForCompletedRun, writeTinyModel } from '../pipeline/faults-support.js';
import { pollDashboard, type DashboardPollStats } from './dashboard-poller.js';
import { chaosImages, uploadImages, type ChaosImage } from './images.js';
import { startRssSampler, type RssPeak } from './rss-sampler.js';

const MiB = 1024 * 1024;

export interface ChaosConfig {
  /** Small valid images per run. */
  images: number;
  /** Keep starting new runs over the same images until this much time has passed (at least one run). */
  durationMs: number;
  /** Seeds the images and the fault pattern. */
  seed: number;
  workers: number;
  /** Pause between a replacement worker being ready and the next SIGKILL. */
  killIntervalMs: number;
  /** Crash and restart Redis once, when this share of the first run has results (0 disables). */
  redisRestartAt: number;
  redisDownMs: number;
  /** Probability of a 503 on a GET, of a 500 on a PUT/POST, and of a reset on any request. */
  s3FaultRate: number;
  hostile: boolean;
  large: boolean;
  /** Side of the large square PNG: 10,000 (100 MP, the decode limit) by default. */
  largeSide: number;
  /** Every worker's peak RSS must stay below this (documented in docs/operations.md). */
  workerRssBoundBytes: number;
  /** Worker flags: batching, and short locks so a killed worker's jobs come back in seconds. */
  workerArgs: string[];
  drainTimeoutMs: number;
  /** Longest time the whole chaos run may take, checks included; past it everything is killed. */
  timeoutMs: number;
  dashboardPollMs: number;
  /** Write each process's log here (`<name>.log`) when the run ends; default: not kept. */
  logDir?: string;
}

export const CHAOS_DEFAULTS: Readonly<ChaosConfig> = Object.freeze({
  images: 1_000,
  durationMs: 0,
  seed: 1,
  workers: 3,
  killIntervalMs: 3_000,
  redisRestartAt: 0.3,
  redisDownMs: 1_500,
  s3FaultRate: 0.04,
  hostile: true,
  large: true,
  largeSide: 10_000,
  workerRssBoundBytes: 1_536 * MiB,
  // A job may be in the hands of several killed workers in a row here, which is no fault of the
  // job's: it must not fail for that (production's default of 2 stops images that crash workers).
  workerArgs: ['--batch-size', '8', '--prefetch', '8', '--max-batch-delay-ms', '50', '--lock-duration-ms', '8000', '--stalled-interval-ms', '1000', '--max-stalled-count', '50'],
  drainTimeoutMs: 5_000,
  timeoutMs: 1_800_000,
  dashboardPollMs: 250,
});

export interface ChaosServices {
  s3Endpoint: string;
  s3Credentials?: { accessKeyId: string; secretAccessKey: string };
  /** A store talking to S3 directly (not through the fault proxy), for fixtures and checks. */
  store: ObjectStore;
  bucket: string;
}

export interface ChaosRun {
  runId: string;
  output: string;
  seconds: number;
  ok: number;
  failed: number;
}

export interface ChaosReport {
  config: ChaosConfig;
  seconds: number;
  runs: ChaosRun[];
  images: number;
  workerKills: number;
  workerStarts: number;
  redisRestarts: number;
  s3: { forwarded: number; injected: number; byKind: Record<string, number> };
  dashboard: DashboardPollStats;
  rss: { samples: number; peakWorkerBytes: number; peakDashboardBytes: number; peaks: RssPeak[] };
  /** Processes started by the run (workers, enqueues, dashboard, Redis). */
  processes: number;
  /** Every violated invariant, as a sentence; empty when the run held. */
  problems: string[];
}

export type ChaosLog = (line: string) => void;

export async function runChaos(partial: Partial<ChaosConfig>, services: ChaosServices, log: ChaosLog = () => undefined): Promise<ChaosReport> {
  const config: ChaosConfig = { ...CHAOS_DEFAULTS, ...partial };
  const problems: string[] = [];
  const started = Date.now();
  const elapsed = (): string => `${((Date.now() - started) / 1000).toFixed(1)} s`;

  const [server, model, proxy, images] = await Promise.all([
    startRestartableRedis(),
    writeTinyModel(),
    startFaultProxy(services.s3Endpoint, { seed: config.seed }),
    chaosImages({ samples: config.images, seed: config.seed, hostile: config.hostile, large: config.large ? config.largeSide : 0 }),
  ]);
  const keys = await uploadImages(services.store, services.bucket, 'in/', images);
  const expected = new Map(keys.map((k, i) => [k, images[i]] as const));
  log(`${elapsed()}: ${keys.length} images uploaded; Redis ${server.url}, S3 fault proxy ${proxy.url}`);

  const namespace = { prefix: 'chaos', queueName: 'chaos' };
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  redis.on('error', () => undefined); // the run restarts this server on purpose
  const runs = new RunStore(redis, namespace);
  const queue = new Queue(namespace.queueName, { connection: redis, prefix: bullPrefix(namespace) });
  queue.on('error', () => undefined);

  const direct = envFor({ redisUrl: server.url, s3Endpoint: services.s3Endpoint, s3Credentials: services.s3Credentials }, {
    GRADCAM_AUDIT_PREFIX: namespace.prefix,
    GRADCAM_AUDIT_QUEUE: namespace.queueName,
    LOG_LEVEL: 'info',
  });
  // Workers and enqueue reach S3 only through the proxy; the dashboard directly (its answers are
  // under test, not its S3 retries).
  const faulty = { ...direct, AWS_ENDPOINT_URL_S3: proxy.url, AWS_MAX_ATTEMPTS: '5' };
  const cluster = new Cluster({ baseEnv: direct });
  const rss = startRssSampler(200);
  const watch = (p: CliProcess): CliProcess => {
    if (p.pid !== undefined) rss.watch(p.name, p.pid);
    return p;
  };
  const serverPids = new Set<number>();
  const noteServerPid = (): void => void (server.pid !== undefined && serverPids.add(server.pid));
  noteServerPid();

  // Chaos actions never overlap: a worker is not restarted while Redis is down, and vice versa.
  const chaos = new Semaphore(1);
  let redisDownSince: number | null = null;
  let redisBackAt = 0;
  let redisRestarts = 0;
  const redisDown = (): boolean => redisDownSince !== null || Date.now() - redisBackAt < 15_000;

  const workerArgs = [...config.workerArgs, '--drain-timeout-ms', String(config.drainTimeoutMs)];
  const launchWorker = async (id: string): Promise<CliProcess> => {
    return watch(await startCliWorker(cluster, { id, modelJson: model.modelJson, env: faulty, args: workerArgs }));
  };

  let dashboardUrl = '';
  const dashboard = watch(cluster.start('dashboard', ['dashboard', '--port', '0'], direct));
  const slots: CliProcess[] = [];
  const runIds: string[] = [];
  let workerKills = 0;
  let workerStarts = 0;
  // Results recorded so far (all runs), and at the last kill: a kill waits for progress since the
  // previous one, so on a slow machine a long job (the 100 MP image) is not killed forever.
  let results = 0;
  let resultsAtLastKill = -1;
  let stopKilling = false;
  let wakeKiller: (() => void) | null = null;
  let killer: Promise<void> = Promise.resolve();
  const poller = { current: null as ReturnType<typeof pollDashboard> | null };
  const report: ChaosRun[] = [];

  let cancelled = false;
  const chaosRun = async (): Promise<void> => {
    [dashboardUrl] = await Promise.all([
      dashboardAddress(dashboard, 90_000),
      ...Array.from({ length: config.workers }, async (_, i) => {
        slots[i] = await launchWorker(`chaos-${i}.0`);
        workerStarts += 1;
      }),
    ]);
    log(`${elapsed()}: ${config.workers} workers ready, dashboard at ${dashboardUrl}`);
    poller.current = pollDashboard({ baseUrl: dashboardUrl, runIds: () => runIds, redisDown, intervalMs: config.dashboardPollMs, timeoutMs: 15_000 });
    proxy.setRules(faultRules(config.s3FaultRate));

    const killLoop = async (): Promise<void> => {
      for (let generation = 1; ; generation++) {
        const woken = new Promise<void>((resolve) => (wakeKiller = resolve));
        if (generation === 1) {
          // The first victim dies at its first batch, jobs in hand: however fast the machine, the
          // run cannot end before their locks expire and another worker takes them over.
          const victim = slots[generation % config.workers];
          await Promise.race([victim.waitForLog((l) => l.msg === 'batch started', config.timeoutMs).catch(() => undefined), woken]);
        } else {
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([new Promise<void>((resolve) => (timer = setTimeout(resolve, config.killIntervalMs))), woken]);
          clearTimeout(timer);
        }
        if (stopKilling) return;
        if (generation > 1 && results === resultsAtLastKill) continue;
        resultsAtLastKill = results;
        await chaos.run(async () => {
          const slot = generation % config.workers;
          const victim = slots[slot];
          if (victim.pid !== undefined) rss.sample(victim.pid);
          victim.kill('SIGKILL');
          await victim.exited;
          workerKills += 1;
          slots[slot] = await launchWorker(`chaos-${slot}.${generation}`);
          workerStarts += 1;
        });
      }
    };

    for (let round = 0; !cancelled && (round === 0 || Date.now() - started < config.durationMs); round++) {
      const runId = `chaos-${config.seed}-${round}`;
      const output = `s3://${services.bucket}/out-${round}/`;
      const roundStarted = Date.now();
      const enqueued = await enqueueCli(cluster, `s3://${services.bucket}/in/`, faulty, ['--output', output, '--include', '*', '--run-id', runId]);
      runIds.push(runId); // the dashboard knows the run from now on
      if (enqueued.enqueue.counts.added !== keys.length) problems.push(`${runId}: enqueue added ${enqueued.enqueue.counts.added} of ${keys.length} keys`);
      if (round === 0) killer = killLoop();

      let restarted = round > 0 || config.redisRestartAt <= 0;
      const resultsBefore = results;
      const run = await waitForCompletedRun(runs, runId, config.timeoutMs, async (r) => {
        if (cancelled) throw new Error('cancelled');
        results = resultsBefore + r.done + r.failed;
        // Fail fast: a worker that lost a job's lock will not make the run end well.
        const logged = workerLogProblems(cluster.processes.filter((p) => p.name.startsWith('chaos-')));
        if (logged.length) throw new Error(logged.join('\n'));
        if (restarted || r.done + r.failed < config.redisRestartAt * r.total) return;
        restarted = true;
        await chaos.run(async () => {
          log(`${elapsed()}: crashing Redis at ${r.done + r.failed}/${r.total} results`);
          redisDownSince = Date.now();
          await server.restart(config.redisDownMs);
          noteServerPid();
          redisDownSince = null;
          redisBackAt = Date.now();
          redisRestarts += 1;
        });
      });
      const seconds = (Date.now() - roundStarted) / 1000;
      report.push({ runId, output, seconds, ok: run.done, failed: run.failed });
      log(`${elapsed()}: ${runId} completed in ${seconds.toFixed(1)} s (${run.done} ok, ${run.failed} failed); ${workerKills} kills so far`);
      problems.push(...(await checkRun(services.store, queue, (await runs.requireRun(runId)).epoch, runId, output, expected)));
      problems.push(...(await checkThumbnails(dashboardUrl, runId, images, keys)));
    }
  };
  // One deadline for the whole run, so a caller's own timeout (vitest's) never fires first and
  // leaves processes behind: past it, everything is killed and the run reported as failed.
  let deadlineTimer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    deadlineTimer = setTimeout(() => reject(new Error(`the chaos run did not end within ${config.timeoutMs} ms`)), Math.max(0, config.timeoutMs - (Date.now() - started)));
  });
  try {
    await Promise.race([chaosRun(), deadline]);
  } catch (err) {
    problems.push(`the run did not complete: ${(err as Error).message}`);
    cancelled = true;
    for (const p of cluster.processes) p.kill('SIGKILL');
  } finally {
    clearTimeout(deadlineTimer);
    cancelled = true;
    stopKilling = true;
    (wakeKiller as (() => void) | null)?.();
    await killer.catch((err: Error) => problems.push(`restarting a killed worker failed: ${err.message}`));
    await poller.current?.stop();
    rss.stop();
  }

  // Orderly shutdown: each worker must drain and exit 0 within its drain timeout (plus start-up of
  // the exit path), the dashboard exit 0 on SIGTERM; then every process of the run must be gone.
  const spawned = [...cluster.processes];
  problems.push(...workerLogProblems(spawned.filter((p) => p.name.startsWith('chaos-'))));
  if (config.logDir !== undefined) await writeLogs(config.logDir, spawned);
  const tree = spawned.flatMap((p) => (p.pid !== undefined && alive(p.pid) ? descendants(p.pid) : []));
  problems.push(...(await stopGracefully([...slots, dashboard], config.drainTimeoutMs + 10_000)));
  await cluster.stopAll();
  await queue.close().catch(() => undefined);
  redis.disconnect();
  await server.stop();
  await proxy.close();
  await model.remove();
  const pids = [...spawned.map((p) => p.pid), ...tree.map((p) => p.pid), ...serverPids].filter((pid): pid is number => pid !== undefined);
  const leftovers = await leftAlive(pids, 5_000);
  if (leftovers.length) problems.push(`processes left behind: ${leftovers.join(', ')}`);

  const poll = poller.current?.stats ?? { requests: 0, ok: 0, redisDown: 0, bad: [], slowestMs: 0 };
  if (poll.bad.length) problems.push(`dashboard answered badly ${poll.bad.length} times of ${poll.requests}, e.g. ${poll.bad.slice(0, 3).join(' | ')}`);
  if (poll.ok === 0) problems.push('the dashboard was never polled successfully');
  const peaks = rss.peaks();
  const workerPeaks = peaks.filter((p) => p.name.startsWith('chaos-'));
  const peakWorkerBytes = Math.max(0, ...workerPeaks.map((p) => p.peakRssBytes));
  for (const p of workerPeaks.filter((w) => w.peakRssBytes > config.workerRssBoundBytes)) {
    problems.push(`worker ${p.name} peaked at ${(p.peakRssBytes / MiB).toFixed(0)} MiB RSS, above the bound of ${(config.workerRssBoundBytes / MiB).toFixed(0)} MiB`);
  }
  if (redisRestarts === 0 && config.redisRestartAt > 0) problems.push('Redis was never restarted (the run finished before the restart point)');
  if (workerKills === 0 && config.workers > 0) problems.push('no worker was killed (the run finished before the first kill)');

  return {
    config,
    seconds: (Date.now() - started) / 1000,
    runs: report,
    images: keys.length,
    workerKills,
    workerStarts,
    redisRestarts,
    s3: { forwarded: proxy.stats.forwarded, injected: proxy.stats.injected, byKind: { ...proxy.stats.byKind } },
    dashboard: poll,
    rss: { samples: rss.samples(), peakWorkerBytes, peakDashboardBytes: peaks.find((p) => p.name === 'dashboard')?.peakRssBytes ?? 0, peaks },
    processes: spawned.length + serverPids.size,
    problems,
  };
}

/** S3 faults of every kind the SDK must retry: 503 SlowDown on reads, 500 on writes, resets anywhere. */
function faultRules(rate: number): FaultRule[] {
  if (rate <= 0) return [];
  return [
    { kind: 'reset', probability: rate / 2 },
    { kind: 'status503', probability: rate, match: (r) => r.method === 'GET' || r.method === 'HEAD' },
    { kind: 'status500', probability: rate, match: (r) => r.method === 'PUT' || r.method === 'POST' },
  ];
}

/** The dashboard prints its address on stderr once it listens. */
async function dashboardAddress(p: CliProcess, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = /gradcam-audit dashboard: (http:\/\/\S+)/.exec(p.stderr);
    if (m) return m[1];
    if (p.child.exitCode !== null) throw new Error(`dashboard exited with ${p.child.exitCode}: ${p.stderr.slice(-2000)}`);
    if (Date.now() > deadline) throw new Error(`dashboard did not start within ${timeoutMs} ms: ${p.stderr.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * What must hold for one finished run: every key exactly once with the outcome its image calls
 * for, summary.json's counts equal to the manifest's, each ok line's outputs stored, and each
 * failure permanent at its first attempt (a bad file is never retried as if S3 had failed).
 */
async function checkRun(store: ObjectStore, queue: Queue, epoch: string, runId: string, output: string, expected: ReadonlyMap<string, ChaosImage>): Promise<string[]> {
  const problems: string[] = [];
  const lines = await readRunManifest(store, output);
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l.key, (counts.get(l.key) ?? 0) + 1);
  const repeated = [...counts].filter(([, n]) => n > 1).map(([k, n]) => `${k} x${n}`);
  if (repeated.length) problems.push(`${runId}: keys more than once in ${MANIFEST_FILE}: ${repeated.slice(0, 10).join(', ')}`);
  const missing = [...expected.keys()].filter((k) => !counts.has(k));
  if (missing.length) problems.push(`${runId}: ${missing.length} keys missing from ${MANIFEST_FILE}, e.g. ${missing.slice(0, 10).join(', ')}`);
  const strangers = [...counts.keys()].filter((k) => !expected.has(k));
  if (strangers.length) problems.push(`${runId}: keys in ${MANIFEST_FILE} that were never uploaded: ${strangers.slice(0, 10).join(', ')}`);

  const out = parseS3Uri(output);
  const summary = JSON.parse((await store.get(out.bucket, `${out.key}${SUMMARY_FILE}`)).body.toString('utf8')) as RunSummary;
  const ok = lines.filter((l) => l.status === 'ok').length;
  const tally = { total: lines.length, ok, failed: lines.length - ok };
  if (JSON.stringify(summary.counts) !== JSON.stringify(tally)) problems.push(`${runId}: ${SUMMARY_FILE} counts ${JSON.stringify(summary.counts)}, manifest ${JSON.stringify(tally)}`);

  const stored = new Set<string>();
  for await (const page of store.listPages(out.bucket, out.key)) for (const o of page) stored.add(`s3://${out.bucket}/${o.key}`);
  for (const line of lines) {
    const image = expected.get(line.key);
    if (!image) continue;
    if (line.status === 'ok') {
      const uris = line.outputs ? [line.outputs.overlay, line.outputs.heatmap, line.outputs.prediction] : [];
      if (uris.length !== 3 || uris.some((u) => !stored.has(u))) problems.push(`${runId}: ${line.key} is ok but its outputs are not all stored: ${JSON.stringify(line.outputs)}`);
      if (image.expect !== 'ok') problems.push(`${runId}: ${line.key} should fail with ${image.expect} but is ok`);
      continue;
    }
    const permanentFailureAllowed = image.expect !== 'ok' || image.okOrPermanentFailure === true;
    if (!permanentFailureAllowed) {
      problems.push(`${runId}: ${line.key} should be ok but failed: ${line.error ?? ''}`);
      continue;
    }
    if (image.expect !== 'ok' && !(line.error ?? '').startsWith(`${image.expect}: `)) problems.push(`${runId}: ${line.key} should fail with ${image.expect}, says: ${line.error ?? ''}`);
    const job = await queue.getJob(jobIdFor(runId, epoch, line.key));
    if (job && job.attemptsMade !== 1) problems.push(`${runId}: ${line.key} failed after ${job.attemptsMade} attempts (a permanent failure must not be retried): ${line.error ?? ''}`);
  }
  return problems;
}

/** The gallery's thumbnails of the extreme images answer (one pixel limit for worker and dashboard). */
async function checkThumbnails(baseUrl: string, runId: string, images: readonly ChaosImage[], keys: readonly string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const [i, image] of images.entries()) {
    if (image.kind !== 'large') continue;
    for (const of of ['original', 'overlay']) {
      const path = `/api/runs/${encodeURIComponent(runId)}/thumbnail?key=${encodeURIComponent(keys[i])}&of=${of}`;
      const res = await fetch(`${baseUrl}${path}`, { signal: AbortSignal.timeout(60_000) }).catch((err: Error) => err);
      if (res instanceof Error) problems.push(`${path}: ${res.message}`);
      else if (res.status !== 200 || res.headers.get('content-type') !== 'image/webp') problems.push(`${path}: ${res.status} ${(await res.text()).slice(0, 200)}`);
    }
  }
  return problems;
}

/**
 * Error lines in the workers' logs. Connection errors while Redis restarts are expected (the
 * workers reconnect); anything else at error level, a lost job lock above all (a worker whose
 * event loop was blocked past the lock duration, so another worker took its jobs), is a defect.
 * So is a job rejected as not its run's: the run adds only its own jobs (a stalled job offered
 * again after its killed worker recorded it once showed up here).
 */
function workerLogProblems(workers: readonly CliProcess[]): string[] {
  const expected = /ECONNREFUSED|ECONNRESET|EPIPE|Connection is closed|Socket closed unexpectedly/;
  const problems: string[] = [];
  for (const w of workers) {
    const errors = w.logs.filter((l) => (l.level ?? 0) >= 50 && !((l.level ?? 0) < 60 && expected.test(JSON.stringify(l.err ?? ''))));
    if (errors.length) problems.push(`worker ${w.name} logged ${errors.length} error(s), e.g. ${errors.slice(0, 3).map((l) => `${l.msg ?? ''} ${JSON.stringify(l.err ?? '')}`.slice(0, 300)).join(' | ')}`);
    const rejected = w.logs.filter((l) => l.msg === FOREIGN_JOB_MESSAGE);
    if (rejected.length) problems.push(`worker ${w.name} rejected ${rejected.length} of the run's own job(s) as foreign, e.g. ${rejected.slice(0, 3).map((l) => JSON.stringify(l.err ?? '').slice(0, 300)).join(' | ')}`);
  }
  return problems;
}

/** SIGTERM each process still running; each must exit 0 within `withinMs`. */
async function stopGracefully(processes: readonly CliProcess[], withinMs: number): Promise<string[]> {
  const problems: string[] = [];
  await Promise.all(
    processes.map(async (p) => {
      if (p.child.exitCode !== null || p.child.signalCode !== null) return;
      const t0 = Date.now();
      p.kill('SIGTERM');
      const result = await Promise.race([p.exited, new Promise<null>((r) => setTimeout(() => r(null), withinMs))]);
      if (result === null) problems.push(`${p.name} did not exit within ${withinMs} ms of SIGTERM; its last log lines:\n${p.stderr.slice(-3000)}`);
      else if (result.code !== 0) problems.push(`${p.name} exited with ${result.code ?? result.signal} on SIGTERM after ${Date.now() - t0} ms: ${p.stderr.slice(-500)}`);
    }),
  );
  return problems;
}

/** Each process's stderr (its JSON log) as `<dir>/<name>.log`, for a post-mortem. */
async function writeLogs(dir: string, processes: readonly CliProcess[]): Promise<void> {
  await mkdir(dir, { recursive: true });
  await Promise.all(processes.map((p, i) => writeFile(join(dir, `${String(i).padStart(3, '0')}-${p.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.log`), p.stderr)));
}

/** Pids still alive after `graceMs` (a process may need a moment to be reaped). */
async function leftAlive(pids: readonly number[], graceMs: number): Promise<number[]> {
  const deadline = Date.now() + graceMs;
  for (;;) {
    const left = pids.filter(alive);
    if (left.length === 0 || Date.now() > deadline) return left;
    await new Promise((r) => setTimeout(r, 100));
  }
}
