/**
 * Result part files: where a run's manifest lines live until the finalizer merges them.
 *
 * Workers record results in batches; each batch becomes one part file in S3,
 * `<output>_parts/<epoch>/<ms>-<writer>-<seq>.jsonl`, its lines sorted by key (`compareKeys`). Redis
 * then holds only counters, the keys still in flight and the failed keys, never the lines. A name is
 * unique per writer and batch, so a retried PUT of the same batch rewrites the same object.
 *
 * A key can appear in more than one part (a worker killed after its PUT and before Redis counted
 * the batch; a manual retry that turned a failure into a success). The merge keeps one line per key
 * by a rule (`LineChooser`) that depends on the lines and the key alone, never on which part they
 * came from, so merging in any grouping (the finalizer's multi-level compaction) gives the same
 * manifest. The finalizer's rule also asks the run's counters which of an ok and a failed line
 * counted (RunStore.lineChooser).
 */
import { createHash, randomBytes } from 'node:crypto';
import { StringDecoder } from 'node:string_decoder';
import { Readable } from 'node:stream';
import type { RunManifestLine } from '../manifest.js';
import { TransientError } from '../errors.js';
import type { ObjectStore, ObjectSummary } from '../storage/object-store.js';
import { raceTimeout } from '../timeout.js';

/** Folder of a run's part files under its output prefix; the epoch changes when Redis loses the run. */
export function partsPrefix(outputKey: string, epoch: string): string {
  return `${outputKey}_parts/${epoch}/`;
}

/** Every epoch's parts; those of other epochs than the run's go once its manifest is sealed. */
export function allPartsPrefix(outputKey: string): string {
  return `${outputKey}_parts/`;
}

/** `<ms>-<writer>-<seq>.jsonl`: unique per writer and batch; sorts by time of writing. */
export function partName(nowMs: number, writer: string, seq: number): string {
  return `${String(nowMs).padStart(13, '0')}-${writer}-${String(seq).padStart(8, '0')}.jsonl`;
}

/** The previous manifest of a reopened run, copied in as the oldest part so the merge includes it. */
export const MANIFEST_PART = '0000000000000-manifest.jsonl';

/**
 * Key order of S3 listings and Redis sorted sets: UTF-8 byte order. JavaScript's `<` compares UTF-16
 * code units, which differs only where a surrogate pair (a code point above U+FFFF) meets a BMP
 * character at or above U+E000; that case is decided here without encoding the strings.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(i);
    if (ca === cb) continue;
    const sa = ca >= 0xd800 && ca <= 0xdfff;
    const sb = cb >= 0xd800 && cb <= 0xdfff;
    if (sa !== sb) return sa ? 1 : -1;
    return ca - cb;
  }
  return a.length - b.length;
}

/** One line of a part: its key, the parsed line and its serialised form. */
export interface PartEntry {
  key: string;
  line: RunManifestLine;
  text: string;
}

export function toEntry(line: RunManifestLine): PartEntry {
  return { key: line.key, line, text: JSON.stringify(line) };
}

/**
 * Which of two lines for one key the manifest keeps: `ok` over `failed` (a retry that succeeded),
 * else the greater serialisation. A total order on the lines alone, so the result does not depend
 * on the order in which parts are merged.
 */
export function preferLine(a: PartEntry, b: PartEntry): PartEntry {
  if (a.line.status !== b.line.status) return a.line.status === 'ok' ? a : b;
  return a.text >= b.text ? a : b;
}

/**
 * Picks the line the manifest keeps for a key with two lines. Must be a fixed rule per key while a
 * merge runs (a total order), so that the grouping of a multi-level merge cannot change the result;
 * may ask Redis (the finalizer's rule does, only for keys with conflicting lines).
 */
export type LineChooser = (a: PartEntry, b: PartEntry) => PartEntry | Promise<PartEntry>;

/** Lines sorted by key, one per key (the preferred one), as a part file body. */
export function partBody(lines: readonly RunManifestLine[]): { body: string; entries: PartEntry[] } {
  const byKey = new Map<string, PartEntry>();
  for (const line of lines) {
    const e = toEntry(line);
    const prev = byKey.get(e.key);
    byKey.set(e.key, prev ? preferLine(prev, e) : e);
  }
  const entries = [...byKey.values()].sort((x, y) => compareKeys(x.key, y.key));
  return { body: entries.map((e) => `${e.text}\n`).join(''), entries };
}

/**
 * Stream a part (or a manifest) line by line. Chunks are pulled one at a time (readline would
 * buffer the whole object ahead of a slow consumer), so a merge of many parts holds one chunk each.
 */
