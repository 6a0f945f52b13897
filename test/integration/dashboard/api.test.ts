import { Worker } from 'bullmq';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeHeartbeat, type WorkerHeartbeat } from '../../../src/shared/queue/heartbeat.js';
import { outputKeysFor } from '../../../src/shared/storage/output-keys.js';
import { startHarness, type DashboardHarness } from './harness.js';
import { finishImage, mixedImages, seedRun, type SeededRun } from './seed.js';

interface ImagesPage {
  total: number;
  offset: number;
  limit: number;
  items: Array<{ key: string; status: string; top1?: { index: number; probability: number }; urls: Record<string, string | null> }>;
}

describe('dashboard JSON API against a real Redis and S3', () => {
  let h: DashboardHarness;
  let run: SeededRun;

  beforeAll(async () => {
    h = await startHarness();
    run = await seedRun(h.seed, 'run-api-1', mixedImages());
    // A second, still-running run: it must be listed too, newest first.
    await seedRun(h.seed, 'run-api-2', [{ name: 'a.png', status: 'ok', cls: 3, probability: 0.5 }]);
    await h.seed.runs.addJobs('run-api-2', [{ key: `photos/run-api-2/b.png` }]);
  });
  afterAll(async () => {
    await h?.close();
  });

  const get = async (url: string) => h.app.inject({ method: 'GET', url });

  it('reports the queue backlog as waiting plus prioritized jobs (the KEDA trigger)', async () => {
    const before = (await h.app.inject({ method: 'GET', url: '/api/queue' })).json() as { backlog: number };
    await h.queue.add('explain', { k: 1 }, { jobId: 'plain-1' });
    await h.queue.add('explain', { k: 2 }, { jobId: 'prio-1', priority: 5 });
    await h.queue.add('explain', { k: 3 }, { jobId: 'prio-2', priority: 1 });
    const res = await h.app.inject({ method: 'GET', url: '/api/queue' });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { backlog: number; counts: Record<string, number> };
    expect(body.counts.prioritized).toBeGreaterThanOrEqual(2);
    expect(body.backlog).toBe(before.backlog + 3);
    for (const id of ['plain-1', 'prio-1', 'prio-2']) await (await h.queue.getJob(id))?.remove();
    expect(((await get('/api/queue')).json() as { backlog: number }).backlog).toBe(before.backlog);
  });

  it('counts active and delayed jobs in the demand the workers must stay up for (the KEDA trigger), not in the backlog', async () => {
    const before = (await get('/api/queue')).json() as { backlog: number; demand: number };
    await h.queue.add('explain', { k: 1 }, { jobId: 'demand-active' });
    await h.queue.add('explain', { k: 2 }, { jobId: 'demand-delayed', delay: 60_000 });
    // A worker takes the first job (it is active now, as a run's last job is while it finalizes).
    const worker = new Worker(h.queue.name, null, { connection: h.queue.opts.connection, autorun: false });
    try {
      const taken = await worker.getNextJob('demand-token');
      expect(taken?.id).toBe('demand-active');
      const body = (await get('/api/queue')).json() as { backlog: number; demand: number; counts: Record<string, number> };
      expect(body.counts.active).toBeGreaterThanOrEqual(1);
      expect(body.backlog).toBe(before.backlog);
      expect(body.demand).toBe(before.demand + 2);
      await taken?.moveToCompleted('done', 'demand-token', false);
    } finally {
      await worker.close();
      for (const id of ['demand-active', 'demand-delayed']) await (await h.queue.getJob(id))?.remove();
    }
    expect(((await get('/api/queue')).json() as { demand: number }).demand).toBe(before.demand);
  });

  it('lists runs with progress, rates and ETA', async () => {
    const res = await get('/api/runs');
    expect(res.statusCode).toBe(200);
    const { runs } = res.json() as { runs: Array<{ id: string; total: number; done: number; failed: number; progress: number; imagesPerSecond: number; etaSeconds: number | null; source: string; state: string }> };
    expect(runs.map((r) => r.id)).toEqual(['run-api-2', 'run-api-1']);
    const r1 = runs[1]!;
    expect(r1).toMatchObject({ total: 8, done: 6, failed: 2, progress: 1, source: `s3://${h.b.bucket}/photos/run-api-1/`, state: 'running' });
    expect(r1.etaSeconds).toBe(0);
    expect(r1.imagesPerSecond).toBeGreaterThan(0);
    const r2 = runs[0]!;
    expect(r2).toMatchObject({ total: 2, done: 1, failed: 0, progress: 0.5 });
    expect(r2.etaSeconds).toBeGreaterThan(0);
  });

  it('returns run detail with throughput, class histogram and degenerate count', async () => {
    const res = await get('/api/runs/run-api-1');
    expect(res.statusCode).toBe(200);
    const body = res.json() as {
      run: { id: string };
      throughput: { binSeconds: number; from: number; to: number; imagesPerSecond: number; bars: Array<{ t: number; seconds: number; count: number }> };
      analytics: { ok: number; failed: number; degenerate: number; classHistogram: Array<{ index: number; label: string; count: number }> };
      links: { manifest: string; summary: string };
    };
    // The chart covers the run's processing span, and its bars hold every finished image.
    expect(body.throughput.bars.reduce((s, b) => s + b.count, 0)).toBe(8);
    expect(body.throughput.to).toBeGreaterThanOrEqual(body.throughput.from);
    expect(body.throughput.bars.reduce((s, b) => s + b.seconds, 0)).toBeCloseTo(body.throughput.to - body.throughput.from, 2);
    expect(body.analytics).toMatchObject({ ok: 6, failed: 2, degenerate: 1 });
    expect(body.analytics.classHistogram).toEqual([
      { index: 207, label: 'golden_retriever', count: 3 },
      { index: 281, label: 'tabby', count: 2 },
      { index: 817, label: 'sports_car', count: 1 },
    ]);
    expect(body.links.manifest).toBe('/api/runs/run-api-1/manifest.jsonl');
  });

  it('answers unknown and malformed run ids with clear errors', async () => {
    const missing = await get('/api/runs/no-such-run');
    expect(missing.statusCode).toBe(404);
    expect(missing.json().message).toContain('no run "no-such-run"');
    const bad = await get('/api/runs/bad:id');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toBe('CONFIG');
  });

  it('filters the gallery by class, probability range and status, with stable pagination', async () => {
    const dogs = (await get('/api/runs/run-api-1/images?class=207')).json() as ImagesPage;
    expect(dogs.total).toBe(3);
    expect(dogs.items.every((i) => i.top1?.index === 207)).toBe(true);

    const confident = (await get('/api/runs/run-api-1/images?minProb=0.8&maxProb=0.95')).json() as ImagesPage;
    expect(confident.items.map((i) => i.key).sort()).toEqual(['photos/run-api-1/cats/tom.png', 'photos/run-api-1/dogs/rex.png']);

    const failed = (await get('/api/runs/run-api-1/images?status=failed')).json() as ImagesPage;
    expect(failed.total).toBe(2);
    expect(failed.items.every((i) => i.status === 'failed' && i.urls.thumbnail === null)).toBe(true);

    const degenerate = (await get('/api/runs/run-api-1/images?degenerate=true')).json() as ImagesPage;
    expect(degenerate.items.map((i) => i.key)).toEqual(['photos/run-api-1/cats/kitty+1%.png']);

    const p1 = (await get('/api/runs/run-api-1/images?limit=3&offset=0')).json() as ImagesPage;
    const p2 = (await get('/api/runs/run-api-1/images?limit=3&offset=3')).json() as ImagesPage;
    const p3 = (await get('/api/runs/run-api-1/images?limit=3&offset=6')).json() as ImagesPage;
    const all = [...p1.items, ...p2.items, ...p3.items].map((i) => i.key);
    expect(p1.total).toBe(8);
    expect(p3.items).toHaveLength(2);
    expect(new Set(all).size).toBe(8);
    expect(all).toEqual([...all].sort());

    const bad = await get('/api/runs/run-api-1/images?minProb=2');
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toContain('minProb');
    const inverted = await get('/api/runs/run-api-1/images?minProb=0.9&maxProb=0.1');
    expect(inverted.statusCode).toBe(400);
  });

  it('validates every query string with the route schema: repeated parameters, wrong types and ranges get 400 naming the parameter', async () => {
    const key = encodeURIComponent('photos/run-api-1/dogs/rex.png');
    const repeated = [
      `/api/runs/run-api-1/image?key=${key}&key=${key}`,
      `/api/runs/run-api-1/objects/original?key=${key}&key=x`,
      `/api/runs/run-api-1/thumbnail?key=${key}&key=x`,
      `/api/runs/run-api-1/thumbnail?key=${key}&of=overlay&of=original`,
      '/api/runs/run-api-1/images?q=a&q=b',
      '/api/runs/run-api-1/images?class=207&class=281',
      '/api/runs/run-api-1/images?status=ok&status=failed',
      '/api/runs/run-api-1/failures?limit=1&limit=2',
      '/api/runs?limit=1&limit=2',
      '/api/events?run=run-api-1&run=run-api-2',
    ];
    for (const url of repeated) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(400);
      const name = /[?&](\w+)=[^&]*&(?:.*&)?\1=/.exec(url)![1]!;
      expect(res.json(), url).toEqual({ error: 'BAD_QUERY', message: `query parameter "${name}" is given 2 times; give it once` });
    }
    const wrong: Array<[string, string]> = [
      ['/api/runs?limit=abc', 'query parameter "limit" must be an integer, got "abc"'],
      ['/api/runs?limit=5000', 'query parameter "limit" must be <= 1000, got "5000"'],
      ['/api/runs/run-api-1/images?limit=201', 'query parameter "limit" must be <= 200, got "201"'],
      ['/api/runs/run-api-1/images?offset=-1', 'query parameter "offset" must be >= 0, got "-1"'],
      ['/api/runs/run-api-1/images?minProb=2', 'query parameter "minProb" must be <= 1, got "2"'],
      ['/api/runs/run-api-1/images?status=done', 'query parameter "status" must be one of all, ok, failed, got "done"'],
      ['/api/runs/run-api-1/images?degenerate=yes', 'query parameter "degenerate" must be a boolean, got "yes"'],
      ['/api/runs/run-api-1/images?class=1.5', 'query parameter "class" must be an integer, got "1.5"'],
      [`/api/runs/run-api-1/thumbnail?key=${key}&of=heatmap`, 'query parameter "of" must be one of overlay, original, got "heatmap"'],
      ['/api/runs/run-api-1/image', 'query parameter "key" is required'],
      ['/api/runs/run-api-1/objects/secret?key=x', 'path parameter "role" must be one of overlay, heatmap, prediction, original, got "secret"'],
    ];
    for (const [url, message] of wrong) {
      const res = await get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.json().message, url).toBe(message);
    }
    // bull-board validates its own query strings: a repeated parameter is a 400 there too, not a 500.
    expect((await get('/queues/api/queues?page=1&page=2')).statusCode).toBe(400);
    // Empty values count as absent, and unknown parameters are ignored.
    const lenient = await get('/api/runs/run-api-1/images?class=&minProb=&q=&_=12345');
    expect(lenient.statusCode).toBe(200);
    expect((lenient.json() as ImagesPage).total).toBe(8);
    // The JSON body of the retry action is validated the same way.
    const post = (payload: unknown) => h.app.inject({ method: 'POST', url: '/api/runs/run-api-1/retry', headers: { 'content-type': 'application/json' }, payload: JSON.stringify(payload) });
    for (const body of [{}, { keys: [] }, { keys: [{ k: 1 }] }, { all: false }, { keys: ['a'], all: true }, { keys: Array.from({ length: 1001 }, (_, i) => `k${i}`) }, { nope: 1 }]) {
      const res = await post(body);
      expect(res.statusCode, JSON.stringify(body).slice(0, 60)).toBe(400);
      expect(res.json().error).toBe('BAD_BODY');
      expect(res.json().message).toContain('expected {"keys": [source keys, 1 to 1000]} or {"all": true}');
    }
  });

  it('never serves a stale gallery page after a new result (the key cache is stamped by the run counters)', async () => {
    const before = (await get('/api/runs/run-api-2/images?status=ok')).json() as ImagesPage;
    expect((await get('/api/runs/run-api-2/images?status=ok')).json()).toEqual(before);
    await finishImage(h.seed, { runId: 'run-api-2', epoch: (await h.seed.runs.requireRun('run-api-2')).epoch, sourcePrefix: 'photos/run-api-2/', outputPrefix: 'gradcam-audit/run-api-2/', keys: [] }, { name: 'b.png', status: 'ok', cls: 1, probability: 0.4 });
    const after = (await get('/api/runs/run-api-2/images?status=ok')).json() as ImagesPage;
    expect(after.total).toBe(before.total + 1);
    expect(after.items.map((i) => i.key)).toContain('photos/run-api-2/b.png');
  });

  it('returns one image with its prediction manifest (top-5 and the 14x14 CAM grid)', async () => {
    const key = 'photos/run-api-1/dogs/max with space.png';
    const res = await get(`/api/runs/run-api-1/image?key=${encodeURIComponent(key)}`);
    expect(res.statusCode).toBe(200);
    const body = res.json() as { line: { key: string }; prediction: { predictions: unknown[]; targets: Array<{ grid: number[]; gridHeight: number }> }; urls: Record<string, string> };
    expect(body.line.key).toBe(key);
    expect(body.prediction.predictions).toHaveLength(5);
    expect(body.prediction.targets[0]!.grid).toHaveLength(14 * 14);
    expect(body.urls.overlay).toBe(`/api/runs/run-api-1/objects/overlay?key=${encodeURIComponent(key)}`);
  });

  it('proxies originals, overlays and thumbnails with correct content types', async () => {
    const key = 'photos/run-api-1/cats/kitty+1%.png';
    const q = `key=${encodeURIComponent(key)}`;
    const original = await get(`/api/runs/run-api-1/objects/original?${q}`);
    expect(original.statusCode).toBe(200);
    expect(original.headers['content-type']).toBe('image/png');
    expect(original.headers['x-content-type-options']).toBe('nosniff');
    expect(original.headers['content-security-policy']).toContain('sandbox');
    expect((await sharp(original.rawPayload).metadata()).width).toBe(96);

    const overlay = await get(`/api/runs/run-api-1/objects/overlay?${q}`);
    expect(overlay.statusCode).toBe(200);
    expect(overlay.headers['content-type']).toBe('image/jpeg');
    const stored = await h.b.store.get(h.b.bucket, outputKeysFor(run.outputPrefix, key, 'jpeg').overlay);
    expect(Buffer.compare(overlay.rawPayload, stored.body)).toBe(0);

    const thumb = await get(`/api/runs/run-api-1/thumbnail?${q}`);
    expect(thumb.statusCode).toBe(200);
    expect(thumb.headers['content-type']).toBe('image/webp');
    expect((await sharp(thumb.rawPayload).metadata()).format).toBe('webp');
  });

  it('answers an undecodable original with a clear 400 instead of a server error', async () => {
    const key = 'photos/run-api-2/corrupt.jpg';
    await h.b.store.put(h.b.bucket, key, 'this is text, not a JPEG', { contentType: 'image/jpeg' });
    await h.seed.runs.addJobs('run-api-2', [{ key }]);
    await h.seed.runs.recordResult('run-api-2', { key, status: 'failed', error: 'INVALID_IMAGE: not a JPEG' });
    const res = await get(`/api/runs/run-api-2/thumbnail?of=original&key=${encodeURIComponent(key)}`);
    expect(res.statusCode).toBe(400);
    expect(res.json()).toMatchObject({ error: 'THUMBNAIL', message: expect.stringContaining(`cannot make a thumbnail of s3://${h.b.bucket}/${key}`) });
  });

  it('rejects path tricks and keys outside the run instead of proxying them', async () => {
    // A secret elsewhere in the same bucket: it must never come back through the proxy.
    await h.b.store.put(h.b.bucket, 'secrets/token.txt', 'top secret', { contentType: 'text/plain' });
    const attempts = [
      'photos/run-api-1/../../secrets/token.txt',
      '../secrets/token.txt',
      'secrets/token.txt',
      'photos/run-api-1/./dogs/rex.png',
      'photos/run-api-2/a.png', // an image of another run
    ];
    for (const key of attempts) {
      for (const role of ['original', 'overlay', 'prediction']) {
        const res = await get(`/api/runs/run-api-1/objects/${role}?key=${encodeURIComponent(key)}`);
        expect([400, 403, 404], `${role} ${key}`).toContain(res.statusCode);
        expect(res.body).not.toContain('top secret');
      }
    }
    // Even when a hostile key made it into the run's results (S3 allows `..` in keys), the proxy
    // refuses to resolve it: the prefix check, not only the result lookup, stops the escape.
    const hostile = 'photos/run-api-2/../../secrets/token.txt';
    await h.seed.runs.addJobs('run-api-2', [{ key: hostile }]);
    await h.seed.runs.recordResult('run-api-2', { key: hostile, status: 'failed', error: 'INVALID_IMAGE: not an image' });
    const escaped = await get(`/api/runs/run-api-2/objects/original?key=${encodeURIComponent(hostile)}`);
    expect(escaped.statusCode).toBe(403);
    expect(escaped.json().message).toContain('not inside the source prefix');
    expect(escaped.body).not.toContain('top secret');
    const unknownRole = await get(`/api/runs/run-api-1/objects/..%2F..%2Fsecrets?key=x`);
    expect([400, 404]).toContain(unknownRole.statusCode);
    const noKey = await get('/api/runs/run-api-1/objects/original');
    expect(noKey.statusCode).toBe(400);
    expect(noKey.json().message).toContain('"key"');
  });

  it('lists failures with reasons (job records gone means not retryable, with the reason)', async () => {
    const res = await get('/api/runs/run-api-1/failures');
    expect(res.statusCode).toBe(200);
    const body = res.json() as { total: number; items: Array<{ key: string; error: string; retryable: boolean; notRetryableReason?: string; jobState: string }> };
    expect(body.total).toBe(2);
    expect(body.items.map((i) => i.error)).toEqual(['TRANSIENT: S3 request failed with HTTP 503', 'INVALID_IMAGE: truncated JPEG data']);
    expect(body.items.every((i) => !i.retryable && i.jobState === 'missing' && i.notRetryableReason?.includes('re-enqueue'))).toBe(true);
  });

  it('lists online workers from heartbeats and drops stale ones', async () => {
    const base: WorkerHeartbeat = {
      workerId: 'gpu-node-1-4242',
      host: 'gpu-node-1',
      pid: 4242,
      engine: 'onnx',
      backend: 'cuda',
      device: 'NVIDIA H100',
      batchSize: 16,
      imagesPerSecond: 412.5,
      processed: 1000,
      failed: 3,
      inFlight: 16,
      startedAt: new Date(Date.now() - 60_000).toISOString(),
      lastSeen: new Date().toISOString(),
      version: '0.1.0',
      status: 'running',
    };
    await writeHeartbeat(h.t.redis, { prefix: h.t.prefix }, base);
    await writeHeartbeat(h.t.redis, { prefix: h.t.prefix }, { ...base, workerId: 'old-1', lastSeen: new Date(Date.now() - 120_000).toISOString() }, Date.now() - 120_000);
    const res = await get('/api/workers');
    const { workers } = res.json() as { workers: Array<WorkerHeartbeat & { lastSeenSecondsAgo: number }> };
    expect(workers.map((w) => w.workerId)).toEqual(['gpu-node-1-4242']);
    expect(workers[0]).toMatchObject({ host: 'gpu-node-1', backend: 'cuda', device: 'NVIDIA H100', batchSize: 16, imagesPerSecond: 412.5 });
    expect(workers[0]!.lastSeenSecondsAgo).toBeLessThan(10);
  });

  it('serves manifest.jsonl and summary.json from the output prefix, and says when they are not written yet', async () => {
    const notYet = await get('/api/runs/run-api-1/manifest.jsonl');
    expect(notYet.statusCode).toBe(404);
    expect(notYet.json().message).toContain('not written yet');
    const lines = ['{"key":"a","status":"ok"}', '{"key":"b","status":"failed","error":"x"}'].join('\n') + '\n';
    await h.b.store.put(h.b.bucket, `${run.outputPrefix}manifest.jsonl`, lines, { contentType: 'application/x-ndjson' });
    await h.b.store.put(h.b.bucket, `${run.outputPrefix}summary.json`, '{"counts":{"total":8}}', { contentType: 'application/json' });
    const manifest = await get('/api/runs/run-api-1/manifest.jsonl');
    expect(manifest.statusCode).toBe(200);
    expect(manifest.headers['content-type']).toContain('application/x-ndjson');
    expect(manifest.body).toBe(lines);
    const summary = await get('/api/runs/run-api-1/summary.json');
    expect(summary.json()).toEqual({ counts: { total: 8 } });
  });

  it('streams live updates as server-sent events', async () => {
    const address = await h.app.listen({ port: 0, host: '127.0.0.1' });
    const controller = new AbortController();
    const res = await fetch(`${address}/api/events?run=run-api-1`, { signal: controller.signal });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    let text = '';
    while (!(text.includes('event: runs') && text.includes('event: run\n'))) {
      const { value, done } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    controller.abort();
    const runEvent = /event: run\ndata: (.*)\n/.exec(text);
    expect(runEvent).not.toBeNull();
    expect(JSON.parse(runEvent![1]!).run.id).toBe('run-api-1');
  });
});
