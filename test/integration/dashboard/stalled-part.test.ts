/**
 * A dashboard poll of a live run must not wait on a slow S3 GET of a part file. In the chaos run,
 * GETs of the newest parts took 1-10 s (up to 44 s) on a busy S3 server and polls went unanswered
 * past 15 s. Here the GETs of new parts hang at the fault proxy (no answer at all) between the
 * dashboard (wired as the CLI wires it) and the real S3 server: every poll must answer within a
 * bound, with the run's counters current, and the stalled part's lines must show once S3 answers
 * again (its read is aborted and sent again).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DASHBOARD_DEFAULTS, type DashboardOptions } from '../../../src/dashboard/options.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { startProxiedDashboard, type ProxiedDashboard } from './harness.js';
import { createSeedRun, okLine, type SeededRun } from './seed.js';

/** What a poll may take while a part GET hangs: the wait for parts plus generous room for a loaded 2-core machine. */
const POLL_BOUND_MS = 4000;
const OPTIONS: Partial<DashboardOptions> = {
  partWaitMs: 300,
  // Longer than the bound: a poll that waited for the GET's first attempt would exceed it.
  partReads: { ...DASHBOARD_DEFAULTS.partReads, attemptTimeoutMs: 6000 },
};

describe('a dashboard poll while a part GET stalls', () => {
  let d: ProxiedDashboard;
  let run: SeededRun;

  beforeAll(async () => {
    d = await startProxiedDashboard(OPTIONS, async ({ target }) => {
      run = await createSeedRun(target, 'stall', ['a.png', 'b.png', 'c.png']);
      for (const key of run.keys.slice(0, 2)) await target.runs.recordResult(run.runId, okLine(key));
    });
  });

  afterAll(async () => {
    await d?.close();
  });

  /** The run page and a gallery page, as one poll of the live pages asks for them, timed. */
  async function poll() {
    const started = Date.now();
    const [detail, gallery] = await Promise.all([`/api/runs/${run.runId}`, `/api/runs/${run.runId}/images?limit=24`].map((url) => d.app.inject({ method: 'GET', url })));
    const ms = Date.now() - started;
    expect(detail?.statusCode, detail?.body).toBe(200);
    expect(gallery?.statusCode, gallery?.body).toBe(200);
    return {
      ms,
      detail: detail?.json() as { run: { done: number }; analytics: { ok: number } },
      keys: (gallery?.json() as { items: RunManifestLine[] }).items.map((l) => l.key),
    };
  }

  it('answers within the bound from the parts already read, then shows the stalled part once S3 answers', async () => {
    const first = await poll();
    expect(first.detail.analytics.ok).toBe(2);

    // GETs of part files hang from now on (listings and other objects pass).
    const partGet = (r: { method: string; path: string }) => r.method === 'GET' && r.path.includes('_parts/') && !r.path.includes('list-type');
    d.proxy.setRules([{ kind: 'hang', match: partGet }]);
    const late = run.keys[2] as string;
    await d.writer.recordResult(run.runId, okLine(late));

    for (let i = 0; i < 2; i++) {
      const during = await poll();
      expect(during.ms, `poll ${i + 1} while the part GET hangs`).toBeLessThan(POLL_BOUND_MS);
      expect(during.detail.run.done, 'the counters are current').toBe(3);
      expect(during.detail.analytics.ok, 'the lines read so far').toBe(2);
      expect(during.keys).toEqual(run.keys.slice(0, 2));
    }
    expect(d.proxy.stats.byKind.hang, 'the part GET reached the proxy and hung').toBeGreaterThanOrEqual(1);

    // S3 answers again: the hung attempt is aborted after attemptTimeoutMs and sent again.
    d.proxy.setRules([]);
    const deadline = Date.now() + 3 * (OPTIONS.partReads?.attemptTimeoutMs ?? 0);
    let after = await poll();
    while (after.detail.analytics.ok < 3 && Date.now() < deadline) {
      expect(after.ms).toBeLessThan(POLL_BOUND_MS);
      await new Promise((r) => setTimeout(r, 200));
      after = await poll();
    }
    expect(after.detail.analytics.ok, 'the stalled part, read on its next attempt').toBe(3);
    expect(after.keys).toEqual(run.keys);
  }, 60_000);
});
