import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, isRetryable } from '../../../src/shared/errors.js';
import type { Engine, EngineRequest, PreprocessedImage } from '../../../src/worker/engine/engine.js';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { createThreadedEngine } from '../../../src/worker/pipeline/engine-thread.js';

const spec = () => vggShapedSpec({ inputShape: [16, 16, 3], blocks: [{ filters: 4, convs: 1 }, { filters: 8, convs: 1 }], classes: 6, seed: 3 });

function images(n: number): PreprocessedImage[] {
  return Array.from({ length: n }, (_, k) => {
    const data = new Float32Array(16 * 16 * 3);
    for (let i = 0; i < data.length; i++) data[i] = ((i * (k + 3)) % 97) - 48;
    return { data, height: 16, width: 16 };
  });
}

describe('engine in a worker thread', () => {
  let local: Engine;
  let threaded: Engine;
  beforeAll(async () => {
    [local, threaded] = await Promise.all([createEngine({ spec: spec(), backend: 'wasm' }), createThreadedEngine({ spec: spec(), engine: 'tfjs', backend: 'wasm' })]);
  }, 60_000);
  afterAll(async () => {
    await threaded?.dispose();
    await local?.dispose();
  });

  it('reports the same engine info and returns the same results as the engine in this thread', async () => {
    expect(threaded.info).toEqual(local.info);
    const request: EngineRequest = { images: images(3), targets: { kind: 'topk' }, topK: 2, method: 'gradcam++', score: 'logit' };
    const [a, b] = [await local.explain(request), await threaded.explain(request)];
    expect(b).toHaveLength(3);
    b.forEach((r, i) => {
      expect(Array.from(r.probabilities)).toEqual(Array.from(a[i].probabilities));
      expect(r.cams.map((c) => c.classIndex)).toEqual(a[i].cams.map((c) => c.classIndex));
      r.cams.forEach((c, j) => expect(Array.from(c.grid)).toEqual(Array.from(a[i].cams[j].grid)));
    });
    // The caller's inputs are copied, not transferred: they stay usable for a second call.
    expect(request.images[0].data.length).toBe(16 * 16 * 3);
    expect((await threaded.predict(request.images)).map((p) => Array.from(p))).toEqual(a.map((r) => Array.from(r.probabilities)));
  });

  it('rebuilds named errors so retry decisions survive the thread boundary', async () => {
    const bad: EngineRequest = { images: images(1), targets: { kind: 'indices', indices: [99] }, topK: 1, method: 'gradcam', score: 'prob' };
    const failure = (p: Promise<unknown>): Promise<Error> => p.then(() => new Error('expected a failure'), (e: unknown) => e as Error);
    const inThread = await failure(local.explain(bad));
    const viaThread = await failure(threaded.explain(bad));
    expect(inThread).toBeInstanceOf(ConfigError); // a class index the model does not have
    expect(viaThread.constructor).toBe(inThread.constructor);
    expect(viaThread.message).toBe(inThread.message);
    expect(isRetryable(viaThread)).toBe(false);
  });

  it('fails every call clearly once disposed', async () => {
    const e = await createThreadedEngine({ spec: spec(), engine: 'tfjs', backend: 'wasm' });
    await e.dispose();
    await expect(e.explain({ images: images(1), targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'prob' })).rejects.toThrow(/disposed/);
  }, 60_000);
});
