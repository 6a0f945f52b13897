/**
 * The API behind the Audit view, the compare page and the detail view, on runs finalized by the
 * real finalizer (manifest, summary and analysis files in S3): the gallery sorted by any metric,
 * an image's previous and next in that order, the colormap the legend draws, and two runs compared
 * on request with the stored comparison served afterwards.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMPARE_FILE } from '../../../src/shared/audit/files.js';
import type { CompareReport } from '../../../src/shared/audit/compare.js';
import type { AuditLine, AuditReport } from '../../../src/shared/audit/types.js';
import { VIRIDIS_RGB } from '../../../src/shared/colormap-tables.js';
import type { RunSummary } from '../../../src/shared/manifest.js';
import { sceneRun } from '../../unit/audit/helpers.js';
import { startHarness, type DashboardHarness } from './harness.js';
import { seedAuditRun } from './seed.js';

describe('dashboard: audit view, sorting, previous/next and compare', () => {
  let h: DashboardHarness;
  let lines: AuditLine[];
  const SOURCE = 'scenes/';

  beforeAll(async () => {
    h = await startHarness();
    // Run A: class "star" (3) carries heat in the bottom-right corner; run B: the same keys, clean.
    lines = sceneRun(10, 1, (s) => (s.predicted === 3 ? { ...s, cornerWeight: 1.5 } : s));
    await seedAuditRun(h.seed, 'run-shortcut', lines, (id) => h.finalize(id), SOURCE);
    await seedAuditRun(h.seed, 'run-clean', sceneRun(10, 1), (id) => h.finalize(id), SOURCE);
  });
  afterAll(async () => {
    await h?.close();
  });

  const get = async (url: string) => {
    const r = await h.app.inject({ method: 'GET', url });
    return { status: r.statusCode, body: r.json() as Record<string, unknown> };
  };

  it('a finalized run has its audit: summary.json records it and audit.json flags the corner shortcut', async () => {
    const summary = (await get('/api/runs/run-shortcut/summary.json')).body as unknown as RunSummary;
    expect(summary.analysis).toMatchObject({ status: 'written', flags: expect.any(Number) });
    const audit = (await get('/api/runs/run-shortcut/audit.json')).body as unknown as AuditReport;
    expect(audit.counts).toMatchObject({ images: 50, ok: 50, withMetrics: 50, withTruth: 50 });
    const corner = audit.flags.find((f) => f.kind === 'corner-shortcut');
    expect(corner?.subject).toMatchObject({ type: 'class', class: { index: 3, label: 'star' } });
    expect(corner?.evidence.corner).toBe('bottom-right');
  });

  it('sorts the gallery by any metric, either way, images without the metric last', async () => {
    const expected = (name: string, order: 'asc' | 'desc') =>
      lines
        .map((l) => ({ key: SOURCE + l.key, v: l.metrics?.[name] as number }))
        .sort((a, b) => (a.v !== b.v ? (order === 'asc' ? a.v - b.v : b.v - a.v) : a.key < b.key ? -1 : 1))
        .map((r) => r.key);
    for (const [sort, order] of [['cornerBottomRight', 'desc'], ['entropy', 'asc'], ['top1Prob', 'desc']] as const) {
      const page = await get(`/api/runs/run-shortcut/images?sort=${sort}&order=${order}&limit=50`);
      expect(page.status).toBe(200);
      expect((page.body.items as { key: string }[]).map((i) => i.key)).toEqual(expected(sort, order));
    }
    // The ten corner-heavy stars come first by bottom-right corner share.
    const top = await get('/api/runs/run-shortcut/images?sort=cornerBottomRight&order=desc&limit=10');
    expect((top.body.items as { top1: { label: string } }[]).map((i) => i.top1.label)).toEqual(Array(10).fill('star'));
    const bad = await get('/api/runs/run-shortcut/images?sort=nonsense');
    expect(bad.status).toBe(400);
    expect(String(bad.body.message)).toContain('query parameter "sort" must be one of key, top1Prob');
  });

  it('places an image in the filtered, sorted listing: index, total, previous and next', async () => {
    const listing = (await get('/api/runs/run-shortcut/images?class=3&sort=entropy&order=desc&limit=50')).body.items as { key: string }[];
    expect(listing).toHaveLength(10);
    const keys = listing.map((i) => i.key);
    const pos = (key: string) => get(`/api/runs/run-shortcut/images/position?class=3&sort=entropy&order=desc&key=${encodeURIComponent(key)}`);
    expect((await pos(keys[4]!)).body).toEqual({ key: keys[4], index: 4, total: 10, prev: keys[3], next: keys[5] });
    expect((await pos(keys[0]!)).body).toMatchObject({ index: 0, prev: null, next: keys[1] });
    expect((await pos(keys[9]!)).body).toMatchObject({ index: 9, prev: keys[8], next: null });
    // An image outside the filter has no place in it.
    const other = lines.find((l) => l.top1?.index === 0)!;
    expect((await pos(SOURCE + other.key)).body).toMatchObject({ index: null, total: 10, prev: null, next: null });
  });

  it('serves the colormap the overlays were drawn with, and names it on the image detail', async () => {
    const cm = await get('/api/colormaps/viridis');
    const colors = cm.body.colors as string[];
    expect(colors).toHaveLength(256);
    const hex = (i: number) => `#${[0, 1, 2].map((k) => VIRIDIS_RGB[3 * i + k]!.toString(16).padStart(2, '0')).join('')}`;
    expect(colors[0]).toBe(hex(0));
    expect(colors[128]).toBe(hex(128));
    expect(colors[255]).toBe('#fde724');
    expect((await get('/api/colormaps/rainbow')).status).toBe(400);
    const detail = await get(`/api/runs/run-shortcut/image?key=${encodeURIComponent(SOURCE + lines[0]!.key)}`);
    expect(detail.body.colormap).toBe('viridis');
  });

  it('compares two runs on request, stores the comparison under run B and serves it afterwards', async () => {
    const missing = await get('/api/compare?a=run-clean&b=run-shortcut');
    expect(missing.status).toBe(404);
    expect(String(missing.body.message)).toContain('gradcam-audit compare run-clean run-shortcut');
    const same = await get('/api/compare?a=run-clean&b=run-clean');
    expect(same.status).toBe(400);

    const computed = await h.app.inject({ method: 'POST', url: '/api/compare', payload: { a: 'run-clean', b: 'run-shortcut' } });
    expect(computed.statusCode).toBe(200);
    const report = computed.json() as CompareReport;
    expect(report.runs).toEqual({ a: 'run-clean', b: 'run-shortcut' });
    expect(report.counts.both).toBe(50);
    expect(report.classes[0]?.class.label).toBe('star');
    expect(await h.b.store.exists(h.b.bucket, `gradcam-audit/run-shortcut/compare/run-clean/${COMPARE_FILE}`)).toBe(true);
    const stored = await get('/api/compare?a=run-clean&b=run-shortcut');
    expect(stored.status).toBe(200);
    expect(stored.body).toEqual(JSON.parse(JSON.stringify(report)));
  });
});
