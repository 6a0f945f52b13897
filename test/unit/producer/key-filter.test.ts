import { describe, expect, it } from 'vitest';
import { createKeyFilter, relativeKey } from '../../../src/producer/key-filter.js';

describe('createKeyFilter', () => {
  const defaults = { prefix: 'in/', include: [], exclude: [], skipPrefixes: [] };

  it('keeps the image extensions in any case and nothing else by default', () => {
    const f = createKeyFilter(defaults);
    for (const k of ['in/a.jpg', 'in/b.JPEG', 'in/c.Png', 'in/d.webp', 'in/e.GIF', 'in/f.tif', 'in/g.TIFF', 'in/x y/ü +%20.jpg']) expect(f(k)).toBe('image');
    for (const k of ['in/a.txt', 'in/noext', 'in/a.jpg.zip', 'in/.jpg', 'in/dir.jpg/file', 'in/a.bmp']) expect(f(k)).toBe('not-image');
    expect(f('in/')).toBe('folder-marker');
    expect(f('in/photos.jpg/')).toBe('folder-marker');
  });

  it('applies --include (replacing the extension filter) and --exclude on the key relative to the prefix', () => {
    const f = createKeyFilter({ ...defaults, include: ['*.jpg', 'raw/**'], exclude: ['**/tmp/**', 'secret*'] });
    expect(f('in/deep/x/a.jpg')).toBe('image'); // a name glob matches at any depth
    expect(f('in/raw/data.bin')).toBe('image'); // include may take non-image names on purpose
    expect(f('in/a.png')).toBe('excluded');
    expect(f('in/x/tmp/a.jpg')).toBe('excluded');
    expect(f('in/secret.jpg')).toBe('excluded');
    expect(f('in/deep/secret.jpg')).toBe('excluded');
    // Globs see the relative key: 'raw/**' does not match 'in/other/raw/...'.
    expect(f('in/other/raw/data.bin')).toBe('excluded');
  });

  it('matches dot files and skips the output prefix', () => {
    const f = createKeyFilter({ ...defaults, exclude: ['.*'], skipPrefixes: ['in/out/'] });
    expect(f('in/.hidden.jpg')).toBe('excluded');
    expect(f('in/out/overlays/in/a.jpg.jpg')).toBe('output');
    expect(f('in/outside.jpg')).toBe('image');
  });

  it('computes relative keys', () => {
    expect(relativeKey('in/', 'in/a/b.jpg')).toBe('a/b.jpg');
    expect(relativeKey('in', 'in/a.jpg')).toBe('a.jpg');
    expect(relativeKey('', 'a.jpg')).toBe('a.jpg');
  });
});
