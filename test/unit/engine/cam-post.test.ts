import { describe, expect, test } from 'vitest';
import { postProcessCam } from '../../../src/worker/engine/cam-post.js';
import type { CamContext } from '../../../src/worker/engine/cam-post.js';

const ctx = (over: Partial<CamContext> = {}): CamContext => ({ classIndex: 4, score: 0.5, scoreMode: 'prob', probability: 0.5, gradientMaxAbs: 0.1, height: 2, width: 2, ...over });

describe('postProcessCam', () => {
  test('normalises by the max and keeps raw max and mean', () => {
    const cam = postProcessCam(Float32Array.from([0, 1, 2, 4]), ctx());
    expect(Array.from(cam.grid)).toEqual([0, 0.25, 0.5, 1]);
    expect(cam).toMatchObject({ rawMax: 4, rawMean: 1.75, degenerate: null, classIndex: 4, height: 2, width: 2 });
  });
  test('all-zero maps are degenerate, without division', () => {
    const cam = postProcessCam(new Float32Array(4), ctx());
    expect(cam.degenerate).toMatch(/zero or negative everywhere/);
    expect(cam.degenerate).not.toMatch(/--score logit/);
    expect(Array.from(cam.grid)).toEqual([0, 0, 0, 0]);
  });
  test('an all-zero map at p > 0.99 suggests the logit score', () => {
    expect(postProcessCam(new Float32Array(4), ctx({ probability: 0.995 })).degenerate).toMatch(/--score logit/);
    expect(postProcessCam(new Float32Array(4), ctx({ probability: 0.995, scoreMode: 'logit' })).degenerate).not.toMatch(/--score logit/);
  });
  test('NaN or Inf anywhere flags the map', () => {
    for (const bad of [Number.NaN, Number.POSITIVE_INFINITY]) {
      const cam = postProcessCam(Float32Array.from([1, bad, 2, 3]), ctx());
      expect(cam.degenerate).toMatch(/NaN or Inf/);
      expect(Array.from(cam.grid)).toEqual([0, 0, 0, 0]);
    }
    expect(postProcessCam(Float32Array.from([1, 2, 3, 4]), ctx({ gradientMaxAbs: Number.NaN })).degenerate).toMatch(/NaN or Inf/);
  });
  test('a saturated softmax is flagged even when the map is tiny but positive', () => {
    const cam = postProcessCam(Float32Array.from([1e-12, 0, 3e-12, 0]), ctx({ probability: 1 - 1e-7, score: 1 - 1e-7 }));
    expect(cam.degenerate).toMatch(/saturated.*--score logit/);
    expect(cam.rawMax).toBe(Math.fround(3e-12));
  });
  test('a zero gradient is flagged', () => {
    expect(postProcessCam(Float32Array.from([0, 0, 0, 0]), ctx({ gradientMaxAbs: 0 })).degenerate).toMatch(/gradient of the score is zero/);
  });
  test('a grid of the wrong size is a programming error', () => {
    expect(() => postProcessCam(new Float32Array(3), ctx())).toThrow(RangeError);
  });

  test('judges gradient-free maps (no gradient) on their values alone: no saturation rule', () => {
    const saturated = { probability: 1, score: 1, gradientMaxAbs: null };
    const ok = postProcessCam(Float32Array.from([0, 1, 2, 4]), ctx(saturated));
    expect(ok.degenerate).toBeNull();
    expect(Array.from(ok.grid)).toEqual([0, 0.25, 0.5, 1]);
    const flat = postProcessCam(Float32Array.from([0, 0, 0, 0]), ctx(saturated));
    expect(flat.degenerate).toMatch(/zero or negative everywhere/);
    expect(flat.degenerate).not.toMatch(/saturated/);
  });
});
