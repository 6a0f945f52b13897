import { describe, expect, it } from 'vitest';
import { FailureThrottle, THROTTLE_DEFAULTS } from '../../../src/dashboard/failure-throttle.js';

describe('FailureThrottle', () => {
  it('delays credential checks past the free failures, doubling up to the bound, per address and window', () => {
    let t = 0;
    const throttle = new FailureThrottle({ ...THROTTLE_DEFAULTS, freeFailures: 3, windowMs: 60_000, baseDelayMs: 100, maxDelayMs: 1000 }, () => t);
    const delays: number[] = [];
    for (let i = 0; i < 10; i++) {
      delays.push(throttle.delayFor('1.2.3.4'));
      throttle.fail('1.2.3.4');
    }
    expect(delays).toEqual([0, 0, 0, 100, 200, 400, 800, 1000, 1000, 1000]);
    expect(throttle.delayFor('5.6.7.8')).toBe(0);
    t = 60_000;
    expect(throttle.delayFor('1.2.3.4')).toBe(0);
  });
});
