/**
 * The Audit view, the compare page and the image detail in a real browser (Debian's Chromium via
 * playwright-core), on runs finalized by the real finalizer and analysis: flags sorted and filtered
 * with the state in the URL, the class atlas drawn from audit.json, the confusion matrix, metric
 * histograms, two runs compared on request, deep links to images with previous/next keys, the
 * colormap legend and the downloads. Screenshots land in test-artifacts/e2e/.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditLine } from '../../src/shared/audit/types.js';
import { VIRIDIS_RGB } from '../../src/shared/colormap-tables.js';
import { outputKeysFor } from '../../src/shared/storage/output-keys.js';
import { startHarness, type DashboardHarness } from '../integration/dashboard/harness.js';
import { seedAuditRun } from '../integration/dashboard/seed.js';
import { sceneRun } from '../unit/audit/helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'e2e');
const hasChromium = existsSync(CHROMIUM);
const SOURCE = 'scenes/';

describe.skipIf(!hasChromium)('audit pages in Chromium', () => {
  let h: DashboardHarness;
  let base: string;
  let context: BrowserContext;
  let profile: string;
  let downloads: string;
  let lines: AuditLine[];
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    h = await startHarness({ liveIntervalMs: 500 });
    // Run A: "star" (class 3) looks at the bottom-right corner, and image 7's label is flipped to
    // "circle" (a label suspect); run B: the same keys, clean.
    lines = sceneRun(10, 1, (s, i) => (s.predicted === 3 ? { ...s, cornerWeight: 1.5 } : i === 7 ? { ...s, truth: { index: 0, box: true } } : s));
    await seedAuditRun(h.seed, 'run-shortcut', lines, (id) => h.finalize(id), SOURCE);
    await seedAuditRun(h.seed, 'run-clean', sceneRun(10, 1), (id) => h.finalize(id), SOURCE);
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    profile = mkdtempSync(join(tmpdir(), 'gca-chromium-'));
    downloads = mkdtempSync(join(tmpdir(), 'gca-downloads-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      acceptDownloads: true,
      downloadsPath: downloads,
      viewport: { width: 1360, height: 900 },
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
    });
  });
  afterAll(async () => {
    await context?.close();
    for (const dir of [profile, downloads]) if (dir) rmSync(dir, { recursive: true, force: true });
    await h?.close();
    // Script errors and CSP violations (inline scripts, styles, foreign requests) would show here.
    expect(problems).toEqual([]);
  });

  async function newPage(): Promise<Page> {
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      // The compare page asks for a stored comparison first; 404 is the answer until one is computed.
      if (msg.type() === 'error' && !(msg.text().includes('status of 404') && msg.location().url.includes('/api/compare?'))) problems.push(`console: ${msg.text()} (${msg.location().url})`);
    });
    return page;
  }
  const hashOf = (page: Page) => decodeURIComponent(new URL(page.url()).hash);
  const severities = (page: Page) => page.locator('#flags-table tbody tr').evaluateAll((rows) => rows.map((r) => Number((r as HTMLElement).dataset.severity)));

  it('Audit view: flags sorted by severity and filtered by kind, kept in the URL; atlas, confusion matrix and histograms', async () => {
    const page = await newPage();
    await page.goto(`${base}/#/runs/run-shortcut`);
    await page.click('#tab-audit');
    await page.locator('#flags-table tbody tr').first().waitFor();
    expect(hashOf(page)).toBe('#/runs/run-shortcut/audit');
    const all = await severities(page);
    expect(all.length).toBeGreaterThanOrEqual(2);
    expect(all).toEqual([...all].sort((a, b) => b - a));
    const kinds = await page.locator('#flags-table tbody tr').evaluateAll((rows) => rows.map((r) => (r as HTMLElement).dataset.kind));
    expect(kinds).toEqual(expect.arrayContaining(['corner-shortcut', 'label-suspect']));

    // The corner shortcut names the class and the corner, with its evidence.
    const corner = page.locator('#flags-table tr[data-kind="corner-shortcut"]');
    expect(await corner.getAttribute('data-subject')).toBe('class:3');
    expect(await corner.innerText()).toMatch(/star[\s\S]*bottom-right/);

    // Filter by kind, reverse the order: both land in the URL and survive a reload.
    await page.selectOption('#flag-kind', 'label-suspect');
    await page.click('#flag-sort');
    expect(hashOf(page)).toBe('#/runs/run-shortcut/audit?kind=label-suspect&order=asc');
    await page.reload();
    await page.locator('#flags-table tbody tr').first().waitFor();
    expect(await page.locator('#flag-kind').inputValue()).toBe('label-suspect');
    expect(await page.locator('#flag-sort').innerText()).toContain('▲');
    const suspects = await page.locator('#flags-table tbody tr').evaluateAll((rows) => rows.map((r) => [(r as HTMLElement).dataset.kind, Number((r as HTMLElement).dataset.severity)] as const));
    expect(suspects.every(([k]) => k === 'label-suspect')).toBe(true);
    expect(suspects.map(([, s]) => s)).toEqual(suspects.map(([, s]) => s).sort((a, b) => a - b));
    // The flipped image is listed with its thumbnail (a real image through the proxy).
    const flipped = `${SOURCE}${lines[7]!.key}`;
    const row = page.locator(`#flags-table tr[data-subject="${flipped}"]`);
    await row.waitFor();
    await page.waitForFunction((key) => {
      const img = document.querySelector<HTMLImageElement>(`#flags-table tr[data-subject="${key}"] img`);
      return img !== null && img.complete && img.naturalWidth > 0;
    }, flipped);

    // Class atlas: the whole run plus five classes; star's mean map is hot in its bottom-right corner.
    await expect.poll(() => page.locator('#class-atlas .atlas-card').count()).toBe(6);
    const heat = await page.locator('#class-atlas .atlas-card[data-class="3"] canvas').evaluate((c) => {
      const canvas = c as HTMLCanvasElement;
      const px = (x: number, y: number) => Array.from(canvas.getContext('2d')!.getImageData(x, y, 1, 1).data.slice(0, 3));
      const n = canvas.width;
      return { bottomRight: px(n - 2, n - 2), topLeft: px(1, 1) };
    });
    // Viridis: hot is yellow (high red and green), cold is purple.
    expect(heat.bottomRight[0]! + heat.bottomRight[1]!).toBeGreaterThan(heat.topLeft[0]! + heat.topLeft[1]! + 100);
    // Group by true class: the role goes into the URL.
    await page.selectOption('#atlas-role', 'true');
    expect(hashOf(page)).toContain('role=true');

    // Confusion matrix: five correct diagonals, one off-diagonal cell (the flipped label).
    expect(await page.locator('#confusion td.diagonal').count()).toBe(5);
    const off = page.locator('#confusion td.off');
    expect(await off.count()).toBe(1);
    expect(await off.getAttribute('data-true')).toBe('0');
    expect(await page.locator('#metric-histograms .histogram-card[data-metric="entropy"] rect').count()).toBe(20);
    await page.screenshot({ path: join(ARTIFACTS, 'audit-view.png'), fullPage: true, animations: 'disabled' });

    // A flagged image links to its detail view.
    await row.locator('a').first().click();
    await page.locator('#image-dialog').waitFor({ state: 'visible' });
    expect(hashOf(page)).toBe(`#/runs/run-shortcut?image=${flipped}`);
    await expect.poll(() => page.locator('#detail-title').innerText()).toBe(flipped);
    await page.close();
  });

  it('compare page: computes two runs on request, names the moved class first, and serves it stored afterwards', async () => {
    const page = await newPage();
    await page.goto(`${base}/#/compare`);
    await page.locator('#compare-a option[value="run-clean"]').waitFor({ state: 'attached' });
    await page.selectOption('#compare-a', 'run-clean');
    await page.selectOption('#compare-b', 'run-shortcut');
    await page.click('#compare-go');
    expect(hashOf(page)).toBe('#/compare?a=run-clean&b=run-shortcut');
    await page.locator('#compare-compute').click();
    await page.locator('#compare-classes tbody tr').first().waitFor({ timeout: 30_000 });
    expect(await page.locator('#compare-classes tbody tr').first().getAttribute('data-class')).toBe('3');
    expect(await page.locator('#compare-agreement').innerText()).toBe('100.0%');
    expect(await page.locator('#compare-images tbody tr').count()).toBeGreaterThan(0);
    await page.screenshot({ path: join(ARTIFACTS, 'compare.png'), fullPage: true, animations: 'disabled' });
    // A link to the comparison shows it at once (stored under run B), no compute step.
    await page.reload();
    await page.locator('#compare-classes tbody tr').first().waitFor();
    expect(await page.locator('#compare-compute').count()).toBe(0);
    await page.close();
  });

  it('detail view: deep link per image, the URL follows previous/next keys, Back closes it', async () => {
    const page = await newPage();
    await page.goto(`${base}/#/runs/run-shortcut?class=3&sort=entropy&order=desc`);
    await expect.poll(() => page.locator('#gallery .card').count()).toBe(10);
    expect(await page.locator('#filter-sort').inputValue()).toBe('entropy');
    expect(await page.locator('#filter-order').inputValue()).toBe('desc');
    const keys = await page.locator('#gallery .card').evaluateAll((cards) => cards.map((c) => (c as HTMLElement).dataset.key as string));
    // The gallery's order is the API's entropy order.
    const entropy = new Map(lines.map((l) => [`${SOURCE}${l.key}`, l.metrics?.entropy as number]));
    expect(keys.map((k) => entropy.get(k)!)).toEqual(keys.map((k) => entropy.get(k)!).sort((a, b) => b - a));

    await page.locator(`#gallery .card[data-key="${keys[1]}"]`).click();
    await page.locator('#image-dialog').waitFor({ state: 'visible' });
    await expect.poll(() => hashOf(page)).toBe(`#/runs/run-shortcut?class=3&sort=entropy&order=desc&image=${keys[1]}`);
    await expect.poll(() => page.locator('#detail-position').innerText()).toBe('2 of 10');
    await page.keyboard.press('ArrowRight');
    await expect.poll(() => page.locator('#detail-title').innerText()).toBe(keys[2]);
    await expect.poll(() => page.locator('#detail-position').innerText()).toBe('3 of 10');
    expect(hashOf(page)).toContain(`image=${keys[2]}`);
    await page.keyboard.press('ArrowLeft');
    await page.keyboard.press('ArrowLeft');
    await expect.poll(() => page.locator('#detail-title').innerText()).toBe(keys[0]);
    await expect.poll(() => page.locator('#detail-prev').isDisabled()).toBe(true);
    // Back closes the detail and leaves the filtered gallery's URL.
    await page.goBack();
    await page.locator('#image-dialog').waitFor({ state: 'hidden' });
    expect(hashOf(page)).toBe('#/runs/run-shortcut?class=3&sort=entropy&order=desc');

    // The link opens the image directly, in its place in the listing.
    const link = `${base}/#/runs/run-shortcut?class=3&sort=entropy&order=desc&image=${encodeURIComponent(keys[9]!)}`;
    const fresh = await newPage();
    await fresh.goto(link);
    await fresh.locator('#image-dialog').waitFor({ state: 'visible' });
    await expect.poll(() => fresh.locator('#detail-position').innerText()).toBe('10 of 10');
    expect(await fresh.locator('#detail-next').isDisabled()).toBe(true);
    // Its metrics are listed, labelled from the metric table.
    expect(await fresh.locator('#detail-metrics dd[data-metric="entropy"]').innerText()).toBe((entropy.get(keys[9]!) as number).toFixed(3));
    // Closing takes the image out of the URL.
    await fresh.click('#detail-close');
    await expect.poll(() => hashOf(fresh)).toBe('#/runs/run-shortcut?class=3&sort=entropy&order=desc');
    await fresh.close();
    await page.close();
  });

  it('detail view: the colour bar is the overlay colormap, and overlay, heatmap and prediction JSON download as stored', async () => {
    const key = `${SOURCE}${lines[3]!.key}`;
    const page = await newPage();
    await page.goto(`${base}/#/runs/run-shortcut?image=${encodeURIComponent(key)}`);
    const legend = page.locator('#detail-legend');
    await legend.waitFor();
    expect(await legend.getAttribute('data-colormap')).toBe('viridis');
    expect(await legend.innerText()).toMatch(/low[\s\S]*high/);
    const ends = await legend.locator('canvas').evaluate((c) => {
      const ctx = (c as HTMLCanvasElement).getContext('2d')!;
      return [0, 128, 255].map((x) => Array.from(ctx.getImageData(x, 0, 1, 1).data.slice(0, 3)));
    });
    const viridis = (i: number) => Array.from(VIRIDIS_RGB.subarray(3 * i, 3 * i + 3));
    expect(ends).toEqual([viridis(0), viridis(128), viridis(255)]);
    // The CAM grid is coloured with the same table (matplotlib's quantisation, floor(v·256)).
    const cell = await page.locator('#detail-cam td').nth(7 * 14 + 7).evaluate((td) => ({ title: td.getAttribute('title'), bg: getComputedStyle(td).backgroundColor }));
    const v = Number(cell.title!.split('= ')[1]);
    const [r, g, b] = viridis(v >= 1 ? 255 : Math.floor(v * 256));
    expect(cell.bg).toBe(`rgb(${r}, ${g}, ${b})`);
    await page.screenshot({ path: join(ARTIFACTS, 'detail-legend.png'), animations: 'disabled' });

    const out = outputKeysFor('gradcam-audit/run-shortcut/', key, 'jpeg');
    for (const [role, stored] of [['overlay', out.overlay], ['heatmap', out.heatmap], ['prediction', out.prediction]] as const) {
      const [download] = await Promise.all([page.waitForEvent('download'), page.click(`#download-${role}`)]);
      expect(download.suggestedFilename()).toBe(stored.split('/').pop());
      const file = await download.path();
      const expected = (await h.b.store.get(h.b.bucket, stored)).body;
      expect(Buffer.compare(readFileSync(file), expected)).toBe(0);
    }
    await page.close();
  });
});
