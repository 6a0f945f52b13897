/**
 * The manifest index against a direct search of the manifest's bytes: every key is found in the
 * block the index names, whatever the chunking of the body and the block size, and keys that are
 * not there sort into a block that does not hold them.
 */
import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../../src/shared/errors.js';
import { blockOf, blockRange, buildManifestIndex } from '../../../src/shared/queue/manifest-index.js';
import { parsePart } from '../../../src/shared/queue/result-parts.js';

async function* chunked(body: Buffer, size: number): AsyncGenerator<Buffer> {
  for (let i = 0; i < body.length; i += size) yield body.subarray(i, i + size);
}

// Keys in UTF-8 byte order, some with multi-byte characters (offsets are bytes, not characters).
const keys = Array.from({ length: 200 }, (_, i) => `img/${String(i).padStart(4, '0')}${i % 7 === 0 ? '-é😀' : ''}.jpg`);
const body = Buffer.from(keys.map((key, i) => JSON.stringify({ key, status: 'ok', top1: { index: i, probability: 0.5 }, pad: 'p'.repeat(i % 50) })).join('\n') + '\n');

describe('manifest index', () => {
  for (const [blockBytes, chunk] of [
    [1, 7],
    [500, 13],
    [4096, 65536],
    [1 << 20, 1000],
  ] as const) {
    it(`finds every line in its block (blocks of ${blockBytes} B, chunks of ${chunk} B)`, async () => {
      const index = await buildManifestIndex(chunked(body, chunk), 'etag-1', blockBytes);
      expect(index.size).toBe(body.length);
      expect(index.offsets[0]).toBe(0);
      for (const key of keys) {
        const range = blockRange(index, blockOf(index, key));
        expect(parsePart(body.subarray(range.start, range.end)).map((e) => e.key), key).toContain(key);
      }
      const absent = blockOf(index, 'img/0003-zz.jpg');
      expect(parsePart(body.subarray(blockRange(index, absent).start, blockRange(index, absent).end)).map((e) => e.key)).not.toContain('img/0003-zz.jpg');
      expect(blockOf(index, 'a')).toBe(-1);
      if (blockBytes === 1) expect(index.firstKeys).toEqual(keys);
      if (blockBytes === 1 << 20) expect(index.firstKeys).toHaveLength(1);
    });
  }

  it('a body without a final newline and with empty lines indexes the same lines', async () => {
    const loose = Buffer.from('\n' + body.toString('utf8').replace(/\n/g, '\n\n').trimEnd());
    const index = await buildManifestIndex(chunked(loose, 11), 'e', 300);
    for (const key of keys) {
      const range = blockRange(index, blockOf(index, key));
      expect(parsePart(loose.subarray(range.start, range.end)).map((e) => e.key), key).toContain(key);
    }
  });

  it('refuses lines out of key order', async () => {
    const unsorted = Buffer.from([keys[5], keys[1]].map((key) => JSON.stringify({ key, status: 'ok' })).join('\n'));
    await expect(buildManifestIndex(chunked(unsorted, 64), 'e', 1)).rejects.toBeInstanceOf(InvalidInputError);
  });
});
