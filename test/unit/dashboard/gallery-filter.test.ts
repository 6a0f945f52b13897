import { describe, expect, it } from 'vitest';
import { matches } from '../../../src/dashboard/gallery.js';
import { parseImageFilter } from '../../../src/dashboard/api.js';
import { InvalidInputError } from '../../../src/shared/errors.js';

const ok = { key: 'a/Dog.png', status: 'ok' as const, top1: { index: 207, label: 'golden_retriever', probability: 0.6 }, degenerate: false };
const failed = { key: 'a/bad.jpg', status: 'failed' as const, error: 'INVALID_IMAGE: x' };

describe('gallery filters', () => {
  it('match on status, class, inclusive probability bounds, degenerate flag and key substring', () => {
    expect(matches(ok, parseImageFilter({}))).toBe(true);
    expect(matches(ok, parseImageFilter({ status: 'failed' }))).toBe(false);
    expect(matches(failed, parseImageFilter({ status: 'failed' }))).toBe(true);
    expect(matches(ok, parseImageFilter({ class: 207 }))).toBe(true);
    expect(matches(ok, parseImageFilter({ class: 208 }))).toBe(false);
    expect(matches(ok, parseImageFilter({ minProb: 0.6, maxProb: 0.6 }))).toBe(true);
    expect(matches(ok, parseImageFilter({ minProb: 0.61 }))).toBe(false);
    // A failed image has no probability, so any bound excludes it.
    expect(matches(failed, parseImageFilter({ maxProb: 1 }))).toBe(false);
    expect(matches(ok, parseImageFilter({ degenerate: true }))).toBe(false);
    expect(matches(ok, parseImageFilter({ q: 'dog' }))).toBe(true);
  });

  it('refuses bounds that exclude everything, naming both (types and ranges are the route schema\'s job)', () => {
    expect(() => parseImageFilter({ minProb: 0.8, maxProb: 0.2 })).toThrow(InvalidInputError);
    expect(() => parseImageFilter({ minProb: 0.8, maxProb: 0.2 })).toThrow(/"minProb" \(0.8\) is above "maxProb" \(0.2\)/);
  });
});