export async function* readPart(store: ObjectStore, bucket: string, key: string): AsyncGenerator<PartEntry> {
  yield* partLines((await store.getStream(bucket, key)).stream);
}

/** A stream that stops sending is given up after `idleMs` without a chunk; `what` names the read. */
export interface StallBound {
  idleMs: number;
  what: string;
}

/**
 * The lines of a part's body stream (see `readPart`), under `stall` as `boundedChunks` reads them.
 */
export async function* partLines(stream: Readable, stall?: StallBound): AsyncGenerator<PartEntry> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of boundedChunks(stream, stall)) {
    const text = rest + decoder.write(chunk);
    let start = 0;
    for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n', start)) {
      if (nl > start) yield entryOf(text.slice(start, nl));
      start = nl + 1;
    }
    rest = text.slice(start);
  }
  rest += decoder.end();
  if (rest !== '') yield entryOf(rest);
}

/**
 * A body stream's chunks, pulled one at a time. With `stall`, each chunk must arrive within
 * `stall.idleMs` of being asked for (time spent in the consumer does not count), else the stream is
 * destroyed and a TransientError says so: a stalled S3 response otherwise never ends. The stream is
 * destroyed however the reader stops.
 */
export async function* boundedChunks(stream: Readable, stall?: StallBound): AsyncGenerator<Buffer> {
  const chunks = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  try {
    for (;;) {
      const pending = chunks.next();
      if (stall && (await raceTimeout(pending, stall.idleMs))) {
        const err = new TransientError(`${stall.what}: S3 sent nothing for ${stall.idleMs} ms mid-object (a stalled or overloaded S3 server); try again, and check the S3 endpoint if it persists`);
        stream.destroy(err);
        throw err;
      }
      const next = await pending;
      if (next.done) return;
      yield next.value;
    }
  } finally {
    stream.destroy();
  }
}

/** The lines of a part read whole (`ObjectStore.get`), in file order. */
export function parsePart(body: Buffer): PartEntry[] {
  const entries: PartEntry[] = [];
  const text = body.toString('utf8');
  let start = 0;
  for (let nl = text.indexOf('\n'); ; nl = text.indexOf('\n', start)) {
    const end = nl < 0 ? text.length : nl;
    if (end > start) entries.push(entryOf(text.slice(start, end)));
    if (nl < 0) return entries;
    start = nl + 1;
  }
}

function entryOf(text: string): PartEntry {
  const line = JSON.parse(text) as RunManifestLine;
  return { key: line.key, line, text };
}

/** Part keys under a prefix, in name order. */
export async function listPartKeys(store: ObjectStore, bucket: string, prefix: string): Promise<string[]> {
  return (await listParts(store, bucket, prefix)).map((o) => o.key);
}

/** Parts under a prefix with their sizes and ETags, in name order. */
export async function listParts(store: ObjectStore, bucket: string, prefix: string, signal?: AbortSignal): Promise<ObjectSummary[]> {
  const parts: ObjectSummary[] = [];
  for await (const page of store.listPages(bucket, prefix, signal ? { signal } : {})) for (const o of page) if (o.key.endsWith('.jsonl')) parts.push(o);
  return parts.sort((a, b) => compareKeys(a.key, b.key));
}

/** Sources whose first line `mergeSorted` fetches at once. */
const OPEN_CONCURRENCY = 16;

/**
 * k-way merge of key-sorted sources into one key-sorted stream with one line per key. Memory is one
 * pending entry per source plus the sources' read buffers: independent of the number of lines.
 */
