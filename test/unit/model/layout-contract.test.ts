/**
 * The layout contract between ModelSpec producers and the engines (HWIO conv kernels, (in, out)
 * dense kernels, flatten in (h, w, c) order), checked end to end: the TF.js engine's
 * probabilities must equal a plain float64 forward pass written from the contract alone. A
 * non-square input makes a (w, h) or (c, h, w) flatten mix-up visible.
 */
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { naiveForward } from './helpers/naive-forward.js';

describe('ModelSpec layout contract', () => {
  for (const head of ['flatten', 'gap'] as const) {
    it(`the TF.js engine computes what the layout says (${head} head, 12x10 input)`, async () => {
      const spec = vggShapedSpec({ inputShape: [12, 10, 3], blocks: [{ filters: 4, convs: 2 }, { filters: 6, convs: 1 }], denseUnits: [8], classes: 5, head, inputStd: 64, seed: 9 });
      const next = mulberry32(5);
      const data = Float32Array.from({ length: 12 * 10 * 3 }, () => next() * 255 - 120);
      const expected = naiveForward(spec, data).probabilities;
      // The random net must not be saturated, or a layout error could hide behind a one-hot output.
      expect(Math.max(...expected)).toBeLessThan(0.95);
      const engine = await createEngine({ spec, backend: 'cpu' });
      try {
        const [probabilities] = await engine.predict([{ data, height: 12, width: 10 }]);
        expect(probabilities).toHaveLength(5);
        probabilities!.forEach((p, i) => expect(Math.abs(p - expected[i]!)).toBeLessThan(1e-5));
      } finally {
        await engine.dispose();
      }
    });
  }
});
