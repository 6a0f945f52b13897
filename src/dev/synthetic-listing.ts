/**
 * An ObjectStore whose listing of one bucket is generated: `count` keys `<prefix>NNNNNNNNN.jpg`, in
 * S3's order, honouring `startAfter` and the page size like ListObjectsV2. Everything else (the
 * part files, manifests) goes to the real store underneath. Benchmarks and tests use it to enqueue
 * millions of keys without storing millions of objects, so what they measure is the pipeline's own
 * cost (`bench:scale`, `bench:enqueue`) and what they test is resumable listing at scale.
 */
import type { ListOptions, ObjectStore, ObjectSummary } from '../shared/storage/object-store.js';

export interface SyntheticListingOptions {
  bucket: string;
  /** Keys are `<prefix><9-digit index>.jpg`. */
  prefix: string;
  count: number;
  /** Wait this long before each page (a slow listing, for tests that interrupt it). Default 0. */
  pageDelayMs?: number;
}

export function syntheticKey(prefix: string, i: number): string {
  return `${prefix}${String(i).padStart(9, '0')}.jpg`;
}

export function syntheticListing(store: ObjectStore, options: SyntheticListingOptions): ObjectStore {
  const { bucket, prefix, count } = options;
  async function* listPages(listBucket: string, listPrefix: string, list: ListOptions = {}): AsyncIterable<ObjectSummary[]> {
    const pageSize = list.pageSize ?? 1000;
    // Zero-padded indices sort like numbers, so the index after `startAfter` is found by parsing it.
    let i = 0;
    if (list.startAfter !== undefined && list.startAfter >= prefix) {
      const tail = list.startAfter.slice(prefix.length);
      const n = Number.parseInt(tail.slice(0, 9), 10);
      i = Number.isFinite(n) ? (tail.length > 9 || list.startAfter === syntheticKey(prefix, n) ? n + 1 : n) : count;
    }
    const wanted = (k: string): boolean => k.startsWith(listPrefix);
    for (; i < count; i += pageSize) {
      if (options.pageDelayMs) await new Promise((r) => setTimeout(r, options.pageDelayMs));
      list.signal?.throwIfAborted();
      const page: ObjectSummary[] = [];
      for (let j = i; j < Math.min(count, i + pageSize); j++) {
        const key = syntheticKey(prefix, j);
        if (wanted(key)) page.push({ key, size: 1000 + (j % 997), etag: (j * 2654435761 >>> 0).toString(16).padStart(32, '0') });
      }
      if (page.length > 0) yield page;
    }
  }
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'listPages') {
        // Only listings that reach into the generated prefix are generated. Everything else in the
        // bucket (a run's part files under its output prefix, beside the source) is listed from the
        // store underneath: generating those too would hide them, and a finalizer that finds no
        // parts refuses the run (lines != counters).
        const generated = (b: string, p: string): boolean => b === bucket && (p.startsWith(prefix) || prefix.startsWith(p));
        return (b: string, p: string, o?: ListOptions) => (generated(b, p) ? listPages(b, p, o) : target.listPages(b, p, o));
      }
      // The generated keys have no folders: without a folder listing, enqueue lists them in one
      // sequence instead of asking the store underneath for folders it does not have.
      if (prop === 'listFolders') return undefined;
      return Reflect.get(target, prop, receiver) as unknown;
    },
  });
}
