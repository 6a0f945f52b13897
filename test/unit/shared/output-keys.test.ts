import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { escapeKeyPath, isWithinPrefix, MAX_KEY_BYTES, outputKeysFor, unescapeKeyPath } from '../../../src/shared/storage/output-keys.js';

const PREFIX = 'gradcam-audit/run-1/';
const HOSTILE = ['cat.jpg', 'a b/c+d.jpg', '100%/x%2F.jpg', 'ünï/猫.png', '../../etc/passwd', 'a/./b/../c.jpg', '/leading.jpg', 'a//b.jpg', '..', '.', 'tab\there.jpg', 'back\\slash.jpg'];

describe('outputKeysFor', () => {
  it('keeps every output inside the output prefix, whatever the source key', () => {
    for (const key of HOSTILE) {
      const out = outputKeysFor(PREFIX, key, 'jpeg');
      for (const k of [out.overlay, out.heatmap, out.prediction]) {
        expect(isWithinPrefix(PREFIX, k), `${key} -> ${k}`).toBe(true);
        // A URL-normalising client must resolve the key to the same place.
        const resolved = new URL(`http://h/${k}`).pathname.slice(1);
        expect(resolved.startsWith(PREFIX), `${key} -> ${resolved}`).toBe(true);
      }
    }
  });

  it('lays outputs out as overlays/, heatmaps/, predictions/ with readable names', () => {
    expect(outputKeysFor(PREFIX, 'photos/cat 1.jpg', 'jpeg')).toEqual({
      overlay: `${PREFIX}overlays/photos/cat 1.jpg.jpg`,
      heatmap: `${PREFIX}heatmaps/photos/cat 1.jpg.png`,
      prediction: `${PREFIX}predictions/photos/cat 1.jpg.json`,
    });
    expect(outputKeysFor(PREFIX, 'x.png', 'webp').overlay).toBe(`${PREFIX}overlays/x.png.webp`);
  });

  it('is injective and reversible', () => {
    const seen = new Map<string, string>();
    for (const key of [...HOSTILE, '%2E%2E', '%00', 'a/%2E/b', '%dot2', '..%dot1']) {
      const escaped = escapeKeyPath(key);
      expect(unescapeKeyPath(escaped)).toBe(key);
      expect(seen.has(escaped), `collision between ${key} and ${seen.get(escaped)}`).toBe(false);
      seen.set(escaped, key);
    }
  });

  it('falls back to a hash for keys that would exceed S3 limits', () => {
    const long = `${'d/'.repeat(300)}${'x'.repeat(600)}.jpg`;
    const out = outputKeysFor(PREFIX, long, 'png');
    expect(Buffer.byteLength(out.prediction)).toBeLessThanOrEqual(MAX_KEY_BYTES);
    expect(out.prediction).toMatch(/predictions\/%long\/[0-9a-f]{64}\.json$/);
    expect(outputKeysFor(PREFIX, long, 'png')).toEqual(out);
  });

  it('gives a long key\'s outputs a place no source key escapes to, whatever it is named', () => {
    const long = `${'a'.repeat(1100)}.jpg`;
    const hash = createHash('sha256').update(long).digest('hex');
    const hashed = outputKeysFor(PREFIX, long, 'jpeg');
    for (const planted of [`_long/${hash}`, `%long/${hash}`, `%25long/${hash}`]) {
      expect(outputKeysFor(PREFIX, planted, 'jpeg').overlay, planted).not.toBe(hashed.overlay);
    }
  });
});
