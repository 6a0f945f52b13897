import { describe, expect, it } from 'vitest';
import { MemoryObjectStore } from '../../../src/dev/memory-store.js';
import { fanOutListing } from '../../../src/producer/fan-out-listing.js';
import { compareKeys } from '../../../src/shared/queue/result-parts.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';

/** Keys at several depths, folder markers, siblings named like folders ('a.jpg' next to 'a/'), unicode. */
function keySet(): string[] {
  const keys = ['p/', 'p/0.jpg', 'p/a', 'p/a.jpg', 'p/a/', 'p/a/x.jpg', 'p/a/b/c/d.jpg', 'p/a-b/1.jpg', 'p/deep/x/y/z.png', 'p/z.jpg', 'p/ü/猫.webp', 'q/outside.jpg'];
  for (let i = 0; i < 300; i++) keys.push(`p/f${i % 7}/img-${String(i).padStart(4, '0')}.jpg`);
  return keys;
}

async function fill(keys: readonly string[]): Promise<MemoryObjectStore> {
  const s = new MemoryObjectStore();
  await s.createBucket('b');
  for (const k of keys) await s.put('b', k, 'x', { contentType: 'image/jpeg' });
  return s;
}

async function collect(pages: AsyncIterable<Array<{ key: string }>>): Promise<string[]> {
  const out: string[] = [];
  for await (const p of pages) out.push(...p.map((o) => o.key));
  return out;
}

/** The same store, but its folder listing leaves some folders out (as s3rver does for folders holding only folders). */
function forgetful(store: MemoryObjectStore, forget: (folder: string) => boolean): ObjectStore {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop !== 'listFolders') return Reflect.get(target, prop, receiver) as unknown;
      return async function* (bucket: string, prefix: string, options?: { pageSize?: number }) {
        for await (const page of target.listFolders(bucket, prefix, options)) yield { objects: page.objects, folders: page.folders.filter((f) => !forget(f)) };
      };
    },
  });
}

describe('fanOutListing', () => {
  it('lists every key once in key order, like one sequential listing, at any page size and concurrency', async () => {
    const store = await fill(keySet());
    const expected = await collect(store.listPages('b', 'p/'));
    expect(expected).toEqual([...expected].sort(compareKeys));
    for (const [pageSize, concurrency] of [[1000, 8], [7, 3], [1, 2], [50, 1]] as const) {
      expect(await collect(fanOutListing(store, 'b', 'p/', { pageSize, concurrency }))).toEqual(expected);
    }
  });

  it('resumes after any cursor with exactly the keys after it', async () => {
    const store = await fill(keySet());
    const all = await collect(store.listPages('b', 'p/'));
    for (const cursor of [...all.filter((_, i) => i % 13 === 0), 'p/a', 'p/f3/', 'p/f3', 'p/zz', 'p/']) {
      const got = await collect(fanOutListing(store, 'b', 'p/', { pageSize: 9, concurrency: 4, startAfter: cursor }));
      expect(got, `after ${cursor}`).toEqual(all.filter((k) => compareKeys(k, cursor) > 0));
    }
  });

  it('loses no key when the store leaves folders out of its folder listing', async () => {
    const store = await fill(keySet());
    const all = await collect(store.listPages('b', 'p/'));
    const got = await collect(fanOutListing(forgetful(store, (f) => f === 'p/deep/' || f === 'p/f2/'), 'b', 'p/', { pageSize: 10, concurrency: 4 }));
    expect(got).toEqual(all);
  });

  it('stops its lanes when the consumer stops early', async () => {
    const store = await fill(keySet());
    const before = store.requests.list;
    for await (const page of fanOutListing(store, 'b', 'p/', { pageSize: 5, concurrency: 2 })) {
      expect(page.length).toBeGreaterThan(0);
      break;
    }
    // One folder-listing page and at most a few pages per lane, not the whole prefix (64 pages).
    await new Promise((r) => setTimeout(r, 20));
    expect(store.requests.list - before).toBeLessThan(12);
  });
});
