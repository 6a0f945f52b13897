/**
 * The dashboard serves a run's audit files from its output prefix: audit.json, the report page
 * under a CSP that lets its inline styles and data: thumbnails render but runs no script, the
 * Parquet table as a download, and a hint to run `report` when they are missing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startHarness, type DashboardHarness } from './harness.js';
import { createSeedRun } from './seed.js';

describe('dashboard: audit files', () => {
  let h: DashboardHarness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it('serves audit.json, report.html and metrics.parquet, and says how to write them', async () => {
    const run = await createSeedRun(h.seed, 'run-audit-files', ['a.png']);
    const missing = await h.app.inject({ method: 'GET', url: `/api/runs/${run.runId}/audit.json` });
    expect(missing.statusCode).toBe(404);
    expect(missing.body).toContain(`write it with: gradcam-audit report ${run.runId}`);

    const put = (name: string, body: string | Buffer, type: string) => h.b.store.put(h.b.bucket, `${run.outputPrefix}${name}`, body, { contentType: type });
    await put('audit.json', '{"schema":"gradcam-audit/audit@1"}', 'application/json');
    await put('report.html', '<!doctype html><title>r</title><img src="data:image/jpeg;base64,AA==">', 'text/html');
    await put('metrics.parquet', Buffer.from('PAR1....PAR1'), 'application/octet-stream');

    const audit = await h.app.inject({ method: 'GET', url: `/api/runs/${run.runId}/audit.json` });
    expect(audit.statusCode).toBe(200);
    expect(audit.json()).toEqual({ schema: 'gradcam-audit/audit@1' });
    const report = await h.app.inject({ method: 'GET', url: `/api/runs/${run.runId}/report.html` });
    expect(report.statusCode).toBe(200);
    expect(report.headers['content-type']).toBe('text/html; charset=utf-8');
    const csp = String(report.headers['content-security-policy']);
    expect(csp).toContain("img-src data:");
    expect(csp).not.toContain('script-src');
    expect(csp).toContain('sandbox');
    const parquet = await h.app.inject({ method: 'GET', url: `/api/runs/${run.runId}/metrics.parquet` });
    expect(parquet.statusCode).toBe(200);
    expect(String(parquet.headers['content-disposition'])).toMatch(/^attachment/);
  });
});
