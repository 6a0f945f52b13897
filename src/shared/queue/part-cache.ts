/**
 * Parsed part files kept in memory for a process that reads the same runs again and again (the
 * dashboard polls a live run every second). A part never changes once written: its name is unique
 * per writer and batch, and a retried PUT rewrites the same lines. Keyed by ETag as well, so an
 * object rewritten with other bytes is read again. Without it every poll of a live run re-read
 * every part (about one per image when results trickle in): 800 parts per scan in the chaos run,
 * and the run page and gallery took more than 15 s to answer.
 *
 * Listings of a run's parts are shared too, between reads that saw the same run record (epoch,
 * counters, manifest flag): one page load asks for the run detail, a gallery page and its key
 * listing at once, and each used to LIST the parts (seconds per LIST of a few hundred parts on
 * s3rver under load). Counters move only after a batch's part is stored, so a listing made after
 * the record was read holds every counted line; the dashboard's analytics and key caches, stamped
 * by the same counters, stay exact. A part deleted meanwhile (the finalizer) makes the reader list
 * again (`invalidate`).
 */
import { LruCache } from '../lru-cache.js';
import type { ObjectStore, ObjectSummary } from '../storage/object-store.js';
import { listParts, readPart, type PartEntry } from './result-parts.js';

/** Parts larger than this are streamed, never held (the finalizer's merged parts can be huge). */
const MAX_CACHED_PART_BYTES = 1024 * 1024;
/** Runs whose latest part listing is kept. */
const MAX_LISTINGS = 256;
/** Parsed lines take about this many times their bytes on the heap (text, object, key). */
const HEAP_FACTOR = 4;

interface CachedPart {
  entries: PartEntry[];
  byteLength: number;
}

export class PartCache {
  private readonly lru: LruCache<CachedPart>;
  private readonly listings = new Map<string, { stamp: string; parts: Promise<ObjectSummary[]> }>();

  /** `maxBytes`: estimated heap the parsed parts may take together. */
  constructor(maxBytes: number) {
    this.lru = new LruCache<CachedPart>(Number.MAX_SAFE_INTEGER, maxBytes);
  }

  /**
   * The parts under `prefix`, listed once per `stamp` (the run record's epoch, counters and
   * manifest flag as the caller read them before asking); concurrent callers share the listing.
   */
  list(store: ObjectStore, bucket: string, prefix: string, stamp: string): Promise<ObjectSummary[]> {
    const id = `${bucket}\0${prefix}`;
    const hit = this.listings.get(id);
    if (hit && hit.stamp === stamp) return hit.parts;
    const parts = listParts(store, bucket, prefix);
    this.listings.delete(id);
    this.listings.set(id, { stamp, parts });
    parts.catch(() => {
      if (this.listings.get(id)?.parts === parts) this.listings.delete(id);
    });
    // One entry per run being read; the least recently listed go first.
    for (const oldest of this.listings.keys()) {
      if (this.listings.size <= MAX_LISTINGS) break;
      this.listings.delete(oldest);
    }
    return parts;
  }

  /** Forget the listing of `prefix` (a listed part was gone). */
  invalidate(bucket: string, prefix: string): void {
    this.listings.delete(`${bucket}\0${prefix}`);
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
