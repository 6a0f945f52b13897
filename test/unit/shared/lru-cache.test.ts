import { describe, expect, it } from 'vitest';
import { LruCache } from '../../../src/shared/lru-cache.js';

const buf = (n: number) => Buffer.alloc(n);

describe('LruCache', () => {
  it('evicts the least recently used entry when over the entry limit', () => {
    const c = new LruCache<Buffer>(2, 1000);
    c.set('a', buf(1));
    c.set('b', buf(1));
    expect(c.get('a')).toBeDefined(); // a is now the most recent
    c.set('c', buf(1));
    expect(c.get('b')).toBeUndefined();
    expect(c.get('a')).toBeDefined();
    expect(c.get('c')).toBeDefined();
    expect(c.size).toBe(2);
  });

  it('keeps total bytes within budget, replaces entries and ignores oversized values', () => {
    const c = new LruCache<Buffer>(100, 100);
    c.set('a', buf(40));
    c.set('b', buf(40));
    c.set('c', buf(40));
    expect(c.get('a')).toBeUndefined();
    expect(c.byteSize).toBe(80);
    c.set('b', buf(10));
    expect(c.byteSize).toBe(50);
    c.set('huge', buf(101));
    expect(c.get('huge')).toBeUndefined();
    expect(c.byteSize).toBe(50);
  });
});
