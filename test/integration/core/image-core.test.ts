/**
 * The per-image core on real decoding, a real (tiny) engine and real rendering, without S3 or
 * files: the images the adversarial review broke the worker with.
 * - A 65535x1 PNG used to fail six times in the JPEG encoder and then show as retryable; its
 *   overlay is now clamped to the encoder's 65500 px and the image succeeds.
 * - Sixteen large PNGs in flight at once drove a worker to 10 GB RSS; the shared pixel budget now
 *   holds the decoded pixels of all images in flight under its capacity, and RSS stays bounded.
 *   (Scaled for CI: 16 x 6 MP instead of 16 x 100 MP, a 12 MP budget instead of 256 MP.)
 */
import { describe, expect, beforeAll, afterAll, it } from 'vitest';
import sharp from 'sharp';
import { artifactPaths } from '../../../src/shared/artifacts.js';
import { LabelMatcher } from '../../../src/shared/audit/label-matcher.js';
import { DEFAULT_EXPLAIN_OPTIONS, type ExplainOptions } from '../../../src/shared/explain-options.js';
import { engineRequestOf, explainImage, type ImageCoreDeps } from '../../../src/worker/core/image-core.js';
import { InputBufferPool } from '../../../src/worker/core/input-pool.js';
import { PixelBudget } from '../../../src/worker/core/pixel-budget.js';
import type { Engine } from '../../../src/worker/engine/engine.js';
import { tinyEngine } from '../pipeline/helpers.js';

let engine: Engine;
beforeAll(async () => {
  engine = await tinyEngine();
});
afterAll(async () => {
  await engine?.dispose();
});

function coreDeps(budget?: PixelBudget): ImageCoreDeps {
  return {
    engine: engine.info,
    labels: null,
    matcher: new LabelMatcher(null, engine.info.numClasses),
    weightsSource: 'seeded:vgg-small',
    infer: async (image, options) => ({ result: (await engine.explain({ images: [image], ...engineRequestOf(options) }))[0], timings: {} }),
    ...(budget ? { budget } : {}),
  };
}

const options: ExplainOptions = { ...DEFAULT_EXPLAIN_OPTIONS };

