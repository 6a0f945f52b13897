/**
 * Net2WiderNet widening keeps the function: without noise, the widened network's logits equal the
 * narrow one's (up to float32 rounding of the divided weights); with noise they stay close; and a
 * narrowing request is refused instead of silently dropping filters.
 */
import * as tf from '@tensorflow/tfjs';
import { beforeAll, describe, expect, it } from 'vitest';
import { DEMO_ARCHITECTURE, DEMO_NARROW_ARCHITECTURE, disposeParams, forwardLogits, initParams } from '../../../scripts/demo-model/architecture.js';
import { useBackend } from '../../../scripts/demo-model/backend.js';
import { caffeBatch, generateRange } from '../../../scripts/demo-model/data.js';
import { Prng } from '../../../scripts/demo-model/prng.js';
import { matchesArchitecture, widenParams } from '../../../scripts/demo-model/widen.js';

describe('widenParams', () => {
  beforeAll(async () => {
    await useBackend('wasm');
  });

  const logits = (params: ReturnType<typeof initParams>, arch: typeof DEMO_ARCHITECTURE, x: tf.Tensor4D): Float32Array =>
    tf.tidy(() => forwardLogits(params, x, arch).dataSync() as Float32Array);

  it('computes the same logits after widening 16/32/64/64 to the demo architecture', () => {
    const narrow = initParams(new Prng(7), DEMO_NARROW_ARCHITECTURE);
    const wide = widenParams(narrow, DEMO_ARCHITECTURE, new Prng(8), { noise: 0 });
    expect(matchesArchitecture(wide, DEMO_ARCHITECTURE)).toBe(true);
    expect(matchesArchitecture(narrow, DEMO_ARCHITECTURE)).toBe(false);
    const x = tf.tidy(() => caffeBatch(generateRange(5, 0, 4)).div(64)) as tf.Tensor4D;
    const a = logits(narrow, DEMO_NARROW_ARCHITECTURE, x);
    const b = logits(wide, DEMO_ARCHITECTURE, x);
    let worst = 0;
    let scale = 0;
    a.forEach((v, i) => {
      worst = Math.max(worst, Math.abs(v - (b[i] as number)));
      scale = Math.max(scale, Math.abs(v));
    });
    expect(scale).toBeGreaterThan(1e-3);
    expect(worst).toBeLessThan(1e-4 * Math.max(1, scale));

    // Noise lets the copies diverge, but only slightly.
    const noisy = widenParams(narrow, DEMO_ARCHITECTURE, new Prng(8), { noise: 0.01 });
    const c = logits(noisy, DEMO_ARCHITECTURE, x);
    const diff = Math.max(...Array.from(a, (v, i) => Math.abs(v - (c[i] as number))));
    expect(diff).toBeGreaterThan(0);
    expect(diff).toBeLessThan(0.1 * Math.max(1, scale));
    [narrow, wide, noisy].forEach(disposeParams);
    x.dispose();
  });

  it('refuses to narrow a network', () => {
    const wide = initParams(new Prng(1), DEMO_ARCHITECTURE);
    expect(() => widenParams(wide, DEMO_NARROW_ARCHITECTURE, new Prng(2))).toThrow(/cannot narrow conv 0 from 24 to 16 filters/);
    disposeParams(wide);
  });
});
