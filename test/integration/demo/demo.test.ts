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
import { CLI_BIN, REPO_ROOT } from '../../helpers/cluster.js';

describe('npm run demo -- --once', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gca-demo-'));
  afterAll(() => {
    if (process.env.GCA_KEEP_TEST_DATA !== '1') rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs the whole pipeline on embedded services, exits 0 and prints the summary', async () => {
    const env = { ...process.env };
    for (const k of ['REDIS_URL', 'AWS_ENDPOINT_URL_S3', 'AWS_ENDPOINT_URL', 'AWS_ACCESS_KEY_ID', 'AWS_SECRET_ACCESS_KEY']) delete env[k];
    const child = spawn(process.execPath, [CLI_BIN, 'demo', '--once', '--data-dir', dataDir, '--port', '0'], {
      cwd: REPO_ROOT,
      env: { ...env, CI: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect(code, out).toBe(0);
    // Start-up steps are shown as they happen, timestamped, the worker's own steps included.
    const redisUrl = /\] redis +started redis-server at (redis:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    const s3Url = /\] s3 +started embedded S3 \(s3rver\) at (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
    expect(redisUrl, out).toBeDefined();
    expect(s3Url, out).toBeDefined();
    expect(out).toMatch(/\] dashboard +http:\/\/127\.0\.0\.1:\d+\//);
    for (const worker of [/loading model .*models[/\\]demo[/\\]model\.json/, /engine ready: onnx\/onnx-cpu on CPU/, /ready: taking jobs/]) {
      expect(out).toMatch(new RegExp(`\\[ *\\d+\\.\\ds\\] worker +${worker.source}`));
    }
    const stamps = [...out.matchAll(/^\[ *(\d+\.\d)s\]/gm)].map((m) => Number(m[1]));
    expect(stamps.length).toBeGreaterThan(8);
    expect(stamps).toEqual([...stamps].sort((a, b) => a - b));
    // Everything the CLI needs to reach the embedded services, with s3rver's fixed credentials.
    expect(out).toContain(`export REDIS_URL=${redisUrl}`);
    expect(out).toContain(`export AWS_ENDPOINT_URL_S3=${s3Url} AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=S3RVER AWS_SECRET_ACCESS_KEY=S3RVER`);
    // The demo model only audits what it knows; the photos are left out, and the output says why.
    expect(out).toMatch(/shapes only: the demo model knows 5 shapes, so the photos in samples\/photos would be out-of-distribution/);
    const summary = /run (demo-\d+) completed: (\d+) ok, (\d+) failed of (\d+)/.exec(out);
    expect(summary, out).not.toBeNull();
    const [, runId, ok, failed, total] = summary as RegExpExecArray;
    const samples = readdirSync(join(REPO_ROOT, 'samples', 'synthetic')).filter((f) => /\.(png|jpe?g)$/i.test(f));
    expect(Number(total)).toBe(samples.length);
    expect(Number(ok)).toBe(samples.length);
    expect(Number(failed)).toBe(0);
    expect(out).toMatch(/throughput: \d+\.\d\d img\/s over \d+\.\d s of processing \(\d+\.\d s from enqueue\)/);

    // The local copy holds the run's manifest: every sample exactly once, with its outputs.
    const outDir = join(dataDir, 'outputs', runId as string);
    const lines = readFileSync(join(outDir, 'manifest.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as RunManifestLine);
    expect(new Set(lines.map((l) => l.key)).size).toBe(samples.length);
    const summaryJson = JSON.parse(readFileSync(join(outDir, 'summary.json'), 'utf8')) as { counts: { ok: number }; provenance: { modelName: string } };
    expect(summaryJson.counts.ok).toBe(samples.length);
    expect(summaryJson.provenance.modelName).toBe('demo_shapes');

    // The demo model really learned: synthetic samples are named after their class.
    const synthetic = lines.filter((l) => l.key.startsWith('samples/synthetic/'));
    expect(synthetic).toHaveLength(lines.length);
    const correct = synthetic.filter((l) => l.key.includes(`-${l.top1?.label ?? '?'}.`)).length;
    expect(correct / synthetic.length).toBeGreaterThanOrEqual(0.75);
  }, 180_000);
});
