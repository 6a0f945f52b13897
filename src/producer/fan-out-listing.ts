/**
 * A prefix listing in S3's key order, read in parallel: the prefix's first-level folders (Delimiter
 * `/`) cut it into key ranges, up to `concurrency` lanes list ranges at once, ahead of the consumer,
 * and the pages come out in key order, as one sequential ListObjectsV2 would give them. A single
 * listing stream waits one round trip per 1,000 keys; against S3 (~100 ms a page) that caps enqueue near
 * 10k keys/s, whatever Redis could take.
 *
 * Why the run's one cursor still suffices: lanes only read ahead; the pages are handed out, and so
 * registered with the run, in key order. The cursor (the last key of the last registered page)
 * therefore still means "every key up to here is registered, none after it", and a resumed listing
 * starts after it: ranges wholly before it are not listed, and the range that holds it is listed
 * from the cursor on. Pages read ahead by a killed producer were never registered and are simply
 * listed again.
 *
 * Memory: at most `concurrency` lanes, each holding up to `LANE_PAGES` pages, plus one page of
 * folder names.
 */
import type { FolderPage, ObjectStore, ObjectSummary } from '../shared/storage/object-store.js';
import { compareKeys } from '../shared/queue/result-parts.js';

/** Pages a lane reads ahead of the consumer before it waits. */
const LANE_PAGES = 2;
/** Keys a lane asks for first (then 4x per request, up to the page size). */
const FIRST_PAGE = 100;

export interface FanOutOptions {
  pageSize: number;
  /** Folders listed at once. */
  concurrency: number;
  /** Resume after this key (exclusive), as ListObjectsV2's StartAfter. */
  startAfter?: string;
}

/** A key range of the prefix: keys in [from, to), listed after `startAfter`. */
interface Range {
  startAfter?: string;
  from?: string;
  to?: string;
}

/** Pages of `prefix` in key order; `store.listFolders` must exist. */
export async function* fanOutListing(store: ObjectStore, bucket: string, prefix: string, options: FanOutOptions): AsyncGenerator<ObjectSummary[]> {
  const listFolders = store.listFolders?.bind(store);
  if (!listFolders) throw new TypeError('fanOutListing needs a store with listFolders');
  const ahead: Lane[] = [];
  const boundaries = ranges(listFolders(bucket, prefix, { pageSize: options.pageSize }), options.startAfter)[Symbol.asyncIterator]();
  let rangesDone = false;
  // Start lanes for the next ranges until `concurrency` are running or read ahead.
  const fill = async (): Promise<void> => {
    while (!rangesDone && ahead.length < options.concurrency) {
      const n = await boundaries.next();
      if (n.done) rangesDone = true;
      else ahead.push(new Lane(rangePages(store, bucket, prefix, n.value, options.pageSize)));
    }
  };
  // Ranges end anywhere: their pages are re-cut into full pages, so small folders do not turn
  // into many small registrations and job batches.
  let batch: ObjectSummary[] = [];
  try {
    for (;;) {
      await fill();
      const lane = ahead[0];
      if (!lane) break;
      for await (const page of lane.pages()) {
        batch.push(...page);
        while (batch.length >= options.pageSize) yield batch.splice(0, options.pageSize);
      }
      ahead.shift();
    }
    if (batch.length > 0) yield batch;
    batch = [];
  } finally {
    for (const lane of ahead) lane.close();
    await boundaries.return?.(undefined);
  }
}

/**
 * The prefix cut into key ranges at its folders: [start, F1), [F1, F2), ..., [Fn, end). Ranges, not
 * folders, are listed, so every key falls in exactly one range even where a store leaves a folder
 * out of its CommonPrefixes (s3rver omits folders that hold only sub-folders): that folder's keys
 * are listed by the range before it. Ranges wholly at or before `after` are left out; the range
 * that holds it starts after it.
 */
