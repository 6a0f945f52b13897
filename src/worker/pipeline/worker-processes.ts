/**
 * `gradcam-audit worker --processes N`: one command that runs N worker processes on one machine
 * (one GPU), each a complete worker (its own event loop, engine session, S3 and Redis connections),
 * and supervises them.
 *
 * Why processes: everything outside the engine starts on a process's one JavaScript thread (S3
 * requests, BullMQ, the overlay pass, sharp's job starts). At about 12 ms of that thread per
 * 320x240 image, one process feeds at most ~85 img/s whatever the cores, far below what one GPU
 * computes (docs/operations.md, "Sizing"). A Kubernetes pod gets its GPU whole, so the processes
 * that share it must run inside the pod: this supervisor is that.
 *
 * Each child runs the same command line with `GRADCAM_AUDIT_PROCESS_INDEX`/`_COUNT` set, which
 * gives it its worker id (`<id>-<index>`), its share of the cores (engine threads, libuv
 * threadpool) and its share of the GPU's free memory for `--batch-size auto`. The supervisor serves
 * `--metrics-port`: the children's metrics aggregated (metrics.ts, `groupMetrics`). A child that exits unexpectedly is started again after a backoff; a crash
 * loop, or a child that fails on its configuration (exit code 2: every child would), stops them all
 * and exits non-zero, so the orchestrator sees it. SIGTERM/SIGINT go to every child, which drain as
 * a single worker does; the supervisor exits once they all have. Should the supervisor die without
 * that (SIGKILL), each child sees its IPC channel close and drains by itself (src/cli.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Logger } from '../../shared/logger.js';
import { parseIntInRange } from '../../shared/config.js';
import { ConfigError } from '../../shared/errors.js';
import { usableCores } from '../../shared/cores.js';
import { groupMetrics, startMetricsServer, type MetricsServer } from './metrics.js';

/** Environment a child runs with (and how a process knows it is one). */
export const PROCESS_ENV = Object.freeze({
  index: 'GRADCAM_AUDIT_PROCESS_INDEX',
  count: 'GRADCAM_AUDIT_PROCESS_COUNT',
  /** `--processes` from the environment (the GPU images set `auto`). */
  processes: 'GRADCAM_AUDIT_PROCESSES',
});

export const MAX_PROCESSES = 64;

/**
 * `--processes auto`: on a machine with an NVIDIA GPU, one process per two cores beyond the first
 * (a process at full feed keeps its event loop busy and about half a core more of libuv and V8
 * threads: docs/benchmarks.md, "GPU feeding"), at most 16; without a GPU, 1 (ONNX Runtime's
 * threads already use every core, and a second copy of the model would only split them).
 */
export function autoProcesses(cores: number, gpus: number): number {
  if (gpus === 0) return 1;
  return Math.min(16, Math.max(1, Math.floor((cores - 1) / 2)));
}

/** Parse `--processes` (`auto` or 1..64); `auto` needs the machine's cores and GPUs. */
export async function parseProcesses(raw: string | undefined, machine: () => Promise<{ cores: number; gpus: number }>): Promise<number> {
  const value = raw?.trim();
  if (value === undefined || value === '') return 1;
  if (value === 'auto') {
    const { cores, gpus } = await machine();
    return autoProcesses(cores, gpus);
  }
  return parseIntInRange('--processes', value, 1, MAX_PROCESSES);
}

/** This process's place in a `--processes` group, from its environment; null when it runs alone. */
export interface ProcessSlot {
  index: number;
  count: number;
}

export function processSlot(env: Record<string, string | undefined> = process.env): ProcessSlot | null {
  const index = env[PROCESS_ENV.index];
  const count = env[PROCESS_ENV.count];
  if (index === undefined || count === undefined) return null;
  const slot = { index: Number(index), count: Number(count) };
  if (!(Number.isInteger(slot.count) && slot.count >= 1 && slot.count <= MAX_PROCESSES && Number.isInteger(slot.index) && slot.index >= 0 && slot.index < slot.count)) {
    throw new ConfigError(PROCESS_ENV.index, `expected ${PROCESS_ENV.index} in 0..${PROCESS_ENV.count}-1 and ${PROCESS_ENV.count} in 1..${MAX_PROCESSES}, got ${index} and ${count}`);
  }
  return slot;
}