describe('the image core', () => {
  it('explains a 65535x1 PNG: the JPEG overlay is clamped to 65500 px, the heatmap keeps the aspect ratio', async () => {
    const png = await sharp({ create: { width: 65_535, height: 1, channels: 3, background: { r: 120, g: 60, b: 30 } } }).png().toBuffer();
    const fullSize: ExplainOptions = { ...options };
    delete fullSize.maxSide; // --max-side full: the encoder's own limit is what clamps it
    const out = await explainImage({ bytes: png, source: { uri: 'wide.png' }, options: fullSize, outputs: artifactPaths('wide', 'jpeg') }, coreDeps());
    expect(out.document.source).toMatchObject({ width: 65_535, height: 1, format: 'png' });
    expect([out.rendered.overlay.width, out.rendered.overlay.height]).toEqual([65_500, 1]);
    expect((await sharp(out.rendered.overlay.data).metadata()).format).toBe('jpeg');
    expect([out.rendered.heatmap.width, out.rendered.heatmap.height]).toEqual([32, 1]);
    expect(out.document.metrics.imageWidth).toBe(65_535);
  }, 60_000);

  it('holds sixteen large PNGs in flight under one pixel budget, with bounded RSS', async () => {
    const [w, h] = [3000, 2000]; // 6 MP each, 96 MP for all sixteen
    const png = await sharp({ create: { width: w, height: h, channels: 3, background: { r: 0, g: 0, b: 0 }, noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).png({ compressionLevel: 1 }).toBuffer();
    const budget = new PixelBudget(12_000_000);
    const rss0 = process.memoryUsage().rss;
    let peakRss = rss0;
    const sampler = setInterval(() => (peakRss = Math.max(peakRss, process.memoryUsage().rss)), 10);
    try {
      const outs = await Promise.all(
        Array.from({ length: 16 }, (_, i) => explainImage({ bytes: png, source: { uri: `big-${i}.png` }, options: { ...options, maxSide: 1024 }, outputs: artifactPaths(`big-${i}`, 'jpeg') }, coreDeps(budget))),
      );
      expect(outs.every((o) => o.rendered.overlay.width === 1024)).toBe(true);
    } finally {
      clearInterval(sampler);
    }
    expect(budget.peak).toBeLessThanOrEqual(12_000_000);
    expect(budget.inUse).toBe(0);
    // Two 6 MP decodes at a time: ~36 MB of RGB plus libvips' buffers. All sixteen at once would
    // hold 288 MB of RGB alone.
    if (process.env.GCA_PRINT_RSS) console.log(`peak RSS growth ${((peakRss - rss0) / 2 ** 20).toFixed(0)} MiB`);
    expect(peakRss - rss0).toBeLessThan(250 * 2 ** 20);
  }, 120_000);
});

describe('the pixel budget', () => {
  it('serves in arrival order, shrinks and releases, and serves an oversized request alone', async () => {
    const budget = new PixelBudget(100);
    const a = await budget.acquire(60);
    const order: string[] = [];
    const b = budget.acquire(50).then((l) => (order.push('b'), l));
    const c = budget.acquire(10).then((l) => (order.push('c'), l)); // fits now, but waits behind b
    await new Promise((r) => setTimeout(r, 5));
    expect(order).toEqual([]);
    a.shrink(40);
    const lb = await b;
    const lc = await c;
    expect(order).toEqual(['b', 'c']);
    expect(budget.inUse).toBe(100);
    const big = budget.acquire(1_000); // capped at the capacity: waits for everything else
    a.release();
    lb.release();
    lc.release();
    lc.release(); // idempotent
    const lbig = await big;
    expect([lbig.pixels, budget.inUse, budget.peak]).toEqual([100, 100, 100]);
    lbig.release();
    expect(budget.inUse).toBe(0);
  });
});

describe('the model-input pool', () => {
  it('gives each input back once its engine call answered, reuses it for the next image, and leaves the results as they were', async () => {
    const jpg = await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 0, g: 0, b: 0 }, noise: { type: 'gaussian', mean: 128, sigma: 40 } } }).jpeg().toBuffer();
    const other = await sharp({ create: { width: 200, height: 300, channels: 3, background: { r: 200, g: 30, b: 90 } } }).png().toBuffer();
    const inputs = new InputBufferPool(2);
    const seen: Float32Array[] = [];
    const deps = coreDeps();
    const pooled: ImageCoreDeps = { ...deps, inputs, infer: (image, o, seed) => (seen.push(image.data), deps.infer(image, o, seed)) };
    const run = (bytes: Buffer, d: ImageCoreDeps) => explainImage({ bytes, source: { uri: 'x.jpg' }, options, outputs: artifactPaths('x', 'jpeg') }, d);
    const a = await run(jpg, pooled);
    expect(inputs.size).toBe(1);
    const b = await run(other, pooled);
    expect(seen[1]).toBe(seen[0]); // the second image was preprocessed into the first one's buffer
    expect(inputs.size).toBe(1);
    expect(b.document.predictions).toEqual((await run(other, deps)).document.predictions);
    expect(a.document.predictions).toEqual((await run(jpg, deps)).document.predictions);
    // A failed engine call keeps its buffer out of the pool.
    const failing: ImageCoreDeps = { ...pooled, infer: () => Promise.reject(new Error('engine down')) };
    await expect(run(jpg, failing)).rejects.toThrow('engine down');
    expect(inputs.size).toBe(0);
  }, 60_000);

  it('keeps at most its capacity, and only buffers of the asked length are reused', () => {
    const pool = new InputBufferPool(1);
    const x = pool.take(12);
    const y = pool.take(12);
    pool.give(x);
    pool.give(y);
    expect(pool.size).toBe(1);
    expect(pool.take(6)).not.toBe(x);
    expect(pool.take(12)).toBe(x);
    pool.give(new Float32Array(0)); // detached by a transfer: dropped
    expect(pool.size).toBe(0);
  });
});
