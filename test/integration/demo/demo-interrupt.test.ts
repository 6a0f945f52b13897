/**
 * Ctrl-C on `npm run demo`: the terminal sends SIGINT to the whole foreground process group (npm,
 * its shell, the demo and everything they started in that group), so the test runs exactly
 * `npm run demo` in a process group of its own and signals the group. The demo must stop its
 * children in dependency order (worker, then dashboard, then S3 and Redis) within seconds, leave
 * no process behind, keep the worker's log free of connection errors, and end with status 130
 * (128 + SIGINT), as `npm run` reports it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../helpers/cluster.js';
import { alive, descendants } from '../../helpers/processes.js';

interface DemoProcess {
  child: ChildProcess;
  output: () => string;
  waitFor(pattern: RegExp, timeoutMs: number): Promise<void>;
}

function startDemo(dataDir: string, samples: string): DemoProcess {
  const env = { ...process.env };
  for (const k of ['REDIS_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY', 'CI']) delete env[k];
  // detached: its own process group, so the test can signal the group as a terminal does.
  const child = spawn('npm', ['run', '--silent', 'demo', '--', '--data-dir', dataDir, '--port', '0', '--samples', samples], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return {
    child,
    output: () => out,
    async waitFor(pattern, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(out)) {
        if (child.exitCode !== null) throw new Error(`demo exited with ${child.exitCode} before ${pattern}:\n${out}`);
        if (Date.now() > deadline) throw new Error(`demo did not print ${pattern} within ${timeoutMs} ms:\n${out}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}

/**
 * Ctrl-C: SIGINT to the demo's whole process group. Resolves to npm's exit status (128 + signal
 * when a signal ended it), the seconds until every process it started was gone, and any left.
 */
async function ctrlC(demo: DemoProcess): Promise<{ status: number; seconds: number; leftovers: Array<{ pid: number; command: string }> }> {
  const tree = descendants(demo.child.pid!);
  expect(tree.some((p) => p.command.includes('redis-server')), demo.output()).toBe(true);
  expect(tree.some((p) => /(cli\.[jt]s|gradcam-audit\.js) worker/.test(p.command)), demo.output()).toBe(true);
  const exited = once(demo.child, 'exit');
  const t0 = Date.now();
  process.kill(-demo.child.pid!, 'SIGINT');
  const [code, signal] = (await Promise.race([exited, new Promise((r) => setTimeout(() => r([null, 'timeout']), 60_000))])) as [number | null, NodeJS.Signals | 'timeout' | null];
  // npm may be gone before the demo has finished stopping: wait for every process of the tree.
  while (tree.some((p) => alive(p.pid)) && Date.now() - t0 < 60_000) await new Promise((r) => setTimeout(r, 50));
  const seconds = (Date.now() - t0) / 1000;
  const leftovers = tree.filter((p) => alive(p.pid));
  for (const p of [{ pid: demo.child.pid! }, ...leftovers]) if (alive(p.pid)) process.kill(p.pid, 'SIGKILL');
  const status = code ?? (signal && signal !== 'timeout' ? 128 + constants.signals[signal] : -1);
  process.stderr.write(`[demo] Ctrl-C to last process gone: ${seconds.toFixed(2)} s, status ${status}\n`);
  return { status, seconds, leftovers };
}

describe('npm run demo, then Ctrl-C', () => {
  const root = mkdtempSync(join(tmpdir(), 'gca-demo-int-'));
  const samples = join(root, 'samples');
  mkdirSync(samples);
  for (const name of ['00-circle.png', '01-square.png', '02-triangle.png']) copyFileSync(join(REPO_ROOT, 'samples', 'synthetic', name), join(samples, name));
  afterAll(() => {
    if (process.env.GCA_KEEP_TEST_DATA !== '1') rmSync(root, { recursive: true, force: true });
  });

  it('after the run completed: stops everything in dependency order within seconds', async () => {
    const dataDir = join(root, 'after');
    const demo = startDemo(dataDir, samples);
    await demo.waitFor(/press Ctrl-C to stop/, 150_000);
    const { status, seconds, leftovers } = await ctrlC(demo);
    expect(leftovers, demo.output()).toEqual([]);
    expect(status, demo.output()).toBe(130);
    expect(seconds).toBeLessThan(10);
    const out = demo.output();
    expect(out).toMatch(/stopping/);
    // Dependency order: the worker and dashboard are gone before S3 and Redis stop.
    const order = ['worker stopped', 'dashboard stopped', 'services stopped'].map((s) => out.indexOf(s));
    expect(order.every((i) => i >= 0), out).toBe(true);
    expect([...order].sort((a, b) => a - b)).toEqual(order);
    const workerLog = readFileSync(join(dataDir, 'logs', 'worker.log'), 'utf8');
    expect(workerLog).not.toMatch(/ECONNREFUSED|Connection is closed/);
    expect(workerLog).toMatch(/drain/i);
  }, 240_000);

  it('during start-up: stops what it started within seconds', async () => {
    const demo = startDemo(join(root, 'early'), samples);
    // The worker has just been spawned and is still loading its model.
    await demo.waitFor(/\] samples +\d+ images uploaded/, 120_000);
    await new Promise((r) => setTimeout(r, 300));
    const { status, seconds, leftovers } = await ctrlC(demo);
    expect(leftovers, demo.output()).toEqual([]);
    expect(status, demo.output()).toBe(130);
    expect(seconds).toBeLessThan(15);
  }, 180_000);
});
