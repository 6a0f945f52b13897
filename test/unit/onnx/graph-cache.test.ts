/**
 * The compiled-graph cache: a second engine on the same model loads the file instead of
 * compiling, gives identical results, and anything that shapes the graph changes the key.
 */
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CAM_METHODS, needsGradient } from '../../../src/shared/explain-options.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { graphCacheKey, diskGraphCache } from '../../../src/worker/engine/onnx/graph-cache.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { randomImages } from './helpers/images.js';

const dir = mkdtempSync(join(tmpdir(), 'onnx-cache-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const spec = vggShapedSpec({ seed: 21, inputStd: 64 });

describe('ONNX graph cache', () => {
  it('compiles once, then loads the cached graph with identical results', async () => {
    const request = { images: randomImages(2, 32, 32, 3), targets: { kind: 'topk' as const }, topK: 2, method: 'gradcam' as const, score: 'prob' as const };
    const first = await createOnnxEngine({ spec, runtime: { cacheDir: dir, intraOpThreads: 1 } });
    expect(first.graphSource.cached).toBe(false);
    expect(first.graphSource.path).not.toBeNull();
    // One graph per gradient method, all compiled at creation (method-graphs.ts).
    expect(readdirSync(dir).filter((f) => f.endsWith('.onnx'))).toHaveLength(CAM_METHODS.filter(needsGradient).length);
    const a = await first.explain(request);
    await first.dispose();

    const second = await createOnnxEngine({ spec, runtime: { cacheDir: dir, intraOpThreads: 1 } });
    expect(second.graphSource).toMatchObject({ cached: true, compileMs: 0, path: first.graphSource.path });
    const b = await second.explain(request);
    await second.dispose();
    expect(b.map((r) => Array.from(r.probabilities))).toEqual(a.map((r) => Array.from(r.probabilities)));
    expect(b.map((r) => r.cams.map((c) => Array.from(c.grid)))).toEqual(a.map((r) => r.cams.map((c) => Array.from(c.grid))));
    // No temporary files left behind by the atomic write.
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('keys on weights, layer, graph kind, method and architecture', () => {
    const base = graphCacheKey(spec, { layer: 'block2_conv2', kind: 'explain' });
    expect(graphCacheKey(spec, { layer: 'block2_conv2', kind: 'explain' })).toBe(base);
    expect(graphCacheKey({ ...spec, weightsHash: 'other' }, { layer: 'block2_conv2', kind: 'explain' })).not.toBe(base);
    expect(graphCacheKey(spec, { layer: 'block2_conv1', kind: 'explain' })).not.toBe(base);
    expect(graphCacheKey(spec, { layer: 'block2_conv2', kind: 'forward' })).not.toBe(base);
    expect(graphCacheKey(spec, { layer: 'block2_conv2', kind: 'explain', method: 'gradcam' })).toBe(base);
    expect(graphCacheKey(spec, { layer: 'block2_conv2', kind: 'explain', method: 'layercam' })).not.toBe(base);
    const other = vggShapedSpec({ seed: 21, inputStd: 64, classes: 7 });
    expect(graphCacheKey({ ...other, weightsHash: spec.weightsHash }, { layer: 'block2_conv2', kind: 'explain' })).not.toBe(base);
  });

  it('treats an empty file as a miss', async () => {
    const cache = diskGraphCache(dir);
    writeFileSync(join(dir, 'empty.onnx'), '');
    expect(await cache.lookup('empty')).toBeNull();
    expect(await cache.lookup('absent')).toBeNull();
  });

  it('runs from memory when the cache directory cannot be written', async () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, 'x');
    const engine = await createOnnxEngine({ spec, runtime: { cacheDir: join(blocker, 'sub'), intraOpThreads: 1 } });
    expect(engine.graphSource).toMatchObject({ cached: false, path: null });
    const [r] = await engine.explain({ images: randomImages(1, 32, 32), targets: { kind: 'top1' }, topK: 1, method: 'hirescam', score: 'logit' });
    expect(r.cams).toHaveLength(1);
    await engine.dispose();
  });
});
