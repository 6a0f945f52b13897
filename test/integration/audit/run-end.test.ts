/**
 * Every run ends with its analysis: enqueue → workers → finalizer writes manifest.jsonl and
 * summary.json, then audit.json, metrics.parquet and report.html under the run's output prefix, and
 * records the outcome in summary.json. The audit is checked against the manifest it was made from,
 * line by line, so the checks grow with what the lines carry (truth, per-image metrics). A failing
 * analysis never blocks the manifest, and `report` redoes it.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable, type Readable } from 'node:stream';
import { DuckDBInstance } from '@duckdb/node-api';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AUDIT_FILE, METRICS_PARQUET_FILE, REPORT_FILE } from '../../../src/shared/audit/files.js';
import { METRIC_COLUMNS, metricValue } from '../../../src/shared/audit/metric-table.js';
import { analyseRunManifest, s3RunAnalyser } from '../../../src/shared/audit/s3-analysis.js';
import type { AuditLine, AuditReport } from '../../../src/shared/audit/types.js';
import type { RunSummary } from '../../../src/shared/manifest.js';
import { MANIFEST_FILE, SUMMARY_FILE, s3StreamUploader, type StreamUploader } from '../../../src/shared/run-finalizer.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { testBucket, testRedis, type TestBucket, type TestRedis } from '../../helpers/services.js';
import { pipelineHarness, sampleImage, tinyEngine, type PipelineHarness } from '../pipeline/helpers.js';

// The truth label is the parent folder: a class index of the 10-class test model.
const KEYS = ['in/3/a.png', 'in/3/b.png', 'in/5/c.png', 'in/5/d.png', 'in/7/e.png', 'in/unknown/f.png'];
const BROKEN = 'in/7/broken.png';

describe('the finalizer writes the run analysis at the end of every run', () => {
  let t: TestRedis;
  let b: TestBucket;
  let h: PipelineHarness;
  let engine: Engine;
  let dir: string;

  beforeAll(async () => {
    [t, b, engine] = await Promise.all([testRedis(), testBucket(), tinyEngine()]);
    dir = await mkdtemp(path.join(tmpdir(), 'gca-run-end-'));
    h = pipelineHarness(t, b);
    // As workers and enqueue wire it (run-worker.ts, enqueue-cli.ts).
    h.finalizerDeps.analyse = s3RunAnalyser(b.store, h.finalizerDeps.upload);
    await Promise.all(KEYS.map(async (key, i) => b.store.put(b.bucket, key, await sampleImage(i + 3, 40, 36), { contentType: 'image/png' })));
    await b.store.put(b.bucket, BROKEN, 'not a PNG', { contentType: 'image/png' });
    await h.startWorker(engine, { batchSize: 4, maxBatchDelayMs: 100 });
  });
  afterAll(async () => {
    await h?.close();
    await engine?.dispose();
    await b?.cleanup();
    await t?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  const text = async (key: string) => (await b.store.get(b.bucket, key)).body.toString('utf8');
  const manifest = async (prefix: string) =>
    (await text(`${prefix}${MANIFEST_FILE}`))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as AuditLine);

  it('audit.json, metrics.parquet and report.html agree with the manifest they were made from', async () => {
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: `s3://${b.bucket}/out/`, runId: 'run-end', truthFromPath: '-2' });
    const run = await h.waitForRun(runId);
    expect(run).toMatchObject({ total: 7, done: 6, failed: 1, state: 'completed' });

    const lines = await manifest('out/');
    const summary = JSON.parse(await text(`out/${SUMMARY_FILE}`)) as RunSummary;
    expect(summary.analysis).toMatchObject({ status: 'written', files: expect.arrayContaining([AUDIT_FILE, METRICS_PARQUET_FILE, REPORT_FILE]) });
    const audit = JSON.parse(await text(`out/${AUDIT_FILE}`)) as AuditReport;
    expect(audit.runId).toBe(runId);

    // Counts: one image per manifest line, exactly as the summary counted them.
    const ok = lines.filter((l) => l.status === 'ok');
    expect(audit.counts).toMatchObject({ images: 7, ok: 6, failed: 1 });
    expect(audit.counts).toMatchObject({ images: summary.counts.total, ok: summary.counts.ok, failed: summary.counts.failed });
    expect(audit.counts.degenerate).toBe(summary.degenerateMaps);
    const predicted = audit.classes.predicted.map((c) => ({ index: c.class.index, count: c.count })).sort((x, y) => y.count - x.count || x.index - y.index);
    expect(predicted).toEqual(summary.classHistogram.map((c) => ({ index: c.index, count: c.count })));
    expect(Object.values(audit.flagCounts).reduce((a, n) => a + n, 0)).toBe(summary.analysis?.status === 'written' ? summary.analysis.flags : -1);

    // Truth and metrics: whatever the lines carry, the audit counts and summarises exactly that.
    expect(audit.counts.withTruth).toBe(ok.filter((l) => l.truth !== undefined).length);
    expect(audit.counts.matchedTruth).toBe(ok.filter((l) => l.truth !== undefined && l.truth.index !== null).length);
    expect(audit.counts.withMetrics).toBe(ok.filter((l) => l.metrics !== undefined).length);
    const confused = (audit.confusion?.cells ?? []).reduce((a, [, , n]) => a + n, 0);
    expect(confused).toBe(audit.counts.matchedTruth);
    for (const line of ok.filter((l) => l.truth !== undefined)) {
      // Folder "unknown" names no class of the model: reported as unmatched, never dropped.
      expect(line.truth?.index).toBe(line.key.includes('/unknown/') ? null : Number(line.key.split('/')[1]));
    }
    // Workers put each image's metrics and truth on its line: every ok image has both.
    expect(audit.counts).toMatchObject({ withMetrics: 6, withTruth: 6, matchedTruth: 5 });
    expect(audit.unmatchedLabels).toEqual([{ label: 'unknown', count: 1 }]);
    expect(audit.metrics.entropy?.n).toBe(6);
    for (const column of METRIC_COLUMNS) {
      const values = ok.map((l) => metricValue(column, l.metrics)).filter((v): v is number => v !== undefined);
      if (values.length === 0) {
        expect(audit.metrics[column.name], column.name).toBeUndefined();
        continue;
      }
      expect(audit.metrics[column.name]?.n, column.name).toBe(values.length);
      expect(audit.metrics[column.name]?.mean, column.name).toBeCloseTo(values.reduce((a, v) => a + v, 0) / values.length, 3);
    }

    // metrics.parquet: one row per manifest line, read by an independent reader.
    const parquetFile = path.join(dir, 'run-end.parquet');
    await writeFile(parquetFile, (await b.store.get(b.bucket, `out/${METRICS_PARQUET_FILE}`)).body);
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const rows = (await conn.runAndReadAll(`SELECT key, status FROM read_parquet('${parquetFile}') ORDER BY key`)).getRowObjects();
    conn.closeSync();
    expect(rows.map((r) => `${String(r.key)}:${String(r.status)}`)).toEqual(lines.map((l) => `${l.key}:${l.status}`).sort());

    // report.html: standalone, with the run's counts.
    const html = await text(`out/${REPORT_FILE}`);
    expect(html).toMatch(/^<!doctype html>/i);
    expect(html).not.toMatch(/<script|src="http|href="http/);
    expect(html).toContain(runId);
  });

  it('--method scorecam --faithfulness through the workers: the method in provenance, the drops on every line, in audit.json and in metrics.parquet', async () => {
    const runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: `s3://${b.bucket}/faith/`, runId: 'run-faith', method: 'scorecam', faithfulness: true });
    await h.waitForRun(runId);
    const ok = (await manifest('faith/')).filter((l) => l.status === 'ok');
    expect(ok).toHaveLength(6);
    const measured = ok.filter((l) => l.degenerate !== true);
    expect(measured.length).toBeGreaterThan(0);
    for (const line of measured) {
      const m = line.metrics as Record<string, number>;
      expect(m.faithfulness).toBeCloseTo(m.faithTopDrop - m.faithRandomDrop, 12);
      const doc = JSON.parse(await text(line.outputs!.prediction!.replace(`s3://${b.bucket}/`, ''))) as { provenance: { method: string } };
      expect(doc.provenance.method).toBe('scorecam');
    }
    const audit = JSON.parse(await text(`faith/${AUDIT_FILE}`)) as AuditReport;
    expect(audit.metrics.faithfulness?.n).toBe(measured.length);
    const parquetFile = path.join(dir, 'run-faith.parquet');
    await writeFile(parquetFile, (await b.store.get(b.bucket, `faith/${METRICS_PARQUET_FILE}`)).body);
    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    const rows = (await conn.runAndReadAll(`SELECT key, faith_top_drop, faith_random_drop, faithfulness FROM read_parquet('${parquetFile}') WHERE status = 'ok' ORDER BY key`)).getRowObjects();
    conn.closeSync();
    for (const line of measured) {
      const row = rows.find((r) => r.key === line.key)!;
      expect(Number(row.faith_top_drop)).toBeCloseTo((line.metrics as Record<string, number>).faithTopDrop, 5);
      expect(Number(row.faithfulness)).toBeCloseTo((line.metrics as Record<string, number>).faithfulness, 5);
    }
  });

  it('a failing analysis is logged and recorded in summary.json, never blocks the manifest, and report redoes it', async () => {
    // An analyser whose uploads of the audit files fail, as S3 would refuse them.
    const upload = s3StreamUploader(b.store.client);
    const refusing: StreamUploader = async (bucket, key, body, type) => {
      if (key.endsWith(AUDIT_FILE) || key.endsWith(METRICS_PARQUET_FILE)) {
        (body as Readable).resume();
        throw new Error(`AccessDenied: s3://${bucket}/${key}`);
      }
      return upload(bucket, key, body, type);
    };
    const logged: { level: number; msg: string; redo?: string }[] = [];
    const logger = pino({ level: 'warn' }, new Writable({ write: (c: Buffer, _e, cb) => (logged.push(JSON.parse(c.toString()) as (typeof logged)[number]), cb()) }));
    h.finalizerDeps.analyse = s3RunAnalyser(b.store, refusing, logger);
    try {
      const runId = await h.enqueue(`s3://${b.bucket}/in/`, { output: `s3://${b.bucket}/refused/`, runId: 'run-refused' });
      await h.waitForRun(runId);
    } finally {
      h.finalizerDeps.analyse = s3RunAnalyser(b.store, h.finalizerDeps.upload);
    }
    expect(await manifest('refused/')).toHaveLength(7);
    const summary = JSON.parse(await text(`refused/${SUMMARY_FILE}`)) as RunSummary;
    expect(summary.counts.total).toBe(7);
    expect(summary.analysis).toMatchObject({ status: 'failed', error: expect.stringContaining('AccessDenied'), redo: 'gradcam-audit report run-refused' });
    expect(logged).toContainEqual(expect.objectContaining({ level: 40, redo: 'gradcam-audit report run-refused', msg: expect.stringContaining('the manifest stands') }));
    expect(await b.store.exists(b.bucket, `refused/${AUDIT_FILE}`)).toBe(false);

    // `report` runs the same analysis on the finished run's manifest.
    const redone = await analyseRunManifest(b.store, upload, { runId: 'run-refused', output: { bucket: b.bucket, key: 'refused/' } });
    expect(redone.audit.counts).toMatchObject({ images: 7, ok: 6, failed: 1 });
    expect(await b.store.exists(b.bucket, `refused/${AUDIT_FILE}`)).toBe(true);
  });
});