export async function* mergeSorted(sources: ReadonlyArray<AsyncIterable<PartEntry>>, choose: LineChooser = preferLine): AsyncGenerator<PartEntry> {
  const heap: Array<{ entry: PartEntry; it: AsyncIterator<PartEntry> }> = [];
  const less = (i: number, j: number): boolean => compareKeys((heap[i] as (typeof heap)[number]).entry.key, (heap[j] as (typeof heap)[number]).entry.key) < 0;
  const swap = (i: number, j: number): void => {
    const t = heap[i] as (typeof heap)[number];
    heap[i] = heap[j] as (typeof heap)[number];
    heap[j] = t;
  };
  const up = (i: number): void => {
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!less(i, p)) return;
      swap(i, p);
      i = p;
    }
  };
  const down = (i: number): void => {
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && less(l, m)) m = l;
      if (r < heap.length && less(r, m)) m = r;
      if (m === i) return;
      swap(i, m);
      i = m;
    }
  };
  const iterators = sources.map((s) => s[Symbol.asyncIterator]());
  try {
    // First lines fetched OPEN_CONCURRENCY sources at a time: one after the other, a run with
    // hundreds of parts paid one S3 round trip per part before its first line. Every source is
    // opened either way, so this adds no memory.
    for (let i = 0; i < iterators.length; i += OPEN_CONCURRENCY) {
      const window = iterators.slice(i, i + OPEN_CONCURRENCY);
      const firsts = await Promise.all(window.map((it) => it.next()));
      firsts.forEach((n, j) => {
        if (n.done) return;
        heap.push({ entry: n.value, it: window[j] as AsyncIterator<PartEntry> });
        up(heap.length - 1);
      });
    }
    let pending: PartEntry | undefined;
    while (heap.length > 0) {
      const top = heap[0] as (typeof heap)[number];
      const entry = top.entry;
      const n = await top.it.next();
      if (n.done) {
        const last = heap.pop() as (typeof heap)[number];
        if (heap.length > 0) {
          heap[0] = last;
          down(0);
        }
      } else {
        top.entry = n.value;
        down(0);
      }
      if (pending && pending.key === entry.key) pending = await choose(pending, entry);
      else {
        if (pending) yield pending;
        pending = entry;
      }
    }
    if (pending) yield pending;
  } finally {
    await Promise.allSettled(iterators.map((it) => it.return?.()));
  }
}

/** Writes one object from a stream of unknown length (an S3 multipart upload). */
export type StreamUploader = (bucket: string, key: string, body: Readable, contentType: string) => Promise<void>;

/** Entries as newline-terminated chunks of about 64 KiB, for an upload body. */
export function entriesAsBody(entries: AsyncIterable<PartEntry>, onEntry?: (e: PartEntry) => void): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    let chunk = '';
    for await (const e of entries) {
      onEntry?.(e);
      chunk += `${e.text}\n`;
      if (chunk.length >= 64 * 1024) {
        yield Buffer.from(chunk, 'utf8');
        chunk = '';
      }
    }
    if (chunk !== '') yield Buffer.from(chunk, 'utf8');
  }
  // highWaterMark 1: Readable.from would otherwise read 16 chunks ahead of the upload.
  return Readable.from(chunks(), { highWaterMark: 1 });
}

/** Folder of the finalizer's intermediate merges inside a parts folder; never an input part. */
const MERGE_FOLDER = 'merge/';

/** A part workers (or a reopened run's manifest) left in the epoch folder `prefix`: a finalizer's input. */
function isInputPart(key: string, prefix: string): boolean {
  return key.startsWith(prefix) && !key.startsWith(`${prefix}${MERGE_FOLDER}`);
}

/** The parts workers (and a reopened run's manifest) left: the finalizer's inputs. */
export async function listInputParts(store: ObjectStore, bucket: string, prefix: string): Promise<string[]> {
  return (await listPartKeys(store, bucket, prefix)).filter((k) => isInputPart(k, prefix));
}

/**
 * What a finalizer whose manifest holds the lines of the inputs `read` (of the epoch folder
 * `prefix`) deletes under `allPrefix`: those inputs, every intermediate merge, and the parts of
 * other epochs (a lost record's, never counted again). Never an input it did not read: a result
 * stored after its listing is in no manifest yet, and its part is its only copy.
 */
export async function listMergedParts(store: ObjectStore, bucket: string, allPrefix: string, prefix: string, read: ReadonlySet<string>): Promise<string[]> {
  return (await listPartKeys(store, bucket, allPrefix)).filter((k) => !isInputPart(k, prefix) || read.has(k));
}

/**
 * Streams a bounded merge opens at once by default: the finalizer's compaction and a re-listing's
 * check of done keys (`mergeBounded`). Each open part holds about one read buffer.
 */
export const DEFAULT_FAN_IN = 64;

/** What `compactParts` did: the inputs it listed and the parts the final merge opens. */
export interface Compaction {
  inputs: string[];
  parts: string[];
}

/** A sorted source of a multi-level merge: a name (for intermediate names) and a way to open it. */
export interface MergeSource {
  name: string;
  open(): AsyncIterable<PartEntry>;
}

/**
 * Merge groups of `fanIn` sources into one part each under `folder` until at most `fanIn` remain,
 * so no merge ever holds more than `fanIn` streams open. Each level reads and writes every line
 * once; the number of levels is ceil(log_fanIn(sources)) - 1. Groups are merged one after the
 * other, so at most `fanIn` sources are open at any time. Returns the sources of the final merge;
 * `written` gets each intermediate's name before its upload starts, so a caller that deletes them
 * knows them even when a merge fails.
 */