/** The cores this process may use: the machine's, split evenly among a group's processes. */
export function processCores(slot: ProcessSlot | null = processSlot(), cores = usableCores()): number {
  return Math.max(1, Math.floor(cores / (slot?.count ?? 1)));
}

/** A child's worker id: `<id>-<index>` (the default id, `<host>-<pid>`, is unique already). */
export function slottedWorkerId(slot: ProcessSlot | null, workerId: string | undefined): string | undefined {
  return slot && workerId !== undefined ? `${workerId}-${slot.index}` : workerId;
}

export interface SupervisorOptions {
  processes: number;
  /** The command each child runs: `[node, ...execArgv, cli, ...args]` of this process by default. */
  command?: { file: string; args: string[] };
  env?: NodeJS.ProcessEnv;
  /** How long children may take to drain after SIGTERM before they are killed (`--drain-timeout-ms` + release). */
  stopGraceMs: number;
  /** Restart backoff: first delay, doubled per consecutive crash of a slot, up to `maxMs`. */
  restart?: { firstMs: number; maxMs: number };
  /** More unexpected exits than this within `crashWindowMs` stop the group. */
  maxCrashes?: number;
  crashWindowMs?: number;
  logger: Logger;
  /** Serve the group's metrics (every child's, aggregated) here; none: no metrics server. */
  metrics?: { host: string; port: number };
  /** Stops the group as SIGTERM does. */
  stop?: AbortSignal;
  /** Stop on this process's SIGTERM/SIGINT. Default true (false where the host owns its signals). */
  handleSignals?: boolean;
}

export const SUPERVISOR_DEFAULTS = Object.freeze({ restart: { firstMs: 1_000, maxMs: 30_000 }, maxCrashes: 5, crashWindowMs: 60_000 });

/** Exit code a child uses for usage and configuration errors (src/cli-program.ts). */
const EXIT_USAGE = 2;

/**
 * Run `processes` children until SIGTERM/SIGINT (or a crash loop); resolves to the exit code for
 * this process: 0 when every child drained cleanly.
 */
