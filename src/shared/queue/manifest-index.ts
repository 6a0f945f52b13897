/**
 * A sparse index of a sealed run manifest: the first key and byte offset of each block of about
 * `MANIFEST_BLOCK_BYTES` (whole lines), so one image's line is found with one ranged GET of its
 * block instead of a read of the manifest up to its key. The dashboard checks every per-image
 * request (image, object, thumbnail) against the run's lines; on a finished run those lines are in
 * the manifest alone (the finalizer deletes the parts), and each request read the manifest up to
 * the key: 78 MB for the last key of a 200k-image run, 1.56 GB for a retry of 20 keys.
 *
 * The manifest is sorted by key (`compareKeys`), one line per key, so the block of a key is the
 * last whose first key is not greater. Only block heads are parsed while building; the index holds
 * one key and one number per block: about 100 bytes per 64 KiB of manifest, so under 1 MiB for a
 * run of 1M images at 400 bytes a line (390 MB of manifest, about 6,000 blocks).
 */
import { InvalidInputError } from '../errors.js';
import type { ByteRange } from '../storage/object-store.js';
import { compareKeys } from './result-parts.js';

/** Target bytes per block: what one per-image lookup reads at most (plus one line). */
export const MANIFEST_BLOCK_BYTES = 64 * 1024;

export interface ManifestIndex {
  /** The version of the manifest indexed; a ranged read with another ETag reads another version. */
  etag: string;
  size: number;
  /** First key of each block, in key order. */
  firstKeys: string[];
  /** Byte offset of each block's first line; a block ends where the next begins, the last at `size`. */
  offsets: number[];
  /** Estimated heap the index takes. */
  byteLength: number;
}

/**
 * Index a manifest from its body's chunks. Throws InvalidInputError when the block heads are not in
 * key order (not a sealed manifest): lookups by block would then miss lines.
 */
export async function buildManifestIndex(chunks: AsyncIterable<Buffer>, etag: string, blockBytes = MANIFEST_BLOCK_BYTES): Promise<ManifestIndex> {
  const firstKeys: string[] = [];
  const offsets: number[] = [];
  let byteLength = 200;
  let offset = 0; // of the current chunk's first byte
  let lineStart = 0;
  let nextBlockAt = 0;
  let head: Buffer[] | null = []; // the current line's bytes, kept only when it starts a block
  const endLine = (): void => {
    if (head === null) return;
    const text = Buffer.concat(head).toString('utf8');
    if (text === '') return; // an empty line starts no block: the next line may
    const key = headKey(text, lineStart);
    const prev = firstKeys[firstKeys.length - 1];
    if (prev !== undefined && compareKeys(prev, key) >= 0) {
      throw new InvalidInputError('MANIFEST_ORDER', `manifest line at byte ${lineStart} ("${key}") is not after "${prev}": not a sealed manifest in key order`);
    }
    firstKeys.push(key);
    offsets.push(lineStart);
    byteLength += 2 * key.length + 48;
    nextBlockAt = lineStart + blockBytes;
  };
  for await (const chunk of chunks) {
    let pos = 0;
    for (;;) {
      const nl = chunk.indexOf(10, pos);
      const end = nl < 0 ? chunk.length : nl;
      if (head !== null && end > pos) head.push(chunk.subarray(pos, end));
      if (nl < 0) break;
      endLine();
      lineStart = offset + nl + 1;
      head = lineStart >= nextBlockAt ? [] : null;
      pos = nl + 1;
    }
    offset += chunk.length;
  }
  endLine();
  return { etag, size: offset, firstKeys, offsets, byteLength };
}

function headKey(text: string, at: number): string {
  try {
    const key = (JSON.parse(text) as { key?: unknown }).key;
    if (typeof key === 'string') return key;
  } catch {
    // reported below
  }
  throw new InvalidInputError('MANIFEST_LINE', `manifest line at byte ${at} is not a result line with a key`);
}

/** The block that holds `key`'s line if the manifest has one; -1 when the key sorts before every line. */
export function blockOf(index: ManifestIndex, key: string): number {
  let lo = 0;
  let hi = index.firstKeys.length - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (compareKeys(index.firstKeys[mid] as string, key) <= 0) {
      found = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/** The bytes of block `block`. */
export function blockRange(index: ManifestIndex, block: number): ByteRange {
  return { start: index.offsets[block] as number, end: index.offsets[block + 1] ?? index.size };
}
