import { describe, expect, it } from 'vitest';
import { SESSION_POOL_DEFAULTS } from '../../../src/worker/engine/onnx/session-pool.js';
import type { EngineRequest, PreprocessedImage } from '../../../src/worker/engine/engine.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { createThreadedEngine, THREAD_DISPOSE_WAIT_MS } from '../../../src/worker/pipeline/engine-thread.js';

// Sized so that one batch takes well over a second on a CPU (about 2-3 s on 2 cores): longer
// than the thread wrapper used to wait for dispose before terminating the thread.
const SIZE = 128;
const spec = () => vggShapedSpec({ inputShape: [SIZE, SIZE, 3], blocks: [{ filters: 32, convs: 2 }, { filters: 64, convs: 2 }], classes: 6, seed: 3 });

function images(n: number): PreprocessedImage[] {
  return Array.from({ length: n }, (_, k) => {
    const data = new Float32Array(SIZE * SIZE * 3);
    for (let i = 0; i < data.length; i++) data[i] = ((i * (k + 3)) % 97) - 48;
    return { data, height: SIZE, width: SIZE };
  });
}

describe('disposing the engine thread', () => {
  it('waits at least as long as the engine itself waits for batches in flight', () => {
    expect(THREAD_DISPOSE_WAIT_MS).toBeGreaterThan(SESSION_POOL_DEFAULTS.disposeWaitMs);
  });

  it('lets a batch in flight on the ONNX engine finish before the thread ends', async () => {
    const engine = await createThreadedEngine({ spec: spec(), engine: 'onnx', backend: 'wasm' });
    const request: EngineRequest = { images: images(224), targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'logit' };
    const t0 = performance.now();
    const batch = engine.explain(request).then((results) => results.length, (err: Error) => err.name);
    // The thread takes the batch first; the engine's dispose then waits for it.
    await engine.dispose();
    const ms = performance.now() - t0;
    expect(await batch).toBe(224);
    // Only meaningful when the batch outlasts the old 1 s wait by a clear margin; a much faster machine makes it vacuous.
    expect(ms).toBeGreaterThan(1500);
    await expect(engine.predict(images(1))).rejects.toThrow(/disposed/);
  }, 30_000);
});