export async function superviseWorkers(options: SupervisorOptions): Promise<number> {
  const { processes, logger } = options;
  const command = options.command ?? { file: process.execPath, args: [...process.execArgv, process.argv[1] as string, ...process.argv.slice(2)] };
  const restart = options.restart ?? SUPERVISOR_DEFAULTS.restart;
  const maxCrashes = options.maxCrashes ?? SUPERVISOR_DEFAULTS.maxCrashes;
  const crashWindowMs = options.crashWindowMs ?? SUPERVISOR_DEFAULTS.crashWindowMs;
  const baseEnv = options.env ?? process.env;
  const cores = usableCores();

  const children: Array<ChildProcess | null> = new Array<ChildProcess | null>(processes).fill(null);
  const consecutive = new Array<number>(processes).fill(0);
  const restartTimers = new Set<NodeJS.Timeout>();
  const crashes: number[] = [];
  let stopping = false;
  let exitCode = 0;
  let settle: (code: number) => void = () => undefined;
  const done = new Promise<number>((resolve) => (settle = resolve));

  const running = (): ChildProcess[] => children.filter((c): c is ChildProcess => c !== null);
  const finishIfIdle = (): void => {
    if (stopping && running().length === 0) settle(exitCode);
  };

  const stopAll = (reason: string, code: number): void => {
    exitCode = Math.max(exitCode, code);
    if (stopping) return;
    stopping = true;
    for (const t of restartTimers) clearTimeout(t);
    restartTimers.clear();
    logger.info({ reason, processes: running().length }, 'stopping the worker processes');
    const live = running();
    for (const c of live) c.kill('SIGTERM');
    if (live.length > 0) {
      // A child that has not drained in its grace period is killed; its jobs go back to the queue
      // as stalled, as any dead worker's do.
      setTimeout(() => {
        for (const c of running()) {
          logger.warn({ pid: c.pid }, 'worker process did not stop within the grace period; killing it');
          c.kill('SIGKILL');
        }
      }, options.stopGraceMs).unref();
    }
    finishIfIdle();
  };

  const start = (index: number): void => {
    const env: NodeJS.ProcessEnv = {
      ...baseEnv,
      [PROCESS_ENV.index]: String(index),
      // The child's command (bin/threadpool.js) sizes its libuv threadpool to its share from this.
      [PROCESS_ENV.count]: String(processes),
    };
    const child = spawn(command.file, command.args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env });
    children[index] = child;
    logger.info({ index, pid: child.pid }, `worker process ${index + 1} of ${processes} started`);
    child.once('error', (err) => logger.error({ index, err: err.message }, 'could not start a worker process'));
    child.once('exit', (code, signal) => {
      children[index] = null;
      if (stopping) {
        // Ended by the SIGTERM the stop sent, before it had a handler for it: a process still
        // starting (loading its model), which holds no job yet. A clean stop; SIGKILL after the
        // grace period, or any other exit, is not.
        const stoppedWhileStarting = code === null && signal === 'SIGTERM';
        if (code !== 0 && !stoppedWhileStarting) exitCode = Math.max(exitCode, 1);
        logger.info({ index, code, signal }, `worker process ${index + 1} of ${processes} stopped`);
        finishIfIdle();
        return;
      }
      logger.error({ index, code, signal }, `worker process ${index + 1} of ${processes} exited unexpectedly`);
      if (code === EXIT_USAGE) {
        stopAll('a worker process refused its configuration (exit code 2); every process would', EXIT_USAGE);
        return;
      }
      const now = Date.now();
      crashes.push(now);
      while (crashes.length > 0 && (crashes[0] as number) < now - crashWindowMs) crashes.shift();
      if (crashes.length > maxCrashes) {
        stopAll(`${crashes.length} unexpected exits within ${Math.round(crashWindowMs / 1000)} s (a crash loop)`, 1);
        return;
      }
      const delay = Math.min(restart.maxMs, restart.firstMs * 2 ** consecutive[index]!);
      consecutive[index]!++;
      logger.warn({ index, delayMs: delay }, `starting worker process ${index + 1} again in ${delay} ms`);
      const timer = setTimeout(() => {
        restartTimers.delete(timer);
        if (!stopping) start(index);
      }, delay);
      restartTimers.add(timer);
    });
    // A child that has served for a while is healthy again: its next crash starts the backoff over.
    const healthy = setTimeout(() => (consecutive[index] = 0), crashWindowMs);
    healthy.unref();
    child.once('exit', () => clearTimeout(healthy));
  };

  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: the worker processes are already draining (bounded by --drain-timeout-ms)');
      return;
    }
    stopAll(`received ${signal}`, 0);
  };
  const handleSignals = options.handleSignals ?? true;
  if (handleSignals) {
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  }
  const onStop = (): void => onSignal('SIGTERM');
  options.stop?.addEventListener('abort', onStop, { once: true });
  logger.info({ processes, cores }, `starting ${processes} worker processes`);
  let metricsServer: MetricsServer | null = null;
  try {
    if (options.metrics) {
      metricsServer = await startMetricsServer(groupMetrics(running), options.metrics.host, options.metrics.port);
      logger.info({ url: `http://${metricsServer.host}:${metricsServer.port}/metrics`, processes }, 'metrics server listening');
    }
    for (let i = 0; i < processes; i++) start(i);
    if (options.stop?.aborted) onStop();
    return await done;
  } finally {
    options.stop?.removeEventListener('abort', onStop);
    await metricsServer?.close();
    if (handleSignals) {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    }
  }
}
