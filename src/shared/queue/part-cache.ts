/**
 * Parsed part files kept in memory for a process that reads the same runs again and again (the
 * dashboard polls a live run every second). A part never changes once written: its name is unique
 * per writer and batch, and a retried PUT rewrites the same lines. Keyed by ETag as well, so an
 * object rewritten with other bytes is read again. Without it every poll of a live run re-read
 * every part (about one per image when results trickle in): 800 parts per scan in the chaos run,
 * and the run page and gallery took more than 15 s to answer.
 */
import { LruCache } from '../lru-cache.js';
import type { ObjectStore, ObjectSummary } from '../storage/object-store.js';
import { readPart, type PartEntry } from './result-parts.js';

/** Parts larger than this are streamed, never held (the finalizer's merged parts can be huge). */
const MAX_CACHED_PART_BYTES = 1024 * 1024;
/** Parsed lines take about this many times their bytes on the heap (text, object, key). */
const HEAP_FACTOR = 4;

interface CachedPart {
  entries: PartEntry[];
  byteLength: number;
}

export class PartCache {
  private readonly lru: LruCache<CachedPart>;

  /** `maxBytes`: estimated heap the parsed parts may take together. */
  constructor(maxBytes: number) {
    this.lru = new LruCache<CachedPart>(Number.MAX_SAFE_INTEGER, maxBytes);
  }

  /** The part's lines, from memory when this version of it was read before. */
  async *read(store: ObjectStore, bucket: string, part: ObjectSummary): AsyncGenerator<PartEntry> {
    if (part.size > MAX_CACHED_PART_BYTES || !part.etag) {
      yield* readPart(store, bucket, part.key);
      return;
    }
    const id = `${bucket}\0${part.key}\0${part.etag}`;
    let cached = this.lru.get(id);
    if (!cached) {
      const entries: PartEntry[] = [];
      for await (const e of readPart(store, bucket, part.key)) entries.push(e);
      cached = { entries, byteLength: part.size * HEAP_FACTOR };
      this.lru.set(id, cached);
    }
    yield* cached.entries;
  }

  get byteSize(): number {
    return this.lru.byteSize;
  }
}
