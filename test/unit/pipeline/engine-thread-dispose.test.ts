/**
 * Disposing a real engine thread while its ONNX engine runs a batch. onnxruntime-node runs a
 * session synchronously on the thread, and a thread ended inside the run aborts the whole process
 * when the run returns ("terminate called after throwing an instance of 'Napi::Error'", SIGABRT):
 * here that is this vitest fork dying ("Worker exited unexpectedly"). That happened whenever the
 * batch outlasted the wrapper's wait (12 s; a 224-image batch on a loaded 2-core CI machine).
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { SESSION_POOL_DEFAULTS } from '../../../src/worker/engine/onnx/session-pool.js';
import type { Engine, EngineRequest, PreprocessedImage } from '../../../src/worker/engine/engine.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { createThreadedEngine, THREAD_DISPOSE_WAIT_MS } from '../../../src/worker/pipeline/engine-thread.js';
import type { ThreadedEngineOptions } from '../../../src/worker/pipeline/engine-thread.js';

// One batch of BATCH images takes about 1-3 s on one core: far longer than SHORT_WAIT_MS, far
// shorter than THREAD_DISPOSE_WAIT_MS.
const SIZE = 128;
const BATCH = 64;
const SHORT_WAIT_MS = 200;
const spec = () => vggShapedSpec({ inputShape: [SIZE, SIZE, 3], blocks: [{ filters: 32, convs: 2 }, { filters: 64, convs: 2 }], classes: 6, seed: 3 });

function images(n: number): PreprocessedImage[] {
  return Array.from({ length: n }, (_, k) => {
    const data = new Float32Array(SIZE * SIZE * 3);
    for (let i = 0; i < data.length; i++) data[i] = ((i * (k + 3)) % 97) - 48;
    return { data, height: SIZE, width: SIZE };
  });
}

const request = (): EngineRequest => ({ images: images(BATCH), targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' });

function capture(): { logger: pino.Logger; messages: () => string[] } {
  const out: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _e, cb) => (out.push(chunk.toString()), cb()) });
  return { logger: pino({ level: 'warn' }, stream), messages: () => out.map((l) => (JSON.parse(l) as { msg: string }).msg) };
}

/** A threaded ONNX engine on one CPU thread, without the disk cache or the placement warm-up. */
function onnxThread(options: ThreadedEngineOptions = {}): Promise<Engine> {
  const onnx = { executionProviders: ['cpu' as const], intraOpThreads: 1, cacheDir: null, checkPlacement: false };
  return createThreadedEngine({ spec: spec(), engine: 'onnx', backend: 'wasm', onnx, logLevel: 'warn' }, undefined, options);
}

/** The batch's outcome: its result count, or the name of its error. */
const outcome = (p: Promise<unknown[]>): Promise<number | string> => p.then((r) => r.length, (err: Error) => err.name);

describe('disposing the engine thread', () => {
  it('waits at least as long as the engine itself waits for batches in flight', () => {
    expect(THREAD_DISPOSE_WAIT_MS).toBeGreaterThan(SESSION_POOL_DEFAULTS.disposeWaitMs);
  });

  it('lets a batch in flight on the ONNX engine finish before the thread ends', async () => {
    const { logger, messages } = capture();
    const engine = await onnxThread({ logger });
    const batch = outcome(engine.explain(request()));
    // The thread takes the batch first; the engine's dispose then waits for it.
    await engine.dispose();
    expect(await batch).toBe(BATCH);
    expect(messages()).toEqual([]);
    await expect(engine.predict(images(1))).rejects.toThrow(/disposed/);
  }, 60_000);

  it('past its wait, ends the thread after the ONNX Runtime run in flight, never inside it', async () => {
    const { logger, messages } = capture();
    const engine = await onnxThread({ logger, disposeWaitMs: SHORT_WAIT_MS });
    const batch = outcome(engine.explain(request()));
    // Ending the thread inside the run would abort this process once the run returns, before
    // dispose resolves (terminate() resolves when the thread has exited).
    await engine.dispose();
    // The call was failed at the deadline; the run itself went on to its end.
    expect(await batch).toBe('EngineDisposedError');
    // The run was in progress at the deadline (else this test proves nothing): dispose said it waited.
    expect(messages()).toEqual([expect.stringMatching(/inside an ONNX Runtime call/)]);
    await expect(engine.predict(images(1))).rejects.toThrow(/disposed/);
    await engine.dispose(); // idempotent
  }, 60_000);
});
