/**
 * An ObjectStore whose listing replays a real S3 listing several times, renaming keys per pass
 * (`<prefix>pass-0003/<rest>`). Every page still comes from the real S3 server; only the key count
 * is multiplied. Used where seeding the full number of objects through the S3 API would take far
 * longer than the measurement itself (s3rver stores ~30-100 PUTs/s on a busy 2-core machine).
 */
import type { ListOptions, ObjectStore, ObjectSummary } from '../src/shared/storage/object-store.js';

export function replayedListing(store: ObjectStore, passes: number): ObjectStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      // A folder listing would bypass the rewritten one: hide it, so enqueue lists in one sequence.
      if (prop === 'listFolders') return undefined;
      if (prop !== 'listPages') return Reflect.get(target, prop, receiver) as unknown;
      return async function* listPages(bucket: string, prefix: string, options?: ListOptions): AsyncIterable<ObjectSummary[]> {
        for (let pass = 0; pass < passes; pass++) {
          const tag = `pass-${String(pass).padStart(4, '0')}/`;
          for await (const page of target.listPages(bucket, prefix, options)) {
            yield page.map((o) => ({ ...o, key: `${prefix}${tag}${o.key.slice(prefix.length)}` }));
          }
        }
      };
    },
  });
}

/**
 * List a prefix once into memory and serve later listings from that copy: takes the S3 server out of
 * the measurement, so what remains is enqueue's own cost (filter, run registry, BullMQ).
 */
export async function cachedListing(store: ObjectStore, bucket: string, prefix: string, pageSize: number): Promise<ObjectStore> {
  const pages: ObjectSummary[][] = [];
  for await (const page of store.listPages(bucket, prefix, { pageSize })) pages.push(page);
  return new Proxy(store, {
    get(target, prop, receiver) {
      // A folder listing would bypass the rewritten one: hide it, so enqueue lists in one sequence.
      if (prop === 'listFolders') return undefined;
      if (prop !== 'listPages') return Reflect.get(target, prop, receiver) as unknown;
      return async function* listPages(): AsyncIterable<ObjectSummary[]> {
        yield* pages;
      };
    },
  });
}
