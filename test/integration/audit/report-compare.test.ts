/**
 * `gradcam-audit report` and `compare` on finished runs in a real S3 server: manifests with
 * per-image metrics are read as streams, the analysis files land under the run's output prefix (or
 * a local folder), the report is a standalone page with thumbnails of the flagged images, and
 * compare names the class whose attention moved.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CompareReport } from '../../../src/shared/audit/compare.js';
import type { AuditLine, AuditReport } from '../../../src/shared/audit/types.js';
import { CLI_BIN } from '../../helpers/cluster.js';
import { serviceEnv, testBucket, type TestBucket } from '../../helpers/services.js';
import { sceneRun } from '../../unit/audit/helpers.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI_BIN, ...args], { cwd: ROOT, env: { ...process.env, ...env, LOG_LEVEL: 'warn' }, timeout: 90_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
  });
}

describe('report and compare on finished runs', () => {
  let b: TestBucket;
  let env: Record<string, string>;
  let dir: string;
  const prefix = (run: string) => `gradcam-audit/${run}/`;

  async function seedRun(run: string, lines: AuditLine[]): Promise<void> {
    const out = prefix(run);
    const withOutputs = lines.map((l) => ({ ...l, outputs: { overlay: `s3://${b.bucket}/${out}overlays/${l.key}.jpg`, prediction: `s3://${b.bucket}/${out}predictions/${l.key}.json` } }));
    await b.store.put(b.bucket, `${out}manifest.jsonl`, withOutputs.map((l) => JSON.stringify(l)).join('\n') + '\n', { contentType: 'application/x-ndjson' });
    const overlay = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#808' } }).jpeg().toBuffer();
    await Promise.all(withOutputs.map((l) => b.store.put(b.bucket, `${out}overlays/${l.key}.jpg`, overlay, { contentType: 'image/jpeg' })));
  }

  beforeAll(async () => {
    b = await testBucket();
    env = serviceEnv();
    dir = await mkdtemp(path.join(tmpdir(), 'gca-report-'));
    await seedRun('clean', sceneRun(10, 1));
    // One flipped label gives an image-level flag (a label suspect) with a thumbnail.
    await seedRun('shortcut', sceneRun(10, 1, (s, i) => (s.predicted === 3 ? { ...s, cornerWeight: 1.5 } : i === 7 ? { ...s, truth: { index: 0, box: true } } : s)));
  });
  afterAll(async () => {
    await b.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it('report writes audit.json, metrics.parquet and an offline report.html under the output prefix', async () => {
    const r = await cli(['report', `s3://${b.bucket}/${prefix('shortcut')}`], env);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('audit of run shortcut: 50 images (0 failed), 1 corner-shortcut, 1 label-suspect');
    expect(r.stdout).toMatch(/corner-shortcut: class "star" puts \d+% of its heat in the bottom-right corner/);
    const audit = JSON.parse((await b.store.get(b.bucket, `${prefix('shortcut')}audit.json`)).body.toString('utf8')) as AuditReport;
    expect(audit.flags.find((f) => f.kind === 'corner-shortcut')?.evidence.corner).toBe('bottom-right');
    const parquet = (await b.store.get(b.bucket, `${prefix('shortcut')}metrics.parquet`)).body;
    expect(parquet.subarray(0, 4).toString()).toBe('PAR1');
    const html = (await b.store.get(b.bucket, `${prefix('shortcut')}report.html`)).body.toString('utf8');
    // Standalone: no script, no external fetch; flagged images have embedded thumbnails and
    // relative links to their overlays.
    expect(html).not.toMatch(/<script|src="http|href="http/);
    expect(html).toContain('data:image/jpeg;base64,');
    expect(html).toContain('href="overlays/img/00007.png.jpg"');
  });

  it('report --out writes locally, and a run without a manifest gets an actionable error', async () => {
    const out = path.join(dir, 'clean');
    const r = await cli(['report', `s3://${b.bucket}/${prefix('clean')}`, '--out', out, '--json'], env);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ runId: 'clean', counts: { images: 50 }, flagCounts: { 'corner-shortcut': 0 } });
    const audit = JSON.parse(await readFile(path.join(out, 'audit.json'), 'utf8')) as AuditReport;
    expect(audit.flags).toEqual([]);
    const missing = await cli(['report', `s3://${b.bucket}/gradcam-audit/unfinished/`], env);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('run unfinished has no manifest.jsonl');
  });

  it('compare names the class whose attention moved first and writes compare.json and compare.html', async () => {
    const r = await cli(['compare', `s3://${b.bucket}/${prefix('clean')}`, `s3://${b.bucket}/${prefix('shortcut')}`, '--json'], env);
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as CompareReport;
    expect(report.runs).toEqual({ a: 'clean', b: 'shortcut' });
    expect(report.classes[0].class).toEqual({ index: 3, label: 'star' });
    const stored = JSON.parse((await b.store.get(b.bucket, `${prefix('shortcut')}compare/clean/compare.json`)).body.toString('utf8')) as CompareReport;
    expect(stored.classes[0].class.index).toBe(3);
    expect(await b.store.exists(b.bucket, `${prefix('shortcut')}compare/clean/compare.html`)).toBe(true);
  });
});
