import { spawn } from 'node:child_process';
import { Queue } from 'bullmq';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { freePort } from '../../../src/dev/free-port.js';
import { bullPrefix } from '../../../src/shared/queue/contract.js';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import { CLI_BIN } from '../../helpers/cluster.js';
import { serviceEnv, testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { cleanupBucket } from './harness.js';
import { seedRun } from './seed.js';

/** The real `gradcam-audit dashboard` process: configuration from the environment, clean SIGTERM. */
describe('gradcam-audit dashboard (child process)', () => {
  let t: TestRedis;
  let b: TestBucket;
  beforeEach(async () => {
    t = await testRedis();
    b = await testBucket();
  });
  afterEach(async () => {
    // Per-test BullMQ keys live under the test's own prefix here, which t.cleanup() removes.
    await cleanupBucket(b);
    await t.cleanup();
  });

  it('serves runs and the queue from the configured namespace, and exits 0 on SIGTERM', async () => {
    const runs = new RunStore(t.redis, { prefix: t.prefix }, { store: b.store });
    await seedRun({ runs, store: b.store, bucket: b.bucket }, 'run-cli', [{ name: 'a.png', status: 'ok', cls: 2, probability: 0.7 }]);
    const queue = new Queue(t.queueName, { connection: t.redis, prefix: bullPrefix({ prefix: t.prefix }) });
    await queue.add('explain', { runId: 'run-cli' }, { jobId: 'run-cli.x' });

    const env = serviceEnv({ GRADCAM_AUDIT_PREFIX: t.prefix, GRADCAM_AUDIT_QUEUE: t.queueName, DASHBOARD_TOKEN: 'cli-test-token-0123456789', LOG_LEVEL: 'warn' });
    const child = spawn(process.execPath, [CLI_BIN, 'dashboard', '--port', '0'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const address = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dashboard did not start within 40 s:\n${stderr}`)), 40_000);
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        const m = /gradcam-audit dashboard: (http:\/\/\S+)/.exec(stderr);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
    });
    try {
      const auth = { authorization: 'Bearer cli-test-token-0123456789' };
      const { runs: listed } = (await (await fetch(`${address}/api/runs`, { headers: auth })).json()) as { runs: Array<{ id: string; done: number }> };
      expect(listed).toEqual([expect.objectContaining({ id: 'run-cli', done: 1 })]);
      const overlay = await fetch(`${address}/api/runs/run-cli/objects/overlay?key=${encodeURIComponent('photos/run-cli/a.png')}`, { headers: auth });
      expect(overlay.status).toBe(200);
      expect(overlay.headers.get('content-type')).toBe('image/jpeg');
      const board = (await (await fetch(`${address}/queues/api/queues`, { headers: auth })).json()) as { queues: Array<{ name: string; counts: Record<string, number> }> };
      expect(board.queues.map((q) => q.name)).toEqual([t.queueName]);
      expect(board.queues[0]!.counts.waiting).toBe(1);
      expect(stderr).not.toContain('cli-test-token-0123456789');
    } finally {
      child.kill('SIGTERM');
    }
    expect(await exited).toBe(0);
    await queue.close();
  });

  it('exits 1 with an actionable message when Redis is unreachable at start, instead of hanging', async () => {
    const env = serviceEnv({ REDIS_URL: `redis://127.0.0.1:${await freePort()}`, LOG_LEVEL: 'warn', GRADCAM_AUDIT_REDIS_WAIT_MS: '1500' });
    const started = Date.now();
    const child = spawn(process.execPath, [CLI_BIN, 'dashboard', '--port', '0'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const killer = setTimeout(() => child.kill('SIGKILL'), 45_000);
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    clearTimeout(killer);
    const seconds = (Date.now() - started) / 1000;
    expect(code, stderr).toBe(1);
    expect(stderr).toContain('cannot reach Redis at redis://127.0.0.1:');
    expect(stderr).toContain('ECONNREFUSED');
    expect(stderr).toContain('within 1500 ms');
    // The wait for Redis is 1.5 s here (GRADCAM_AUDIT_REDIS_WAIT_MS); the rest is process start-up on a loaded machine.
    expect(seconds).toBeLessThan(25);
  }, 60_000);
});