async function compactSources(store: ObjectStore, upload: StreamUploader, bucket: string, folder: string, sources: readonly MergeSource[], fanIn: number, choose: LineChooser, written: string[] = []): Promise<MergeSource[]> {
  let current = [...sources];
  for (let level = 1; current.length > fanIn; level++) {
    const next: MergeSource[] = [];
    for (let i = 0; i < current.length; i += fanIn) {
      const group = current.slice(i, i + fanIn);
      // Named by its inputs: two finalizers merging the same group write the same object.
      const digest = createHash('sha256').update(group.map((s) => s.name).join('\n')).digest('hex').slice(0, 24);
      const merged = `${folder}L${level}-${String(i / fanIn).padStart(8, '0')}-${digest}.jsonl`;
      written.push(merged);
      await upload(bucket, merged, entriesAsBody(mergeSorted(group.map((s) => s.open()), choose)), 'application/x-ndjson');
      next.push({ name: merged, open: () => readPart(store, bucket, merged) });
    }
    current = next;
  }
  return current;
}

/**
 * Merge groups of `fanIn` parts into one part each until at most `fanIn` remain, so the final merge
 * never holds more than `fanIn` streams open (`compactSources`). Intermediate parts go to `merge/`
 * and no input is deleted here: a finalizer that lost its lock may still be reading them. The
 * finalizer deletes the inputs it merged once its manifest is sealed (`listMergedParts`).
 */
export async function compactParts(store: ObjectStore, upload: StreamUploader, bucket: string, prefix: string, fanIn: number, choose: LineChooser = preferLine): Promise<Compaction> {
  const inputs = await listInputParts(store, bucket, prefix);
  const sources = inputs.map((k) => ({ name: k, open: () => readPart(store, bucket, k) }));
  const compacted = await compactSources(store, upload, bucket, `${prefix}${MERGE_FOLDER}`, sources, fanIn, choose);
  return { inputs, parts: compacted.map((s) => s.name) };
}

/** Where a bounded merge writes its intermediate parts, and how many streams it may open at once. */
export interface MergeSpill {
  upload: StreamUploader;
  /** Streams open at once at most. Default `DEFAULT_FAN_IN`. */
  fanIn?: number;
}

/**
 * `mergeSorted` with at most `fanIn` streams open at any time: more sources are first compacted
 * (`compactSources`) into a folder of their own, `<output>_parts/_scan-<random>/` (`parts` is the
 * run's `allPartsPrefix`), deleted when the merge ends however it ends. Outside every epoch's
 * folder, so no reader of the run's parts lists them and no finalizer merges them; under
 * `_parts/`, so a finalizer deletes what a killed process left (`listMergedParts`). A finalizer
 * that deletes them mid-merge has sealed the manifest first: the reader's NotFoundError retry then
 * reads that. Memory is O(fanIn), not O(sources): a merge that opened every part of a run with
 * 625,000 parts held gigabytes before its first line.
 */
export async function* mergeBounded(store: ObjectStore, bucket: string, parts: string, sources: ReadonlyArray<AsyncIterable<PartEntry>>, spill: MergeSpill, choose: LineChooser = preferLine): AsyncGenerator<PartEntry> {
  const fanIn = spill.fanIn ?? DEFAULT_FAN_IN;
  if (!Number.isInteger(fanIn) || fanIn < 2) throw new RangeError(`fanIn must be an integer of at least 2, got ${fanIn}`);
  if (sources.length <= fanIn) {
    yield* mergeSorted(sources, choose);
    return;
  }
  const folder = `${parts}_scan-${randomBytes(8).toString('hex')}/`;
  const written: string[] = [];
  try {
    const named = sources.map((s, i) => ({ name: String(i), open: () => s }));
    const compacted = await compactSources(store, spill.upload, bucket, folder, named, fanIn, choose, written);
    yield* mergeSorted(compacted.map((s) => s.open()), choose);
  } finally {
    await deleteObjects(store, bucket, written);
  }
}

/**
 * Delete objects with bounded concurrency (S3 DELETE requests are free of charge); returns the keys
 * that could not be deleted. A part left behind is harmless: a later merge drops its duplicate lines.
 */
export async function deleteObjects(store: ObjectStore, bucket: string, keys: readonly string[], concurrency = 16): Promise<string[]> {
  let next = 0;
  const failed: string[] = [];
  const lane = async (): Promise<void> => {
    while (next < keys.length) {
      const key = keys[next++] as string;
      await store.delete(bucket, key).catch(() => failed.push(key));
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, keys.length) }, lane));
  return failed;
}
