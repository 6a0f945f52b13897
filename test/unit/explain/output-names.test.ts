import { describe, expect, test } from 'vitest';
import { outputNamesFor, sanitizeStem } from '../../../src/worker/explain/output-names.js';

describe('output names', () => {
  test('only the base name is used, reduced to safe characters, never a dot file', () => {
    expect(sanitizeStem('../../etc/passwd')).toBe('passwd');
    expect(sanitizeStem('C:\\photos\\cat dog.JPG')).toBe('cat_dog');
    expect(sanitizeStem('..hidden.png')).toBe('hidden');
    expect(sanitizeStem('.jpg')).toBe('jpg');
    expect(sanitizeStem('$(rm -rf ~).png')).toBe('rm_-rf_');
    expect(sanitizeStem('café.jpg')).toBe('cafe');
    expect(sanitizeStem('日本.png')).toBe('image');
    expect(sanitizeStem('a'.repeat(300) + '.png')).toHaveLength(96);
  });

  test('colliding stems get a hash of the full path, independent of argument order', () => {
    const names = outputNamesFor(['a/x.jpg', 'b/x.jpg', 'c/y.png', 'd/X.png'], 'jpeg', (p) => `/root/${p}`);
    const stems = names.map((n) => n.stem);
    expect(new Set(stems.map((s) => s.toLowerCase())).size).toBe(4);
    expect(stems[2]).toBe('y');
    expect(stems[0]).toMatch(/^x-[0-9a-f]{10}$/);
    const reversed = outputNamesFor(['d/X.png', 'c/y.png', 'b/x.jpg', 'a/x.jpg'], 'jpeg', (p) => `/root/${p}`);
    expect(reversed.map((n) => n.stem).reverse()).toEqual(stems);
    // The run's naming scheme: one folder per artifact.
    expect(names[2]).toEqual({ stem: 'y', paths: { overlay: 'overlays/y.jpg', heatmap: 'heatmaps/y.png', prediction: 'predictions/y.json' } });
  });
});
