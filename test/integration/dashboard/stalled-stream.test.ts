/**
 * Objects the dashboard streams instead of keeping (a finished run's manifest, a part file above
 * the part cache's size limit) are read under the same bounds as the other part reads: a GET that
 * never answers, or an answer that stops mid-body, fails the request with a 503 naming the object
 * instead of holding it open forever. The stalls are made by a fault proxy between the dashboard
 * (wired as the CLI wires it) and the real S3 server.
 */
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DashboardOptions } from '../../../src/dashboard/options.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import { partName, partsPrefix } from '../../../src/shared/queue/result-parts.js';
import { finalizeRun, s3StreamUploader } from '../../../src/shared/run-finalizer.js';
import { startProxiedDashboard, type ProxiedDashboard } from './harness.js';
import { createSeedRun, okLine, type SeededRun } from './seed.js';

const OPTIONS: Partial<DashboardOptions> = { partWaitMs: 300, partReads: { attemptTimeoutMs: 300, attempts: 2, concurrency: 8 } };
/** Two attempts of 300 ms plus room for a loaded 2-core machine; an unbounded read never answers. */
const ANSWER_BOUND_MS = 4000;

describe('a dashboard request while a streamed S3 read stalls', () => {
  let d: ProxiedDashboard;
  let finished: SeededRun;
  let live: SeededRun;
  let largePart: string;

  beforeAll(async () => {
    d = await startProxiedDashboard(OPTIONS, async ({ target, t, b }) => {
      // A finished run: its lines are in manifest.jsonl only (the finalizer deleted the parts).
      finished = await createSeedRun(target, 'finished', ['a.png', 'b.png', 'c.png']);
      for (const key of finished.keys) await target.runs.recordResult(finished.runId, okLine(key));
      expect((await finalizeRun(finished.runId, { runs: target.runs, redis: t.redis, upload: s3StreamUploader(b.store.client) })).status).toBe('written');

      // A live run with a merged part above the part cache's 1 MiB limit (streamed, never kept).
      live = await createSeedRun(target, 'live', ['a.png', 'b.png']);
      const record = await target.runs.requireRun(live.runId);
      const padded = (key: string): string => `${JSON.stringify({ ...okLine(key), pad: 'x'.repeat(600 * 1024) })}\n`;
      largePart = `${partsPrefix(live.outputPrefix, record.epoch)}${partName(Date.now(), 'merged', 0)}`;
      await b.store.put(b.bucket, largePart, live.keys.map(padded).join(''), { contentType: 'application/x-ndjson' });
    });
  });

  afterAll(async () => {
    await d?.close(); // the proxy first: it ends any GET still held, so the requests and the app can close
  });

  /** A gallery page, timed; a request still open after twice the bound is reported as such. */
  async function gallery(run: SeededRun): Promise<{ ms: number; status: number | 'no answer'; body: { error?: string; message?: string; items?: RunManifestLine[] } }> {
    const started = Date.now();
    const request = d.app.inject({ method: 'GET', url: `/api/runs/${run.runId}/images?limit=24` });
    let timer: NodeJS.Timeout | undefined;
    const unanswered = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 2 * ANSWER_BOUND_MS)));
    const res = (await Promise.race([request, unanswered]).finally(() => clearTimeout(timer))) as LightMyRequestResponse | null;
    return { ms: Date.now() - started, status: res ? res.statusCode : 'no answer', body: res ? res.json() : {} };
  }

  const objectGets = (suffix: string) => (r: { method: string; path: string }) => r.method === 'GET' && r.path.split('?')[0]!.endsWith(suffix);

  it("a finished run's manifest GET that never answers: 503 naming the manifest, within the bound", async () => {
    d.proxy.setRules([{ kind: 'hang', match: objectGets('/manifest.jsonl') }]);
    const res = await gallery(finished);
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(res.body).toMatchObject({ error: 'TRANSIENT' });
    expect(res.body.message).toMatch(/^reading s3:\/\/.*\/gradcam-audit\/finished\/manifest\.jsonl: no answer within 300 ms, 2 attempts/);
  });

  it('a manifest answer that stops mid-body: 503 saying S3 sent nothing more, within the bound', async () => {
    d.proxy.setRules([{ kind: 'stall', afterBytes: 40, match: objectGets('/manifest.jsonl') }]);
    const res = await gallery(finished);
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(res.body.message).toMatch(/manifest\.jsonl: S3 sent nothing for 300 ms mid-object/);
  });

  it('a part above the cache limit whose GET never answers: 503 naming the part', async () => {
    d.proxy.setRules([{ kind: 'hang', match: objectGets('.jsonl') }]);
    const res = await gallery(live);
    expect(res.status).toBe(503);
    expect(res.ms).toBeLessThan(ANSWER_BOUND_MS);
    expect(res.body.message).toContain(`${largePart}: no answer within 300 ms`);
  });

  it('once S3 answers again, both read whole', async () => {
    d.proxy.setRules([]);
    expect((await gallery(finished)).body.items?.map((l) => l.key)).toEqual(finished.keys);
    expect((await gallery(live)).body.items?.map((l) => l.key)).toEqual(live.keys);
  });
});
