import { execFile } from 'node:child_process';
import { mkdirSync, rmdirSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const child = fileURLToPath(new URL('../../fixtures/processes/cores-child.ts', import.meta.url));

/**
 * A real CPU-limited cgroup (v1 `cpu` controller, as this project's CI machines mount it): one CPU
 * of quota. Creating one needs root and a writable cgroup file system; elsewhere the test is skipped
 * and the fake-file-system tests in test/unit/shared/cores.test.ts still cover the parsing.
 */
function makeLimitedCgroup(): string | null {
  const dir = `/sys/fs/cgroup/cpu/gradcam-audit-test-${process.pid}`;
  try {
    mkdirSync(dir);
  } catch {
    return null;
  }
  try {
    writeFileSync(`${dir}/cpu.cfs_period_us`, '100000');
    writeFileSync(`${dir}/cpu.cfs_quota_us`, '100000');
    return dir;
  } catch {
    rmdirSync(dir);
    return null;
  }
}

const cgroup = availableParallelism() > 1 ? makeLimitedCgroup() : null;
afterAll(() => {
  if (cgroup) rmdirSync(cgroup);
});

describe('cores within a container CPU limit (real cgroup)', () => {
  it.skipIf(cgroup === null)('sizes engine threads, libuv threads and process shares from the limit, not the machine', async () => {
    // The shell joins the cgroup, then becomes node: the process runs limited from its first instruction.
    const { stdout } = await run('sh', ['-c', `echo $$ > ${cgroup}/cgroup.procs && exec "${process.execPath}" --import tsx "${child}"`], { timeout: 60_000 });
    const seen = JSON.parse(stdout.trim()) as { cores: number; threadpool: string; onnxThreads: number; processCores: number };
    // One CPU of quota on a machine with more: every default follows the one.
    expect(seen).toEqual({ cores: 1, threadpool: '4', onnxThreads: 1, processCores: 1 });
  }, 90_000);
});
