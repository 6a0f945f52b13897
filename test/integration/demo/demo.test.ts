/**
 * `gradcam-audit demo --once` as a newcomer runs it: the real CLI, its own embedded redis-server and
 * s3rver (no REDIS_URL / AWS_ENDPOINT_URL_S3), the bundled demo model and samples. It must exit 0,
 * print the summary, and leave a complete run on disk whose predictions show a model that learned.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { REPO_ROOT } from '../../helpers/cluster.js';

describe('npm run demo -- --once', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gca-demo-'));
  afterAll(() => {
    if (process.env.GCA_KEEP_TEST_DATA !== '1') rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs the whole pipeline on embedded services, exits 0 and prints the summary', async () => {
    const env = { ...process.env };
    for (const k of ['REDIS_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) delete env[k];
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'demo', '--once', '--data-dir', dataDir, '--port', '0'], {
      cwd: REPO_ROOT,
      env: { ...env, CI: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, out).toBe(0);
    expect(out).toMatch(/started redis-server at redis:\/\/127\.0\.0\.1:\d+/);
    expect(out).toMatch(/started embedded S3 \(s3rver\)/);
    expect(out).toMatch(/dashboard: http:\/\/127\.0\.0\.1:\d+\//);
    const summary = /run (demo-\d+) completed: (\d+) ok, (\d+) failed of (\d+)/.exec(out);
    expect(summary, out).not.toBeNull();
    const [, runId, ok, failed, total] = summary as RegExpExecArray;
    const samples = [...readdirSync(join(REPO_ROOT, 'samples', 'synthetic')), ...readdirSync(join(REPO_ROOT, 'samples', 'photos'))].filter((f) => /\.(png|jpe?g)$/i.test(f));
    expect(Number(total)).toBe(samples.length);
    expect(Number(ok)).toBe(samples.length);
    expect(Number(failed)).toBe(0);

    // The local copy holds the run's manifest: every sample exactly once, with its outputs.
    const outDir = join(dataDir, 'outputs', runId as string);
    const lines = readFileSync(join(outDir, 'manifest.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RunManifestLine);
    expect(new Set(lines.map((l) => l.key)).size).toBe(samples.length);
    const summaryJson = JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')) as { counts: { ok: number }; provenance: { modelName: string } };
    expect(summaryJson.counts.ok).toBe(samples.length);
    expect(summaryJson.provenance.modelName).toBe('demo_shapes');

    // The demo model really learned: synthetic samples are named after their class.
    const synthetic = lines.filter((l) => l.key.startsWith('samples/synthetic/'));
    const correct = synthetic.filter((l) => l.key.includes(`-${l.top1?.label ?? '?'}.`)).length;
    expect(correct / synthetic.length).toBeGreaterThanOrEqual(0.75);
  }, 180_000);
});
