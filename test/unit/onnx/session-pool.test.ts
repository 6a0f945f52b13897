/**
 * The cap on open method sessions (OnnxRuntimeOptions.maxSessions), with real ONNX Runtime
 * sessions on a small VGG-shaped model: eviction releases the least recently used idle session,
 * never one under a running batch, and an evicted method reopens with the same results; dispose
 * waits (bounded) for the batches in flight.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { EngineDisposedError, isRetryable } from '../../../src/shared/errors.js';
import type { CamMethod } from '../../../src/shared/explain-options.js';
import type { EngineImageResult } from '../../../src/worker/engine/engine.js';
import { GRAPH_IO, compileGraph } from '../../../src/worker/engine/onnx/compile-graph.js';
import { createOnnxEngine, sessionOptions } from '../../../src/worker/engine/onnx/engine.js';
import type { OnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { diskGraphCache } from '../../../src/worker/engine/onnx/graph-cache.js';
import { parseOnnxFlags, resolveOnnxRuntimeOptions } from '../../../src/worker/engine/onnx/options.js';
import { SessionPool } from '../../../src/worker/engine/onnx/session-pool.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { randomImages } from './helpers/images.js';

const spec = vggShapedSpec({ seed: 17, inputStd: 64 });
const images = randomImages(4, 32, 32, 53);
const request = (method: CamMethod, imgs = images) => ({ images: imgs, targets: { kind: 'topk' as const }, topK: 2, method, score: 'logit' as const });

function capture(): { logger: pino.Logger; lines: () => Array<{ level: number; msg: string; method?: string }> } {
  const out: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _e, cb) => (out.push(chunk.toString()), cb()) });
  return { logger: pino({ level: 'info' }, stream), lines: () => out.map((l) => JSON.parse(l) as { level: number; msg: string; method?: string }) };
}

function expectSame(actual: EngineImageResult[], expected: EngineImageResult[]): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((r, i) => {
    expect(r.cams.map((c) => c.classIndex)).toEqual(expected[i].cams.map((c) => c.classIndex));
    r.cams.forEach((cam, j) => cam.grid.forEach((v, k) => expect(Math.abs(v - expected[i].cams[j].grid[k])).toBeLessThan(1e-6)));
  });
}

let dir: string;
let reference: OnnxEngine;
const expected = new Map<CamMethod, EngineImageResult[]>();
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'onnx-pool-'));
  // Every method open at once: the results each capped engine must reproduce.
  reference = await createOnnxEngine({ spec, cache: null, runtime: { intraOpThreads: 1, maxSessions: 5, checkPlacement: false } });
  for (const m of ['gradcam', 'hirescam', 'layercam'] as const) expected.set(m, await reference.explain(request(m)));
  expect(reference.info.sessions).toBe(5); // every gradient method, each with its own session
});
afterAll(async () => {
  await reference.dispose();
  rmSync(dir, { recursive: true, force: true });
});

const capped = (maxSessions: number, methods: CamMethod[], logger?: pino.Logger) =>
  createOnnxEngine({ spec, cache: diskGraphCache(dir), runtime: { intraOpThreads: 1, maxSessions, checkPlacement: false }, methods, logger });

describe('ONNX method sessions: at most maxSessions open', () => {
  it('defaults to 2, so one method per run never evicts, and refuses a cap below 1', () => {
    expect(resolveOnnxRuntimeOptions().maxSessions).toBe(2);
    expect(() => resolveOnnxRuntimeOptions({ maxSessions: 0 })).toThrow(/--onnx-max-sessions/);
    expect(parseOnnxFlags({ onnxMaxSessions: '3' }).maxSessions).toBe(3);
    expect(() => parseOnnxFlags({ onnxMaxSessions: 'two' })).toThrow(/--onnx-max-sessions.*positive integer.*"two"/);
  });

  it('with a cap of 1, two methods alternating release and reopen each other and give the same maps every time', async () => {
    const { logger, lines } = capture();
    const engine = await capped(1, ['gradcam', 'hirescam'], logger);
    try {
      // What --batch-size auto sizes for (batch-size.ts): one session at once.
      expect(engine.info.sessions).toBe(1);
      expect(engine.sessionStats()).toMatchObject({ open: ['gradcam'], opened: 1, evicted: 0 });
      const order: CamMethod[] = ['gradcam', 'hirescam', 'gradcam', 'hirescam', 'hirescam', 'gradcam'];
      for (const method of order) {
        expectSame(await engine.explain(request(method)), expected.get(method) as EngineImageResult[]);
        // Only the session just used is left open: the other one was released.
        expect(engine.sessionStats()).toMatchObject({ open: [method], inFlight: 0 });
      }
      // Every switch of method opened one session and released one; a repeat opened nothing.
      // The old session was released before the new one loaded: never two weights copies at once.
      expect(engine.sessionStats()).toMatchObject({ opened: 5, evicted: 4, peakLive: 1 });
      // Forward passes run on the open session and open nothing.
      expect((await engine.predict(images)).map((p) => Array.from(p))).toEqual(expected.get('gradcam')?.map((r) => Array.from(r.probabilities)));
      expect(engine.sessionStats()).toMatchObject({ opened: 5, evicted: 4 });
      // One info line for the first eviction, not one per batch.
      const info = lines().filter((l) => l.level === 30 && l.msg.startsWith('released the ONNX Runtime session'));
      expect(info).toHaveLength(1);
      expect(info[0]).toMatchObject({ method: 'gradcam' });
    } finally {
      await engine.dispose();
    }
  });

  it('keeps a session under a running batch open past the cap, and releases it once the batch ends', async () => {
    const engine = await capped(1, ['gradcam', 'hirescam']);
    try {
      const big = randomImages(16, 32, 32, 59);
      const gradcamRef = await reference.explain(request('gradcam', big));
      // gradcam's batch is in flight while hirescam opens: gradcam may not be released under it.
      const running = engine.explain(request('gradcam', big));
      const other = engine.explain(request('hirescam'));
      const [a, b] = await Promise.all([running, other]);
      expectSame(a, gradcamRef);
      expectSame(b, expected.get('hirescam') as EngineImageResult[]);
      const stats = engine.sessionStats();
      expect(stats.inFlight).toBe(0);
      expect(stats.open).toHaveLength(1);
      expect(stats.evicted).toBe(1);
      // Over the cap by one at most, and only if gradcam's batch outlasted hirescam's opening.
      expect(stats.peakLive).toBeLessThanOrEqual(2);
    } finally {
      await engine.dispose();
    }
  });

  it('concurrent calls on one method are not disturbed by the eviction of another', async () => {
    const engine = await capped(2, ['gradcam', 'hirescam', 'layercam']);
    try {
      expect(engine.info.sessions).toBe(2);
      await engine.explain(request('hirescam'));
      expect(engine.sessionStats()).toMatchObject({ open: ['gradcam', 'hirescam'], evicted: 0 });
      await engine.explain(request('gradcam')); // hirescam is now the least recently used
      const calls = [
        ...Array.from({ length: 4 }, () => engine.explain(request('gradcam'))),
        engine.explain(request('layercam')),
        ...Array.from({ length: 4 }, () => engine.explain(request('gradcam'))),
      ];
      const results = await Promise.all(calls);
      results.forEach((r, i) => expectSame(r, expected.get(i === 4 ? 'layercam' : 'gradcam') as EngineImageResult[]));
      expect(engine.sessionStats()).toMatchObject({ evicted: 1, inFlight: 0 });
      expect(engine.sessionStats().open.sort()).toEqual(['gradcam', 'layercam']);
    } finally {
      await engine.dispose();
    }
  });
});

describe('ONNX method sessions: dispose', () => {
  const big = randomImages(64, 32, 32, 71);

  it('waits for the batches in flight before releasing their sessions, and refuses later calls with EngineDisposedError', async () => {
    const gradcamRef = await reference.explain(request('gradcam', big));
    const engine = await capped(2, ['gradcam', 'hirescam']);
    // A forward-only engine (gradient-free methods only) holds its one session the same way.
    const forwardOnly = await createOnnxEngine({ spec, cache: diskGraphCache(dir), runtime: { intraOpThreads: 1, checkPlacement: false }, methods: ['eigencam'] });
    const events: string[] = [];
    const running = engine.explain(request('gradcam', big)).then((r) => (events.push('batch'), r));
    const forward = forwardOnly.predict(big).then((r) => (events.push('forward batch'), r));
    expect(engine.sessionStats().inFlight).toBe(1);
    const disposed = Promise.all([engine.dispose(), forwardOnly.dispose()]).then(() => events.push('disposed'));
    // Once dispose has begun, nothing new is accepted, whatever the method.
    await expect(engine.explain(request('hirescam'))).rejects.toThrow(EngineDisposedError);
    await expect(engine.predict(images)).rejects.toThrow(EngineDisposedError);
    await expect(forwardOnly.predict(images)).rejects.toThrow(/engine is disposed/);
    const [result, probabilities] = await Promise.all([running, forward, disposed]);
    // Both batches ended before dispose did, with the results of an engine left alone.
    expect(events).toHaveLength(3);
    expect(events[2]).toBe('disposed');
    expectSame(result, gradcamRef);
    expect(probabilities.map((p) => Array.from(p))).toEqual(gradcamRef.map((r) => Array.from(r.probabilities)));
    expect(engine.sessionStats()).toMatchObject({ inFlight: 0, live: 0, open: [] });
    expect(forwardOnly.sessionStats()).toMatchObject({ inFlight: 0, live: 0 });
    const err = await engine.explain(request('gradcam')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(EngineDisposedError);
    // Retryable: the image is not at fault, another worker computes it.
    expect(isRetryable(err)).toBe(true);
  });

  it('past its wait, returns with a warning and releases a session still under a batch when that batch ends', async () => {
    const { logger, lines } = capture();
    // The pool itself, on a real session, with a batch the test holds open past the wait.
    const graph = compileGraph(spec, { layer: reference.info.layer, kind: 'explain', method: 'gradcam' }).bytes;
    const options = sessionOptions(['cpu'], resolveOnnxRuntimeOptions({ intraOpThreads: 1 }));
    const pool = new SessionPool(() => ort.InferenceSession.create(graph, options), { maxSessions: 2, disposeWaitMs: 20 }, logger);
    let go!: () => void;
    const gate = new Promise<void>((resolve) => (go = resolve));
    const feeds = {
      [GRAPH_IO.images]: new ort.Tensor('float32', Float32Array.from(images.flatMap((i) => Array.from(i.data))), [images.length, 32, 32, 3]),
      [GRAPH_IO.targets]: new ort.Tensor('int64', new BigInt64Array(images.length).fill(-1n), [images.length, 1]),
      [GRAPH_IO.scoreIsProb]: new ort.Tensor('bool', [true], [1]),
    };
    const running = pool.use('gradcam', async (session) => {
      await gate;
      return session.run(feeds, [GRAPH_IO.probabilities]);
    });
    await pool.dispose();
    expect(lines().filter((l) => l.level === 40).map((l) => l.msg)).toEqual([
      'ONNX Runtime sessions still under 1 batch(es) after 20 ms of dispose (gradcam); each is released when its batch ends',
    ]);
    expect(pool.stats()).toMatchObject({ inFlight: 1, live: 1 });
    await expect(pool.use('gradcam', () => Promise.resolve(null))).rejects.toThrow(EngineDisposedError);
    go();
    const out = await running;
    // The batch ran on its session to the end, and the session was released after it.
    const expectedProbabilities = expected.get('gradcam')?.flatMap((r) => Array.from(r.probabilities)) ?? [];
    Array.from(out[GRAPH_IO.probabilities].data as Float32Array).forEach((p, i) => expect(Math.abs(p - expectedProbabilities[i])).toBeLessThan(1e-6));
    expect(pool.stats()).toMatchObject({ inFlight: 0, live: 0, open: [] });
  });
});
