/**
 * The dashboard in a real browser: Debian's Chromium driven by playwright-core against a dashboard
 * on a real Redis and S3 server. Screenshots land in test-artifacts/e2e/ for people to look at.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { describeError, TransientError } from '../../src/shared/errors.js';
import { writeHeartbeat } from '../../src/shared/queue/heartbeat.js';
import { DEFAULT_JOB_POLICY, JOB_NAME, jobIdFor, jobOptionsFor } from '../../src/shared/queue/contract.js';
import { startHarness, type DashboardHarness } from '../integration/dashboard/harness.js';
import { createSeedRun, mixedImages, seedRun, simulateProgress, type SeedImage } from '../integration/dashboard/seed.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(process.cwd(), 'test-artifacts', 'e2e');
const hasChromium = existsSync(CHROMIUM);
if (!hasChromium) process.stderr.write(`[e2e] skipping the dashboard browser tests: ${CHROMIUM} is missing (install it with: apt-get install -y chromium)\n`);

describe.skipIf(!hasChromium)('dashboard in Chromium', () => {
  let h: DashboardHarness;
  let base: string;
  let context: BrowserContext;
  let profile: string;
  const problems: string[] = [];

  beforeAll(async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    h = await startHarness({ liveIntervalMs: 500 });
    base = await h.app.listen({ port: 0, host: '127.0.0.1' });
    profile = mkdtempSync(join(tmpdir(), 'gca-chromium-'));
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1360, height: 900 },
      // evil.example resolves to this machine, as after a DNS rebinding.
      args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic', '--host-resolver-rules=MAP evil.example 127.0.0.1'],
    });
  });
  afterAll(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await h?.close();
  });

  async function newPage(): Promise<Page> {
    const page = await context.newPage();
    // Script errors and CSP violations show up here; a clean UI produces none.
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    return page;
  }

  it('shows a run progressing live on the overview', async () => {
    const images: SeedImage[] = Array.from({ length: 10 }, (_, i) => ({ name: `live/img-${String(i).padStart(2, '0')}.png`, status: 'ok', cls: i % 4, probability: 0.5 + i / 25 }));
    const run = await createSeedRun(h.seed, 'run-e2e-live', images.map((i) => i.name));
    const page = await newPage();
    await page.goto(`${base}/#/`);
    const bar = page.locator('progress[data-run="run-e2e-live"]');
    await bar.waitFor();
    expect(await bar.getAttribute('max')).toBe('10');
    const before = Number(await bar.evaluate((el) => (el as HTMLProgressElement).value));

    const progress = simulateProgress(h.seed, run, images, 250);
    // The bar must advance while the page stays open (no reload): updates arrive over SSE.
    await page.waitForFunction((b) => {
      const el = document.querySelector('progress[data-run="run-e2e-live"]') as HTMLProgressElement | null;
      return el !== null && el.value > b && el.value < 10;
    }, before, { timeout: 20_000 });
    await page.screenshot({ path: join(ARTIFACTS, 'overview-progress.png'), fullPage: true, animations: 'disabled' });
    // Links stay clickable while live updates arrive (rows are updated in place, not replaced).
    await page.click('a[href="#/runs/run-e2e-live"]');
    await page.locator('#run-stats .stat').first().waitFor();
    await page.goBack();
    await bar.waitFor();
    await progress.done;
    await page.waitForFunction(() => (document.querySelector('progress[data-run="run-e2e-live"]') as HTMLProgressElement | null)?.value === 10, undefined, { timeout: 20_000 });
    const row = page.locator('tr[data-run="run-e2e-live"]');
    await expect.poll(async () => row.innerText()).toContain('10 ok');
    expect(await row.innerText()).toContain(`s3://${h.b.bucket}/photos/run-e2e-live/`);
    await page.close();
  });

  it('opens a run, filters the gallery and opens an image side by side with its top-5 and CAM grid', async () => {
    await seedRun(h.seed, 'run-e2e', mixedImages());
    const page = await newPage();
    await page.goto(`${base}/#/runs/run-e2e`);
    await page.locator('#gallery .card').first().waitFor();
    await expect.poll(() => page.locator('#gallery .card').count()).toBe(8);
    expect(await page.locator('#degenerate-count').innerText()).toBe('1');
    await expect.poll(() => page.locator('#failures-table tbody tr').count()).toBe(2);
    expect(await page.locator('#class-histogram svg rect').count()).toBe(3);
    expect(await page.locator('#throughput-chart svg rect').count()).toBeGreaterThan(0);
    expect(await page.locator('#link-manifest').getAttribute('href')).toBe('/api/runs/run-e2e/manifest.jsonl');

    // Filter: golden retrievers with probability at least 0.5.
    await page.locator('#filter-class option[value="207"]').waitFor({ state: 'attached' });
    await page.selectOption('#filter-class', '207');
    await page.fill('#filter-min', '0.5');
    await page.click('#filter-apply');
    await expect.poll(() => page.locator('#gallery .card').count()).toBe(2);
    const labels = await page.locator('#gallery .card .cls').allInnerTexts();
    expect(labels).toEqual(['golden_retriever', 'golden_retriever']);
    // Thumbnails come back as real images through the proxy.
    await page.waitForFunction(() => Array.from(document.querySelectorAll<HTMLImageElement>('#gallery img.thumb')).every((i) => i.complete && i.naturalWidth > 0));
    await page.screenshot({ path: join(ARTIFACTS, 'run-gallery-filtered.png'), fullPage: true, animations: 'disabled' });

    // Status filter: the failures only.
    await page.selectOption('#filter-class', '');
    await page.fill('#filter-min', '');
    await page.selectOption('#filter-status', 'failed');
    await page.click('#filter-apply');
    await expect.poll(() => page.locator('#gallery .card[data-status="failed"]').count()).toBe(2);
    expect(await page.locator('#gallery .card').count()).toBe(2);

    await page.selectOption('#filter-status', 'ok');
    await page.selectOption('#filter-class', '207');
    await page.click('#filter-apply');
    await expect.poll(() => page.locator('#gallery .card').count()).toBe(3);
    await page.locator('#gallery .card[data-key="photos/run-e2e/dogs/rex.png"]').click();
    const dialog = page.locator('#image-dialog');
    await dialog.waitFor({ state: 'visible' });
    await page.waitForFunction(() => ['detail-overlay', 'detail-original'].every((id) => {
      const img = document.getElementById(id) as HTMLImageElement | null;
      return img !== null && img.complete && img.naturalWidth > 0;
    }));
    const sizes = await page.evaluate(() => ['detail-overlay', 'detail-original'].map((id) => {
      const r = (document.getElementById(id) as HTMLImageElement).getBoundingClientRect();
      return { x: r.x, y: r.y, w: r.width };
    }));
    // Side by side: same row, overlay on the left.
    expect(Math.abs(sizes[0]!.y - sizes[1]!.y)).toBeLessThan(2);
    expect(sizes[0]!.x + sizes[0]!.w).toBeLessThanOrEqual(sizes[1]!.x);
    const top5 = await page.locator('#detail-top5 li').allInnerTexts();
    expect(top5).toHaveLength(5);
    expect(top5[0]).toContain('golden_retriever');
    expect(top5[0]).toContain('93.0%');
    expect(await page.locator('#detail-cam tr').count()).toBe(14);
    expect(await page.locator('#detail-cam td').count()).toBe(14 * 14);
    await page.screenshot({ path: join(ARTIFACTS, 'image-detail.png'), animations: 'disabled' });
    await page.click('#detail-close');

    await writeHeartbeat(h.t.redis, { prefix: h.t.prefix }, {
      workerId: 'gpu-node-1-4242',
      host: 'gpu-node-1',
      pid: 4242,
      engine: 'onnx',
      backend: 'cuda',
      device: 'NVIDIA H100 80GB HBM3',
      batchSize: 32,
      imagesPerSecond: 412.4,
      processed: 18250,
      failed: 3,
      inFlight: 32,
      startedAt: new Date(Date.now() - 3_600_000).toISOString(),
      lastSeen: new Date().toISOString(),
      version: '0.1.0',
      status: 'running',
    });
    await page.goto(`${base}/#/workers`);
    const worker = page.locator('#workers-table tr[data-worker="gpu-node-1-4242"]');
    // Seen once under load (2 of 16 runs, not reproduced since): say what the page showed instead.
    await worker.waitFor().catch(async (err: unknown) => {
      const shown = await page.locator('#app').innerText().catch(() => '(unreadable)');
      throw new Error(`workers row never appeared; the page showed: ${shown.slice(0, 500)}`, { cause: err });
    });
    const cells = await worker.locator('td').allInnerTexts();
    expect(cells).toEqual(['gpu-node-1-4242', 'gpu-node-1 (pid 4242)', 'running', 'onnx / cuda', 'NVIDIA H100 80GB HBM3', '32', '412 img/s', '18,250', '3', expect.stringMatching(/just now|\d+ s ago/)]);
    await page.screenshot({ path: join(ARTIFACTS, 'workers.png'), animations: 'disabled' });

    // bull-board renders under its own CSP (inline styles, no inline scripts) and lists the queue.
    await page.goto(`${base}/queues/`);
    await page.getByText(h.queue.name).first().click({ timeout: 20_000 });
    await page.getByText(/failed/i).first().waitFor({ timeout: 20_000 });
    await page.screenshot({ path: join(ARTIFACTS, 'bull-board.png'), animations: 'disabled' });
    await page.close();
    // bull-board's template links Google Fonts; the CSP blocks that third-party request on purpose
    // (it would leak the dashboard's address and fails offline anyway). Nothing else may appear.
    expect(problems.filter((p) => !p.includes('https://fonts.googleapis.com/'))).toEqual([]);
  });

  it('explains an unknown run instead of showing empty panels', async () => {
    const page = await newPage();
    await page.goto(`${base}/#/runs/no-such-run`);
    const box = page.locator('#run-missing');
    await box.waitFor();
    expect(await box.innerText()).toContain('no run "no-such-run"');
    await page.close();
  });

  it('retries a retryable failure from the failures table', async () => {
    const run = await createSeedRun(h.seed, 'run-e2e-retry', ['flaky.png']);
    const key = run.keys[0]!;
    await h.queue.add(JOB_NAME, { runId: run.runId, key }, jobOptionsFor(run.runId, run.epoch, key, { ...DEFAULT_JOB_POLICY, attempts: 1 }));
    // A real BullMQ worker fails the job with a transient error and records it, as the pipeline does.
    const connection = new Redis(h.t.url, { maxRetriesPerRequest: null });
    const recorded = new Promise<void>((resolve) => {
      const worker = new Worker(h.queue.name, async () => {
        throw new TransientError('S3 request failed with HTTP 503');
      }, { connection });
      worker.on('failed', (_job, err) => {
        void h.seed.runs.recordResult(run.runId, { key, status: 'failed', error: describeError(err) }).then(async () => {
          await worker.close();
          connection.disconnect();
          resolve();
        });
      });
    });
    await recorded;

    const page = await newPage();
    await page.goto(`${base}/#/runs/run-e2e-retry`);
    const row = page.locator(`#failures-table tr[data-key="${key}"]`);
    await row.waitFor();
    expect(await row.innerText()).toContain('TRANSIENT: S3 request failed with HTTP 503');
    await row.getByRole('button', { name: 'Retry' }).click();
    await expect.poll(async () => (await h.queue.getJob(jobIdFor(run.runId, run.epoch, key)))?.getState()).toBe('waiting');
    await page.close();
  });

  it('a page on another origin cannot add jobs through bull-board, and a rebound host name is refused', async () => {
    // The configuration where a forged request would do the most: queue admin on, no auth (loopback).
    const admin = await startHarness({ queueAdmin: true });
    const adminBase = await admin.app.listen({ port: 0, host: '127.0.0.1' });
    const addUrl = `${adminBase}/queues/api/queues/${encodeURIComponent(admin.queue.name)}/add`;
    // The attacker's page auto-submits a plain HTML form (no preflight, cookies and basic auth attached).
    const attacker = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end(`<form id="f" method="post" action="${addUrl}"><input name="name" value="explain"><input name="data" value='{"runId":"x","source":{"bucket":"secret","key":"k.jpg"}}'></form><script>document.getElementById('f').submit()</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    const attackerPort = (attacker.address() as AddressInfo).port;
    const page = await context.newPage();
    try {
      const forged = page.waitForResponse((r) => r.url() === addUrl);
      await page.goto(`http://evil.example:${attackerPort}/`);
      expect((await forged).status()).toBe(403);
      expect(await admin.queue.getJobCounts('waiting', 'delayed', 'prioritized')).toEqual({ waiting: 0, delayed: 0, prioritized: 0 });

      // DNS rebinding: the attacker's name now points at the dashboard; its Host header gives it away.
      const rebound = await page.goto(`http://evil.example:${new URL(adminBase).port}/api/runs`);
      expect(rebound?.status()).toBe(421);
      expect(await rebound?.text()).toContain('--allowed-host');
    } finally {
      await page.close();
      // The browser keeps its connection alive; close() alone would wait for it.
      attacker.closeAllConnections();
      await new Promise<void>((resolve) => attacker.close(() => resolve()));
      await admin.close();
    }
  });
});