async function* ranges(pages: AsyncIterable<FolderPage>, after: string | undefined): AsyncGenerator<Range> {
  let from: string | undefined;
  const cut = (to: string | undefined): Range | undefined => {
    if (after !== undefined && to !== undefined && compareKeys(after, to) >= 0) return undefined;
    // Listing from just before the folder name: keys between it and the folder are dropped below.
    const startAfter = after !== undefined && (from === undefined || compareKeys(after, from) >= 0) ? after : from?.slice(0, -1);
    return { ...(startAfter !== undefined ? { startAfter } : {}), ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) };
  };
  for await (const page of pages) {
    for (const folder of page.folders) {
      const r = cut(folder);
      if (r) yield r;
      from = folder;
    }
  }
  const last = cut(undefined);
  if (last) yield last;
}

/**
 * One range's pages: the prefix listed after `startAfter`, keeping keys in [from, to), until a page
 * ends at or past `to`. Whole pages are filtered, not cut at the first key past `to`: s3rver lists a
 * folder marker (`photos/`) after the keys inside it, so a cut would lose it.
 */
async function* rangePages(store: ObjectStore, bucket: string, prefix: string, range: Range, pageSize: number): AsyncGenerator<ObjectSummary[]> {
  const { from, to } = range;
  const inRange = (key: string): boolean => (from === undefined || compareKeys(key, from) >= 0) && (to === undefined || compareKeys(key, to) < 0);
  // A range's size is unknown: its first request asks for a few keys and each next one for four
  // times more, up to the page size, so a small folder costs a small request instead of a page
  // of its neighbours' keys. Each request resumes after the last key seen.
  let size = Math.min(pageSize, FIRST_PAGE);
  let after = range.startAfter;
  for (;;) {
    let last: string | undefined;
    for await (const page of store.listPages(bucket, prefix, { pageSize: size, ...(after !== undefined ? { startAfter: after } : {}) })) {
      const kept = page.filter((o) => inRange(o.key)).sort((x, y) => compareKeys(x.key, y.key));
      if (kept.length > 0) yield kept;
      last = page[page.length - 1]?.key;
      break; // one request per size step
    }
    // A short page is not taken as the end (a store may return fewer keys than asked): only an
    // empty answer or a key past the range ends it.
    if (last === undefined || (to !== undefined && compareKeys(last, to) >= 0)) return;
    after = last;
    size = Math.min(pageSize, size * 4);
  }
}

/** One folder listed in the background into a small buffer; read once with `pages()`. */
class Lane {
  private readonly buffer: ObjectSummary[][] = [];
  private finished = false;
  private closed = false;
  private failure: { error: unknown } | undefined;
  private wakeConsumer: (() => void) | undefined;
  private wakeProducer: (() => void) | undefined;

  constructor(source: AsyncIterable<ObjectSummary[]>) {
    void this.run(source);
  }

  private async run(source: AsyncIterable<ObjectSummary[]>): Promise<void> {
    try {
      for await (const page of source) {
        if (this.closed) return;
        this.buffer.push(page);
        this.wakeConsumer?.();
        while (this.buffer.length >= LANE_PAGES && !this.closed) await new Promise<void>((r) => (this.wakeProducer = r));
        if (this.closed) return;
      }
    } catch (error) {
      this.failure = { error };
    } finally {
      this.finished = true;
      this.wakeConsumer?.();
    }
  }

  async *pages(): AsyncGenerator<ObjectSummary[]> {
    for (;;) {
      const page = this.buffer.shift();
      if (page) {
        this.wakeProducer?.();
        yield page;
        continue;
      }
      if (this.failure) throw this.failure.error;
      if (this.finished) return;
      await new Promise<void>((r) => (this.wakeConsumer = r));
    }
  }

  /** The consumer stopped early: the lane stops listing after its current request. */
  close(): void {
    this.closed = true;
    this.wakeProducer?.();
  }
}
