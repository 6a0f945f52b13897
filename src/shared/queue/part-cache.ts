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
 *
 * After the first listing, a run's new parts come from its part index in Redis (keys.ts `parts`),
 * not from another LIST: every poll after a counter move listed the whole parts folder again (800
 * parts in the chaos run; s3rver took 7.9 s to list 150 under load). A listing that resumes after the last part name seen (StartAfter) would not
 * do: a part's name carries its writer's clock at the time it was named, before its PUT, and PUTs
 * of different writers end out of order (retries through S3 errors, clock skew), so a part named
 * earlier can appear after a later name was listed. The index is written in the script that counts
 * the part's results, so it holds every counted part in counting order. A listing is therefore
 * extended with the entries indexed since it was made, and made afresh when the index cannot say
 * (trimmed past it, deleted by the finalizer or a Redis loss, given out again after a Redis
 * restart that lost writes, or a result counted by a writer that does not index:
 * PartIndexPosition.basis).
 *
 * Parts are read ahead of the readers: each listing (or extension) that completes starts the GETs of
 * the parts it holds that are not in memory yet, a few at a time, each attempt aborted after
 * `attemptTimeoutMs` and sent again. A reader with a deadline (`ReadDeadline`: a dashboard poll)
 * takes the parts already read and those that arrive before its deadline, and leaves out the rest,
 * whose reads go on. On a busy S3 server a GET of one of the newest parts took 1-10 s, up to 44 s,
 * and a poll that waited for it went unanswered past the chaos run's 15 s; now it answers with
 * the lines read so far (the run's counters come from Redis either way) and shows the late part
 * once it arrives.
 */
import { TransientError } from '../errors.js';
import { LruCache } from '../lru-cache.js';
import { Semaphore } from '../semaphore.js';
import type { ObjectStore, ObjectSummary } from '../storage/object-store.js';
import { raceTimeout, withAttempts, type AttemptLimits } from '../timeout.js';
import { blockOf, blockRange, buildManifestIndex, type ManifestIndex } from './manifest-index.js';
import { boundedChunks, compareKeys, listParts, parsePart, partLines, type PartEntry } from './result-parts.js';
import type { PartIndexPosition } from './run-store.js';

/** How parts are read and listed; see the module comment. */
export interface PartReads extends AttemptLimits {
  /** GETs of parts in flight at once (read-ahead and readers together). */
  concurrency: number;
}

export const PART_READ_DEFAULTS: Readonly<PartReads> = Object.freeze({ attemptTimeoutMs: 5000, attempts: 4, concurrency: 8 });

/**
 * The time a reader may wait for parts still being read (listed), shared by every step of one
 * request; what it left out makes it incomplete, so caches of what was computed from the lines
 * (the dashboard's analytics and gallery keys) compute them again next time.
 */
export class ReadDeadline {
  private readonly at: number;
  /** Parts (or a listing) left out because they were not read in time. */
  missed = 0;

  constructor(waitMs: number) {
    this.at = Date.now() + waitMs;
  }

  get remainingMs(): number {
    return Math.max(0, this.at - Date.now());
  }

  get complete(): boolean {
    return this.missed === 0;
  }
}

/** A run's part index as its record showed it, and how to read it from a position on. */
export interface PartIndexView extends PartIndexPosition {
  /** See `RunStore.partsIndexedFrom`. */
  from(seq: number): Promise<IndexedParts | null>;
}

/** Index entries from a position on: the one at the position (none at 0), those after it, the newest number. */
export interface IndexedParts {
  at: ObjectSummary | null;
  parts: ObjectSummary[];
  last: number;
}

interface Listing {
  stamp: string;
  parts: Promise<ObjectSummary[]>;
  /** The index position of the record read before it, when the caller gave one. */
  index?: PartIndexPosition;
}

interface Complete {
  parts: ObjectSummary[];
  /** The listing holds every part indexed up to `index.seq` (the record was read before it). */
  index: PartIndexPosition;
}

/** Parts larger than this are streamed, never held (the finalizer's merged parts can be huge). */
const MAX_CACHED_PART_BYTES = 1024 * 1024;
/** Runs whose latest part listing is kept. */
const MAX_LISTINGS = 256;
/** Parsed lines take about this many times their bytes on the heap (text, object, key). */
const HEAP_FACTOR = 4;

/** Manifest indexes kept (one per finished run looked at); each is small (manifest-index.ts). */
const MAX_MANIFEST_INDEXES = 256;
/**
 * Blocks of a manifest read by ranged GETs for one lookup at most; a lookup that needs more (a
 * retry of hundreds of keys spread over the run) streams the manifest once instead.
 */
const MAX_RANGED_READS = 32;

interface IndexedManifest {
  index: ManifestIndex;
  /** The run's record stamp under which `index.etag` was last seen to be the manifest's. */
  stamp: string;
  byteLength: number;
}

/** A ranged read of a manifest found another version than the index's (the run was finalized again). */
class ManifestChangedError extends Error {}

interface CachedPart {
  entries: PartEntry[];
  byteLength: number;
}

/**
 * Which failed part reads `withAttempts` sends again, besides attempts that timed out: none. The S3
 * store has already retried 5xx and throttling with backoff before it reports a TransientError, so
 * another immediate round would only multiply requests to a busy server.
 */
const ONLY_TIMED_OUT = (): boolean => false;

export class PartCache {
  private readonly lru: LruCache<CachedPart>;
  private readonly listings = new Map<string, Listing>();
  /** Per run, the newest listing that completed with an index position: what the next one extends. */
  private readonly complete = new Map<string, Complete>();
  /** Parts being read (queued or in flight), each once: readers and the read-ahead share them. */
  private readonly reading = new Map<string, Promise<CachedPart>>();
  private readonly reads: PartReads;
  private readonly gets: Semaphore;
  private readonly manifests = new LruCache<IndexedManifest>(MAX_MANIFEST_INDEXES, Number.MAX_SAFE_INTEGER);
  /** Manifest indexes being built, each once: concurrent first lookups of a run share one read. */
  private readonly indexing = new Map<string, Promise<ManifestIndex>>();

  /** `maxBytes`: estimated heap the parsed parts may take together. */
  constructor(
    private readonly maxBytes: number,
    reads: Partial<PartReads> = {},
  ) {
    this.lru = new LruCache<CachedPart>(Number.MAX_SAFE_INTEGER, maxBytes);
    this.reads = { ...PART_READ_DEFAULTS, ...reads };
    this.gets = new Semaphore(this.reads.concurrency);
  }

  /**
   * The parts under `prefix` as of `stamp` (the run record's epoch, counters and manifest flag as
   * the caller read them before asking); concurrent callers share the answer. Listed once, then
   * extended from the run's part index (`index`, read from the same record) while it can tell.
   */
  list(store: ObjectStore, bucket: string, prefix: string, stamp: string, index?: PartIndexView, deadline?: ReadDeadline): Promise<ObjectSummary[]> {
    const listing = this.listing(store, bucket, prefix, stamp, index);
    return deadline ? this.within(listing, deadline, `${bucket}\0${prefix}`) : listing;
  }

  /**
   * The listing, or, when it is not there by the deadline, the newest one that completed (none:
   * no parts), which the reader's deadline records as incomplete. The listing goes on.
   */
  private async within(listing: Promise<ObjectSummary[]>, deadline: ReadDeadline, id: string): Promise<ObjectSummary[]> {
    if (!(await raceTimeout(listing, deadline.remainingMs))) return listing;
    deadline.missed += 1;
    return this.complete.get(id)?.parts ?? [];
  }

  private listing(store: ObjectStore, bucket: string, prefix: string, stamp: string, index?: PartIndexView): Promise<ObjectSummary[]> {
    const id = `${bucket}\0${prefix}`;
    const hit = this.listings.get(id);
    if (hit && hit.stamp === stamp) return hit.parts;
    const relist = (): Promise<ObjectSummary[]> =>
      withAttempts(`listing s3://${bucket}/${prefix}`, (signal) => listParts(store, bucket, prefix, signal), this.reads, ONLY_TIMED_OUT);
    const base = this.complete.get(id);
    let parts: Promise<ObjectSummary[]>;
    if (index && base && base.index.basis === index.basis) {
      // Extended from the newest completed listing, never from one still running: a slow or
      // stalled request would otherwise hold up every later poll of the run. A caller with an
      // older record than the listing's (concurrent requests) gets it as it is: it holds all that
      // caller needs and more, as any listing made after reading a record may.
      parts = base.index.seq >= index.seq ? Promise.resolve(base.parts) : extend(base, index, relist);
    } else if (!base && hit?.index && index && hit.index.basis === index.basis) {
      // The run's first listing is still running: one LIST at a time, then the index.
      const first = hit.index;
      parts = hit.parts.then((known) => extend({ parts: known, index: first }, index, relist));
    } else {
      parts = relist();
    }
    this.listings.delete(id);
    this.listings.set(id, { stamp, parts, ...(index ? { index: { seq: index.seq, basis: index.basis } } : {}) });
    parts.then(
      (done) => {
        this.readAhead(store, bucket, done);
        if (!index) return;
        const newest = this.complete.get(id);
        if (!newest || newest.index.basis !== index.basis || newest.index.seq < index.seq) this.complete.set(id, { parts: done, index: { seq: index.seq, basis: index.basis } });
      },
      () => {
        if (this.listings.get(id)?.parts === parts) this.listings.delete(id);
      },
    );
    // One entry per run being read; the least recently listed go first.
    for (const oldest of this.listings.keys()) {
      if (this.listings.size <= MAX_LISTINGS) break;
      this.listings.delete(oldest);
      this.complete.delete(oldest);
    }
    return parts;
  }

  /** Forget the listing of `prefix` (a listed part was gone). */
  invalidate(bucket: string, prefix: string): void {
    this.listings.delete(`${bucket}\0${prefix}`);
    this.complete.delete(`${bucket}\0${prefix}`);
  }

  /**
   * The part's lines, from memory when this version of it was read before. With a deadline, a part
   * that is not read by then yields nothing (`deadline.missed` counts it; its read goes on), and so
   * does one whose reads were given up as transient (the next reader tries again); a part that is
   * gone (NotFoundError: the finalizer deleted it, so the reader turns to the manifest) or that
   * cannot be read or parsed throws either way.
   */
  async *read(store: ObjectStore, bucket: string, part: ObjectSummary, deadline?: ReadDeadline): AsyncGenerator<PartEntry> {
    if (!cacheable(part)) {
      yield* this.stream(store, bucket, part.key);
      return;
    }
    const cached = this.lru.get(partId(bucket, part));
    if (cached) {
      yield* cached.entries;
      return;
    }
    const reading = this.fetch(store, bucket, part);
    if (deadline) {
      const late = await raceTimeout(reading, deadline.remainingMs);
      const failed = late ? null : await reading.then(
        () => null,
        (err: unknown) => err,
      );
      // A part that is gone, unreadable or not a part file is an error of the request, as without a
      // deadline; only a read still in flight or given up as transient is left for the next poll.
      if (failed !== null && !(failed instanceof TransientError)) throw failed;
      if (late || failed !== null) {
        deadline.missed += 1;
        return;
      }
    }
    yield* (await reading).entries;
  }

  /**
   * A part too large to keep (a finalizer's merged part) or the run's manifest, streamed line by
   * line under the bounds of the other part reads: the GET is an attempt as theirs are (aborted
   * after `attemptTimeoutMs`, sent again up to `attempts` times), and each later chunk must come
   * within `attemptTimeoutMs`. A stalled read fails its reader with a TransientError naming the
   * object (the dashboard answers 503) instead of holding the request open. Unlike a small part it
   * is not left out at the reader's deadline: its lines are not kept, so no later request would
   * add them, and the first lines may already have been given out.
   */
  async *stream(store: ObjectStore, bucket: string, key: string): AsyncGenerator<PartEntry> {
    const what = `reading s3://${bucket}/${key}`;
    const { stream } = await withAttempts(what, (signal) => store.getStream(bucket, key, { signal }), this.reads, ONLY_TIMED_OUT);
    yield* partLines(stream, { idleMs: this.reads.attemptTimeoutMs, what });
  }

  /**
   * The manifest's lines of `keys` (distinct, in key order), in key order; keys without a line are
   * absent. A sealed manifest never changes while its run's record stays the same (`stamp`: a
   * finalization changes it), so its index is built once per version (manifest-index.ts; one
   * streamed read, shared by concurrent callers) and each lookup after that reads only the blocks
   * of its keys (one ranged GET of about 64 KiB per block, none for a block still in memory), or
   * the manifest once when more than `MAX_RANGED_READS` blocks are needed. Under another stamp the
   * index is first checked against the manifest's ETag (a ranged read of its first block). A
   * ranged read that finds another version builds the index again, once.
   */
  async *manifestLines(store: ObjectStore, bucket: string, key: string, stamp: string, keys: readonly string[]): AsyncGenerator<PartEntry> {
    for (let attempt = 1; ; attempt++) {
      const index = await this.manifestIndex(store, bucket, key, stamp, attempt > 1);
      let found: PartEntry[];
      try {
        found = await this.linesOf(store, bucket, key, index, keys);
      } catch (err) {
        if (!(err instanceof ManifestChangedError)) throw err;
        if (attempt >= 2) throw new TransientError(`s3://${bucket}/${key} changed while it was read (the run is being finalized again); try again`);
        continue;
      }
      yield* found;
      return;
    }
  }

  private manifestIndex(store: ObjectStore, bucket: string, key: string, stamp: string, stale: boolean): Promise<ManifestIndex> {
    const id = `${bucket}\0${key}`;
    const known = stale ? undefined : this.manifests.get(id);
    if (known && known.stamp === stamp) return Promise.resolve(known.index);
    const building = this.indexing.get(id);
    if (building) return building;
    const what = `reading s3://${bucket}/${key}`;
    const build = (async (): Promise<ManifestIndex> => {
      if (known) {
        // The version check is a ranged read of the first block (bounded as every read here is;
        // a HEAD takes no signal), whose ETag says whether the index still holds.
        try {
          await this.gets.run(() => this.readBlock(store, bucket, key, known.index, 0));
          known.stamp = stamp;
          return known.index;
        } catch (err) {
          if (!(err instanceof ManifestChangedError)) throw err;
        }
      }
      const { stream, etag } = await withAttempts(what, (signal) => store.getStream(bucket, key, { signal }), this.reads, ONLY_TIMED_OUT);
      const index = await buildManifestIndex(boundedChunks(stream, { idleMs: this.reads.attemptTimeoutMs, what }), etag);
      this.manifests.set(id, { index, stamp, byteLength: index.byteLength });
      return index;
    })();
    this.indexing.set(id, build);
    const done = (): void => void this.indexing.delete(id);
    build.then(done, done);
    return build;
  }

  private async linesOf(store: ObjectStore, bucket: string, key: string, index: ManifestIndex, keys: readonly string[]): Promise<PartEntry[]> {
    const wanted = new Set(keys);
    const blocks = [...new Set(keys.map((k) => blockOf(index, k)).filter((b) => b >= 0))];
    const uncached = blocks.filter((b) => !this.lru.has(blockId(bucket, key, index, b)));
    let entries: PartEntry[];
    if (uncached.length > MAX_RANGED_READS) {
      entries = [];
      const what = `reading s3://${bucket}/${key}`;
      const { stream, etag } = await withAttempts(what, (signal) => store.getStream(bucket, key, { signal }), this.reads, ONLY_TIMED_OUT);
      if (etag !== index.etag) {
        stream.destroy();
        throw new ManifestChangedError();
      }
      const last = keys[keys.length - 1] as string;
      for await (const e of partLines(stream, { idleMs: this.reads.attemptTimeoutMs, what })) {
        if (wanted.has(e.key)) entries.push(e);
        if (compareKeys(e.key, last) >= 0) break;
      }
      return entries;
    }
    const read = await Promise.all(blocks.map((b) => this.block(store, bucket, key, index, b)));
    return read.flatMap((block) => block.entries.filter((e) => wanted.has(e.key)));
  }

  /** One block of a manifest, from memory or a ranged GET (shared as `fetch` shares part reads). */
  private block(store: ObjectStore, bucket: string, key: string, index: ManifestIndex, block: number): Promise<CachedPart> {
    const id = blockId(bucket, key, index, block);
    const cached = this.lru.get(id);
    if (cached) return Promise.resolve(cached);
    let reading = this.reading.get(id);
    if (reading) return reading;
    reading = this.gets.run(() => this.readBlock(store, bucket, key, index, block));
    this.reading.set(id, reading);
    const done = (): void => void this.reading.delete(id);
    reading.then(done, done);
    return reading;
  }

  /** A ranged GET of the block, into the cache; ManifestChangedError when the manifest is another version. */
  private async readBlock(store: ObjectStore, bucket: string, key: string, index: ManifestIndex, block: number): Promise<CachedPart> {
    const range = blockRange(index, block);
    const object = await withAttempts(`reading s3://${bucket}/${key} bytes ${range.start}-${range.end - 1}`, (signal) => store.get(bucket, key, { signal, range }), this.reads, ONLY_TIMED_OUT);
    if (object.etag !== index.etag) throw new ManifestChangedError();
    const read = { entries: parsePart(object.body), byteLength: object.body.length * HEAP_FACTOR };
    this.lru.set(blockId(bucket, key, index, block), read);
    return read;
  }

  /**
   * Start reading the listed parts that are not in memory, oldest first, as far as the cache's byte
   * budget goes (more would only push out what was read first). Errors are left to the readers,
   * which ask again.
   */
  private readAhead(store: ObjectStore, bucket: string, parts: readonly ObjectSummary[]): void {
    let budget = this.maxBytes;
    for (const part of parts) {
      if (!cacheable(part)) continue;
      budget -= part.size * HEAP_FACTOR;
      if (budget < 0) return;
      if (!this.lru.has(partId(bucket, part))) this.fetch(store, bucket, part).catch(() => undefined);
    }
  }

  /** The part read whole and parsed into the cache; one read per part at a time, `concurrency` in all. */
  private fetch(store: ObjectStore, bucket: string, part: ObjectSummary): Promise<CachedPart> {
    const id = partId(bucket, part);
    let reading = this.reading.get(id);
    if (reading) return reading;
    reading = this.gets.run(async () => {
      const cached = this.lru.get(id);
      if (cached) return cached;
      const object = await withAttempts(
        `reading s3://${bucket}/${part.key}`,
        (signal) => store.get(bucket, part.key, { signal, maxBytes: MAX_CACHED_PART_BYTES }),
        this.reads,
        ONLY_TIMED_OUT,
      );
      const read = { entries: parsePart(object.body), byteLength: part.size * HEAP_FACTOR };
      this.lru.set(id, read);
      return read;
    });
    this.reading.set(id, reading);
    const done = (): void => void this.reading.delete(id);
    reading.then(done, done);
    return reading;
  }

  get byteSize(): number {
    return this.lru.byteSize;
  }
}

/** Parts small enough to keep, with an ETag that names their version. */
function cacheable(part: ObjectSummary): boolean {
  return part.size <= MAX_CACHED_PART_BYTES && part.etag !== '';
}

/** A manifest block, named by the manifest's version (ETag) and the block's first byte. */
function blockId(bucket: string, key: string, index: ManifestIndex, block: number): string {
  return `${bucket}\0${key}\0${index.etag}\0@${index.offsets[block] ?? 0}`;
}

function partId(bucket: string, part: ObjectSummary): string {
  return `${bucket}\0${part.key}\0${part.etag}`;
}

/**
 * A completed listing plus the parts indexed since. The index must still hold the entry at the
 * listing's position, naming a part the listing has: after a Redis restart that lost its last
 * writes (AOF `everysec`), sequence numbers are given out again to other parts, and the entries
 * after the position would no longer be the ones added since. It must also reach the record's
 * position (`index.seq`); entries past it (counted after the record was read) are included and
 * seen again by the next extension, which keeps one per key. Anything else: list afresh.
 */
async function extend(base: Complete, index: PartIndexView, relist: () => Promise<ObjectSummary[]>): Promise<ObjectSummary[]> {
  const added = await index.from(base.index.seq);
  if (!added || added.last < index.seq) return relist();
  if (added.at && !base.parts.some((p) => p.key === added.at?.key)) return relist();
  return merge(base.parts, added.parts);
}

function merge(known: ObjectSummary[], added: ObjectSummary[]): ObjectSummary[] {
  if (added.length === 0) return known;
  const byKey = new Map(known.map((p) => [p.key, p]));
  for (const p of added) if (!byKey.has(p.key)) byKey.set(p.key, p);
  return [...byKey.values()].sort((a, b) => compareKeys(a.key, b.key));
}
