import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RunStore } from '../../../src/shared/queue/run-store.js';
import type { RunStatus } from '../../../src/producer/status.js';
import { serviceEnv, testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { CLI_BIN } from '../../helpers/cluster.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The real binary as users run it (bin/gradcam-audit.js), against the test's Redis namespace and S3 server. */
function cli(args: string[], env: Record<string, string>): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env, LOG_LEVEL: 'warn' }, timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('gradcam-audit enqueue / status as child processes', () => {
  let t: TestRedis;
  let b: TestBucket;
  let env: Record<string, string>;
  beforeAll(async () => {
    t = await testRedis();
    b = await testBucket();
    env = serviceEnv({ GRADCAM_AUDIT_PREFIX: t.prefix, GRADCAM_AUDIT_QUEUE: t.queueName });
    await Promise.all(['in/a.jpg', 'in/b c.PNG', 'in/notes.txt', 'in/'].map((k) => b.store.put(b.bucket, k, 'x', { contentType: 'application/octet-stream' })));
  });
  afterAll(async () => {
    await t.cleanup();
    await b.cleanup();
  });

  it('rejects a bad flag and a bad URI with exit code 2 and the name of what is wrong', async () => {
    const [flag, uri, dots] = await Promise.all([
      cli(['enqueue', `s3://${b.bucket}/in/`, '--alpha', '1.5'], env),
      cli(['enqueue', 'https://example.com/x'], env),
      cli(['enqueue', `s3://${b.bucket}/in/`, '--output', `s3://${b.bucket}/../x`], env),
    ]);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain('--alpha: expected a number from 0 to 1, got 1.5');
    expect(uri.code).toBe(2);
    expect(uri.stderr).toContain('use s3://BUCKET/KEY, not an http URL');
    expect(dots.code).toBe(2);
    expect(dots.stderr).toContain(`--output: "s3://${b.bucket}/../x" contains a ".." segment`);
  });

  it('reports a missing bucket clearly, enqueues, and shows status as text and JSON', async () => {
    const missing = await cli(['enqueue', 's3://no-such-bucket-cli/in/'], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('NOT_FOUND: bucket "no-such-bucket-cli" does not exist');

    const enq = await cli(['enqueue', `s3://${b.bucket}/in/`, '--json', '--model', 'vgg16-test'], env);
    expect(enq.stderr).toBe('');
    expect(enq.code).toBe(0);
    const run = JSON.parse(enq.stdout) as { id: string; total: number; state: string; model: string; enqueue: { counts: { added: number } } };
    expect(run).toMatchObject({ total: 2, state: 'queued', model: 'vgg16-test', enqueue: { counts: { added: 2 } } });
    expect(await new RunStore(t.redis, { prefix: t.prefix }).getRun(run.id)).toMatchObject({ total: 2 });

    const [status, table, unknown] = await Promise.all([
      cli(['status', run.id, '--json'], env),
      cli(['status'], env),
      cli(['status', 'no-such-run'], env),
    ]);
    expect(status.code).toBe(0);
    const s = JSON.parse(status.stdout) as RunStatus;
    expect(s.stats).toMatchObject({ runId: run.id, total: 2, done: 0, failed: 0, remaining: 2, imagesPerSecond: 0, etaSeconds: null });
    expect(table.stdout).toMatch(new RegExp(`^RUN +STATE +TOTAL +DONE +FAILED +PROGRESS +IMG/S +ETA +ELAPSED\\n${run.id} +queued +2 +0 +0 +0\\.0%`));
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no run "no-such-run"');
  });

  it('summarises a dry run on stdout without creating anything', async () => {
    const dry = await cli(['enqueue', `s3://${b.bucket}/in/`, '--dry-run', '--run-id', 'dry'], env);
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain(`dry run: 2 of 4 objects under s3://${b.bucket}/in/ would be audited as run dry`);
    expect(dry.stdout).toContain('in/b c.PNG');
    expect(await new RunStore(t.redis, { prefix: t.prefix }).getRun('dry')).toBeNull();
  });

  it("never shows the AWS SDK's Node-version notice (the test config silences it; the CLI must on its own)", async () => {
    const bare = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED')) as Record<string, string>;
    const dry = await new Promise<CliResult>((resolve) => {
      execFile(process.execPath, [CLI_BIN, 'enqueue', `s3://${b.bucket}/in/`, '--dry-run'], { cwd: ROOT, env: { ...bare, ...env }, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? 1 : 0, stdout, stderr }),
      );
    });
    expect(dry.code).toBe(0);
    expect(dry.stderr).not.toMatch(/NodeVersionSupportWarning|AWS SDK for JavaScript/);
  });

  it('says so when a prefix holds no images, and completes that run empty', async () => {
    const empty = await cli(['enqueue', `s3://${b.bucket}/nothing/`, '--run-id', 'empty'], env);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toContain(`run empty: no images to audit: nothing is stored under s3://${b.bucket}/nothing/ (check the prefix)`);
    expect(await new RunStore(t.redis, { prefix: t.prefix }).getRun('empty')).toMatchObject({ state: 'completed', total: 0 });
  });
});
