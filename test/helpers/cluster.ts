/**
 * Run real `gradcam-audit` CLI processes from tests: spawn with the test services' environment,
 * collect their JSON log lines, wait for a log event or exit, and kill them. Every process started
 * through a Cluster is killed by `stopAll()` (call it in afterEach).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { serviceEnv } from './services.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
/** The installed command: the compiled dist/ when fresh, else src/ through tsx (see the file). */
const BIN = fileURLToPath(new URL('../../bin/gradcam-audit.js', import.meta.url));
/**
 * The installed command, for tests that spawn the CLI themselves: `spawn(process.execPath, [CLI_BIN,
 * ...args])`. It starts 3-4x faster than `--import tsx src/cli.ts` when dist/ is fresh (CI builds it
 * in `npm ci`), and runs src/ itself when dist/ is stale, so a test never runs old code.
 */
export const CLI_BIN = BIN;

export interface ClusterOptions {
  /**
   * Environment under the per-process `env`. Default: the test services' (vitest's provided
   * context); give it to run a cluster outside vitest.
   */
  baseEnv?: Record<string, string>;
  /**
   * `bin` (default) runs bin/gradcam-audit.js, as users do: the compiled dist/ when it is fresh
   * (`npm ci` builds it), which starts 3-4x faster than src/ through tsx on a loaded machine (0.7 vs
   * 2.5 s for --version at load 13; more for a worker), else src/ through tsx. `src` always tsx.
   */
  entry?: 'src' | 'bin';
}

export interface LogLine {
  level?: number;
  msg?: string;
  [k: string]: unknown;
}

export class CliProcess {
  readonly logs: LogLine[] = [];
  stdout = '';
  stderr = '';
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly name: string, readonly child: ChildProcess) {
    this.exited = once(child, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
    child.stdout?.on('data', (d: Buffer) => (this.stdout += d.toString()));
    const rl = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    rl.on('line', (line) => {
      this.stderr = (this.stderr + line + '\n').slice(-200_000);
      if (!line.startsWith('{')) return;
      try {
        const entry = JSON.parse(line) as LogLine;
        this.logs.push(entry);
        this.waiters = this.waiters.filter((w) => {
          if (!w.pred(entry)) return true;
          w.resolve(entry);
          return false;
        });
      } catch {
        // not a JSON log line
      }
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Resolve with the first (past or future) log line matching `pred`. */
  waitForLog(pred: (l: LogLine) => boolean, timeoutMs = 60_000): Promise<LogLine> {
    const past = this.logs.find(pred);
    if (past) return Promise.resolve(past);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.name}: no matching log line within ${timeoutMs} ms; stderr tail:\n${this.stderr.slice(-3000)}`)), timeoutMs);
      this.waiters.push({
        pred,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void this.exited.then(({ code, signal }) => {
        clearTimeout(timer);
        reject(new Error(`${this.name} exited (code ${code}, signal ${signal}) before the expected log line; stderr tail:\n${this.stderr.slice(-3000)}`));
      });
    });
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

export class Cluster {
  private readonly procs: CliProcess[] = [];

  constructor(private readonly options: ClusterOptions = {}) {}

  /** Every process this cluster started (also those that have exited), oldest first. */
  get processes(): readonly CliProcess[] {
    return this.procs;
  }

  /** Spawn `gradcam-audit ARGS...` with the base env (default: the test services') plus `env`. */
  start(name: string, args: string[], env: Record<string, string> = {}): CliProcess {
    const entry = this.options.entry === 'src' ? ['--import', 'tsx', CLI] : [BIN];
    const child = spawn(process.execPath, [...entry, ...args], {
      cwd: REPO_ROOT,
      env: { ...process.env, LOG_LEVEL: 'debug', ...(this.options.baseEnv ?? serviceEnv()), ...env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const p = new CliProcess(name, child);
    this.procs.push(p);
    return p;
  }

  /** Run to completion and return the exit code and output. */
  async run(args: string[], env: Record<string, string> = {}, timeoutMs = 120_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    const p = this.start(`run ${args[0] ?? ''}`, args, env);
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    const { code } = await p.exited;
    clearTimeout(timer);
    return { code, stdout: p.stdout, stderr: p.stderr };
  }

  async stopAll(): Promise<void> {
    for (const p of this.procs) p.kill('SIGKILL');
    await Promise.all(this.procs.map((p) => p.exited));
    this.procs.length = 0;
  }
}
