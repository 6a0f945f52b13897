/**
 * Run records in Redis: what a run is (source, output, options), how far it got (counters), which
 * images are still in flight (`pending`) and which failed (`failed`). Result lines themselves go to
 * S3 part files (result-parts.ts) in batches; Redis never holds a line per finished image, so its
 * memory follows the backlog and the failures, not the size of the run.
 *
 * Exactly-once counting: an image is counted by the Lua script that removes it from `pending` (or,
 * for a retry that succeeded, from `failed`), in the same atomic step as the counters. A retried,
 * recovered or duplicated job finds it gone and counts nothing; its line may reach a second part
 * file, and the finalizer's merge keeps one line per key.
 */
import { randomBytes } from 'node:crypto';
import type { RedisConnection } from './redis.js';
import type { ExplainOptions } from '../explain-options.js';
import type { Provenance, RunManifestLine } from '../manifest.js';
import { ConfigError, NotFoundError, TransientError } from '../errors.js';
import type { ModelIdentity } from '../model-setup.js';
import { stableHash } from '../stable-json.js';
import type { ObjectStore, ObjectSummary } from '../storage/object-store.js';
import { joinKey, parseS3Uri } from '../storage/uri.js';
import { runKeys, runsIndexKey, sweepCursorKey, type KeySpace } from './keys.js';
import type { IndexedParts, PartCache, ReadDeadline } from './part-cache.js';
import { allPartsPrefix, compareKeys, listParts, mergeBounded, mergeSorted, partBody, partName, partsPrefix, preferLine, readPart, type LineChooser, type MergeSpill, type PartEntry } from './result-parts.js';

export type RunState = 'enqueuing' | 'queued' | 'running' | 'finalizing' | 'completed';

/**
 * What the producer found under a run's output prefix when it enqueued the run (RunRecord
 * `outputsAtEnqueue`): 'empty' when every enqueue of the run listed it and found no object there,
 * 'may-exist' once one found objects or could not list it. Only ever moves from 'empty' to
 * 'may-exist' while the run lives (`createRun`).
 */
export type OutputsAtEnqueue = 'empty' | 'may-exist';

export interface RunRecord {
  id: string;
  /** s3:// URI of the source prefix. */
  source: string;
  /** s3:// URI of the output prefix (ends with `/`). */
  output: string;
  options: ExplainOptions;
  /** stableHash of `options`: what a job's options must hash to for the job to be the run's. */
  optionsHash: string;
  /** Free-form model label given at enqueue time (workers record the real provenance). */
  model: string;
  /** The model the run needs (`enqueue --weights`); workers serving another model leave its jobs. Absent: any model. */
  modelIdentity?: ModelIdentity;
  state: RunState;
  /** Images enqueued so far (final once `enqueueComplete`). */
  total: number;
  done: number;
  failed: number;
  degenerate: number;
  enqueueComplete: boolean;
  createdAt: string;
  startedAt?: string;
  enqueueFinishedAt?: string;
  finishedAt?: string;
  /** Provenance reported by the first worker that produced an output for this run. */
  provenance?: Partial<Provenance>;
  /** Changes whenever the record is created afresh: part files of an older epoch are not this run's. */
  epoch: string;
  /** Last key registered by the forward listing (its StartAfter on resume); '' before the first page. */
  cursor: string;
  /** The forward listing reached the end of the prefix once: later enqueues re-list and add new keys. */
  listed: boolean;
  /** manifest.jsonl holds lines of this epoch (a reopened run merges it with the new parts). */
  manifestWritten: boolean;
  /** Manifests sealed so far (FINALIZER_STEP 'seal'): moves with every new version of manifest.jsonl. */
  seals?: number;
  /** Where the run's part index stood (keys.ts `parts`); absent only in records built by hand. */
  partIndex?: PartIndexPosition;
  /**
   * Whether outputs may lie under the output prefix from before this run's jobs wrote any: on
   * 'empty', workers skip the look for stored outputs on a job's first attempt (image-job.ts).
   * Absent in runs created by an older version or without a listing (`NewRun`): unknown, so they look.
   */
  outputsAtEnqueue?: OutputsAtEnqueue;
  /**
   * Moves whenever the run's results change under a finalizer: a result counted while the run is
   * `finalizing` or `completed`, or new images registered then. A finalizer merges the parts as of
   * one generation and publishes only while it is still current (`sealManifest`, `markCompleted`).
   */
  generation: number;
}

/** The run's part index as of a record read; see `RunStore.partsIndexedFrom`. */
export interface PartIndexPosition {
  /** Parts indexed so far: the score of the newest entry. */
  seq: number;
  /**
   * Changes whenever the index alone stops describing what was added to the parts folder since
   * a listing: a result counted by a writer that does not index (the gap between `done`/`failed`
   * and `indexedDone`/`indexedFailed`), or the manifest written (the finalizer deletes the parts).
   */
  basis: string;
}

export interface NewRun {
  id: string;
  source: string;
  output: string;
  options: ExplainOptions;
  model?: string;
  modelIdentity?: ModelIdentity;
  /** What a listing of the output prefix found just before this enqueue; absent: not listed (unknown). */
  outputsAtEnqueue?: OutputsAtEnqueue;
}

export interface RecordOutcome {
  /** False when this image already had its result (a duplicate delivery): nothing was counted. */
  counted: boolean;
  /** Set when nothing was written because the run does not exist (never did, or Redis lost it). */
  rejected?: 'unknown-run';
  done: number;
  failed: number;
  total: number;
  /** Every enqueued image has a result and enqueueing has finished. */
  complete: boolean;
}

/** How a listing page is registered; see `registerPage`. */
export type RegisterMode =
  /** The forward listing: `after` must equal the run's cursor, which moves to `last`. */
  | { kind: 'forward'; after: string; last: string }
  /**
   * A re-listing of a run whose listing ended, under the lease `beginRescan` returned: keys counted
   * during it (the `recent` set) are known. Refused once the lease has expired.
   */
  | { kind: 'rescan'; lease: string }
  /** Register as given (tests, seeding). */
  | { kind: 'plain' };

/** An image registered with a run and waiting for its result: what its job needs to be re-offered. */
export interface PendingImage {
  key: string;
  size: number;
  etag: string;
}

/** What became of each key of a registered page. */
export type KeyState = 'new' | 'pending' | 'failed' | 'recorded';

export interface RegisterOutcome {
  status: 'ok' | 'unknown-run' | 'cursor-moved' | 'lease-expired';
  states: KeyState[];
  /** New images reopened a run that was finalizing or completed (see REGISTER_PAGE). */
  reopened: boolean;
}

// Sets `now` to Redis's clock in ms: every rescan lease is dated by the one clock of the server
// that holds it, never by the clocks of the producers and workers. (Redis 7 replicates a script's
// effects, so a script may read TIME and then write.)
const NOW_MS = `
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
`;

// KEYS: record, pending, failed, recent, finalizer, rescans. ARGV: mode, expected cursor, new
// cursor, rescan lease, then pairs of key and pending value (size and ETag, what a re-offered job
// needs). Returns {status, state per key}: status -1 unknown run, -2 cursor moved (another feeder
// registered this page), -3 the rescan lease has expired, 1 registered and reopened the run, 0
// registered; state 0 new, 1 pending, 2 failed, 3 recorded during a re-listing. Only new keys count
// towards `total`, so a re-enqueue adds nothing twice.
//
// A re-listing may trust `recent` only if its lease never lapsed since it took its snapshot of the
// parts: results counted while no lease was live are in neither. A lease is only ever extended
// while live (RENEW_RESCAN), so one live now was live all along.
//
// New keys in a run that is finalizing or completed make its manifest stale: the run reopens in
// the same step (back to enqueuing, as a fresh enqueue; the finalizer lock goes, so the finalizer
// at work publishes nothing, and the last new result triggers a fresh finalization). Reopening
// anywhere else left a window in which the finalizer wrote a manifest without the new images and
// marked the run completed.
const REGISTER_PAGE = `
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then return {-1} end
local mode = ARGV[1]
if mode == 'forward' then
  local cur = redis.call('HGET', KEYS[1], 'cursor') or ''
  if cur ~= ARGV[2] then return {-2} end
elseif mode == 'rescan' then
  ${NOW_MS}
  local expiry = redis.call('ZSCORE', KEYS[6], ARGV[4])
  if not expiry or tonumber(expiry) <= now then return {-3} end
end
local out = {0}
local fresh = 0
for i = 5, #ARGV, 2 do
  local k = ARGV[i]
  local st = 0
  if redis.call('HEXISTS', KEYS[2], k) == 1 then st = 1
  elseif redis.call('HEXISTS', KEYS[3], k) == 1 then st = 2
  elseif mode == 'rescan' and redis.call('ZSCORE', KEYS[4], k) then st = 3
  else
    redis.call('HSET', KEYS[2], k, ARGV[i + 1])
    fresh = fresh + 1
  end
  out[#out + 1] = st
end
if fresh > 0 then
  redis.call('HINCRBY', KEYS[1], 'total', fresh)
  local st = redis.call('HGET', KEYS[1], 'state')
  if st == 'finalizing' or st == 'completed' then
    redis.call('HSET', KEYS[1], 'state', 'enqueuing')
    redis.call('HDEL', KEYS[1], 'finishedAt')
    redis.call('HINCRBY', KEYS[1], 'gen', 1)
    redis.call('DEL', KEYS[5])
    out[1] = 1
  end
end
if mode == 'forward' then redis.call('HSET', KEYS[1], 'cursor', ARGV[3]) end
return out
`;

// KEYS: record, pending, failed. ARGV: pairs of key and status. Returns {epoch, output, seals,
// flag per key}: 1 when the line may be written (the key is pending, or failed and this result is
// ok), 0 when not (a duplicate delivery after its result was counted, a second failure, or never
// the run's). `seals` counts the manifests sealed so far (COMMIT_RESULTS). An unknown run returns
// {false}.
const CHECK_KEYS = `
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'output', 'seals')
if not meta[1] then return {false} end
local out = {meta[1], meta[2], meta[3] or '0'}
for i = 1, #ARGV, 2 do
  if redis.call('HEXISTS', KEYS[2], ARGV[i]) == 1 or (ARGV[i + 1] == 'ok' and redis.call('HEXISTS', KEYS[3], ARGV[i]) == 1) then out[#out + 1] = 1 else out[#out + 1] = 0 end
end
return out
`;

// KEYS: record, pending, failed, throughput, finalizer, recent, parts, rescans. ARGV: epoch, nowIso, n,
// the part's index entry ('' when no part was written), the index's cap, the seals CHECK_KEYS saw,
// then per result: key, status, degenerate, failed line ('' for ok), throughput bucket. The part
// file with these lines is already in S3. A key is counted when it leaves `pending`, or when an `ok` upgrades a `failed`
// (a manual retry; a completed run then reopens so its manifest is written again; a run being
// finalized moves to its next generation, so its finalizer merges again). Nothing is
// written when the epoch differs: the run was lost and recreated, and the part file of this batch
// lies under the old epoch.
//
// The part enters the run's part index in the same step as its counts, so a reader that sees the
// counters move finds the part in the index. `indexedDone`/`indexedFailed` move with `done`/`failed`
// here only: a count made by a writer that does not index its parts (one from before the index,
// during a rolling upgrade) opens a gap between them, and readers then list the parts instead.
// A replayed script finds the entry present and takes no new sequence number, so the scores stay
// 1, 2, 3, ... without holes and a reader can tell a trimmed or deleted index from a complete one.
//
// A finalizer that sealed a manifest since CHECK_KEYS may have listed this batch's part (stored
// before its listing) and deleted it as merged, while the manifest holds the line the run counted
// then (the failure, for a retry that succeeded). Counting now would count a line no file holds, so
// nothing is written ({-2}) and the writer stores its lines again (RunStore.recordBatch).
//
// A counted key goes into `recent` only while a re-listing holds an unexpired lease (`rescans`);
// when every lease there has expired (their producers died), both sets go, so Redis never keeps
// a key per counted image beyond the re-listings under way.
const COMMIT_RESULTS = `
if redis.call('HGET', KEYS[1], 'epoch') ~= ARGV[1] then return {-1, 0, 0, 0, 0} end
if tonumber(ARGV[3]) > 0 and (redis.call('HGET', KEYS[1], 'seals') or '0') ~= ARGV[6] then return {-2, 0, 0, 0, 0} end
${NOW_MS}
local rescan = redis.call('ZCOUNT', KEYS[8], now + 1, '+inf') > 0
if not rescan and redis.call('EXISTS', KEYS[8]) == 1 then redis.call('DEL', KEYS[8], KEYS[6]) end
local n = tonumber(ARGV[3])
local entry = ARGV[4]
if entry ~= '' and not redis.call('ZSCORE', KEYS[7], entry) then
  local seq = redis.call('HINCRBY', KEYS[1], 'partSeq', 1)
  redis.call('ZADD', KEYS[7], seq, entry)
  local len = redis.call('ZCARD', KEYS[7])
  local cap = tonumber(ARGV[5])
  if len > cap then redis.call('ZREMRANGEBYRANK', KEYS[7], 0, len - cap - 1) end
end
local flags = {}
local counted = 0
local upgraded = false
for i = 0, n - 1 do
  local b = 7 + 5 * i
  local k, st, deg, fl, bucket = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3], ARGV[b + 4]
  local c = 0
  if redis.call('HDEL', KEYS[2], k) == 1 then
    if st == 'ok' then
      redis.call('HINCRBY', KEYS[1], 'done', 1)
      redis.call('HINCRBY', KEYS[1], 'indexedDone', 1)
    else
      redis.call('HINCRBY', KEYS[1], 'failed', 1)
      redis.call('HINCRBY', KEYS[1], 'indexedFailed', 1)
      redis.call('HSET', KEYS[3], k, fl)
    end
    c = 1
  elseif st == 'ok' and redis.call('HDEL', KEYS[3], k) == 1 then
    redis.call('HINCRBY', KEYS[1], 'failed', -1)
    redis.call('HINCRBY', KEYS[1], 'done', 1)
    redis.call('HINCRBY', KEYS[1], 'indexedFailed', -1)
    redis.call('HINCRBY', KEYS[1], 'indexedDone', 1)
    upgraded = true
    c = 1
  end
  if c == 1 then
    if deg == '1' then redis.call('HINCRBY', KEYS[1], 'degenerate', 1) end
    redis.call('HINCRBY', KEYS[4], bucket, 1)
    if rescan then redis.call('ZADD', KEYS[6], 0, k) end
    counted = counted + 1
  end
  flags[#flags + 1] = c
end
if counted > 0 then
  redis.call('HSETNX', KEYS[1], 'startedAt', ARGV[2])
  local st = redis.call('HGET', KEYS[1], 'state')
  if st == 'finalizing' then
    redis.call('HINCRBY', KEYS[1], 'gen', 1)
  elseif upgraded and st == 'completed' then
    redis.call('HSET', KEYS[1], 'state', 'running')
    redis.call('HDEL', KEYS[1], 'finishedAt')
    redis.call('HINCRBY', KEYS[1], 'gen', 1)
    redis.call('DEL', KEYS[5])
  elseif st == 'queued' or st == 'enqueuing' then
    if redis.call('HGET', KEYS[1], 'enqueueComplete') == '1' then redis.call('HSET', KEYS[1], 'state', 'running') end
  end
end
local v = redis.call('HMGET', KEYS[1], 'done', 'failed', 'total', 'enqueueComplete')
local out = {1, tonumber(v[1] or '0'), tonumber(v[2] or '0'), tonumber(v[3] or '0'), v[4] == '1' and 1 or 0}
for i = 1, #flags do out[#out + 1] = flags[i] end
return out
`;

// KEYS: record, then the run's other state keys. ARGV: the new record's field/value pairs, `id`
// first. Creates the record whole or not at all: returns 0 when it exists. Two enqueues of the same
// run at once must never see a record holding only its id (a separate HSETNX then HSET let one
// read such a record and refuse the run as "different").
const CREATE_RUN = `
if redis.call('HEXISTS', KEYS[1], 'id') == 1 then return 0 end
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`;

// KEYS: record. ARGV: 'nx' or 'set', then field/value pairs. Writes only into an existing run
// record: a plain HSET on a run Redis has lost would create a headless record.
const UPDATE_RUN = `
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then return 0 end
for i = 2, #ARGV, 2 do
  if ARGV[1] == 'nx' then redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1]) else redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
`;

// KEYS: record, rescans, recent. ARGV: lease token, lease ms. Returns 1, or 0 for an unknown run.
// Expired leases are pruned; with none live left, `recent` (kept for re-listings that died) is
// dropped, as is the `rescan` counter of earlier versions, which a killed re-listing left up.
const BEGIN_RESCAN = `
if redis.call('HEXISTS', KEYS[1], 'id') == 0 then return 0 end
${NOW_MS}
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) == 0 then redis.call('DEL', KEYS[3]) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HDEL', KEYS[1], 'rescan')
return 1
`;

// KEYS: rescans. ARGV: lease token, lease ms. Extends a live lease (never shortens it: a renewal
// resent after a reconnect may arrive late); an expired or removed one stays lost. Returns 1 live, 0 lost.
const RENEW_RESCAN = `
${NOW_MS}
local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not expiry or tonumber(expiry) <= now then return 0 end
local renewed = now + tonumber(ARGV[2])
if renewed > tonumber(expiry) then redis.call('ZADD', KEYS[1], renewed, ARGV[1]) end
return 1
`;

// KEYS: rescans, recent. ARGV: lease token. Removes only its own lease, so ending twice (a resend
// after a reconnect) is harmless; the last live lease to go takes `recent` with it.
const END_RESCAN = `
redis.call('ZREM', KEYS[1], ARGV[1])
${NOW_MS}
if redis.call('ZCOUNT', KEYS[1], now + 1, '+inf') == 0 then redis.call('DEL', KEYS[1], KEYS[2]) end
return 1
`;

// KEYS: record, finalizer. ARGV: owner, lock ms. The finalizer lock is taken only for a run that
// is complete (enqueueing finished, every image has a result) and not completed, in the same step
// that checks it: a check before the claim let new images registered in between go unmerged.
// Returns 1 claimed, 0 held by another process, -1 incomplete, -2 completed, -3 unknown run.
const CLAIM_FINALIZER = `
local v = redis.call('HMGET', KEYS[1], 'id', 'state', 'enqueueComplete', 'done', 'failed', 'total')
if not v[1] then return -3 end
if v[2] == 'completed' then return -2 end
if v[3] ~= '1' or tonumber(v[4] or '0') + tonumber(v[5] or '0') < tonumber(v[6] or '0') then return -1 end
if not redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2], 'NX') then return 0 end
redis.call('HSET', KEYS[1], 'state', 'finalizing')
return 1
`;

// KEYS: record, finalizer. ARGV: owner, generation, then what to do when both still hold. What a
// finalizer publishes stands only while its lock is its own (a sweeper takes over an expired one;
// a registration of new images deletes it) and the run's results are those of the generation it
// merged. Returns 1 done, 0 lock lost, -1 generation moved.
const FINALIZER_STEP = `
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[1], 'gen') or '0') ~= ARGV[2] then return -1 end
if ARGV[3] == 'seal' then
  redis.call('HSET', KEYS[1], 'manifestWritten', '1')
  redis.call('HINCRBY', KEYS[1], 'seals', 1)
else
  redis.call('PERSIST', KEYS[2])
  redis.call('HSET', KEYS[1], 'state', 'completed', 'finishedAt', ARGV[4])
end
return 1
`;

/**
 * Tries at recording a batch while finalizers seal manifests: a seal between a batch's check and
 * its count happens only while a run is finalized with a retry in flight, rarely twice in a row.
 */
const COMMIT_ATTEMPTS = 4;

/** Tries at reading a run's lines while its finalizer replaces parts by the manifest. */
const SOURCE_ATTEMPTS = 4;

/** Width of a throughput bucket in seconds. */
export const THROUGHPUT_BUCKET_SECONDS = 10;

export interface ResultBatching {
  /** Results of one run gathered into one part file and one Redis call. Default 500. */
  maxLines: number;
  /** Longest a result waits for others to share its batch. Default 25 ms. */
  maxDelayMs: number;
}

export const DEFAULT_RESULT_BATCHING: Readonly<ResultBatching> = Object.freeze({ maxLines: 500, maxDelayMs: 25 });

/** What `claimFinalizer` found. */
export type FinalizerClaim = 'claimed' | 'held' | 'incomplete' | 'completed' | 'unknown-run';

/** What a finalizer step (`sealManifest`, `markCompleted`) found: done, or why not. */
export type FinalizerStep = 'done' | 'lock-lost' | 'generation-moved';

export interface RunStoreOptions {
  /** Where part files are written and read (the runs' output buckets). Required to record results. */
  store?: ObjectStore;
  batching?: Partial<ResultBatching>;
  /** Names this process's part files; default random. */
  writerId?: string;
  /** Keeps parsed parts for readers that scan the same runs repeatedly (the dashboard). Default none. */
  partCache?: PartCache;
  /**
   * Entries the run's part index keeps (keys.ts `parts`), the newest: a reader that fell further
   * behind lists the parts once more. The dashboard reads a live run about every second, so 1,000
   * parts cover even a fast run, at about 100 bytes an entry. Default `DEFAULT_PART_INDEX_LENGTH`.
   */
  partIndexLength?: number;
  /**
   * How long a re-listing's lease lasts unless renewed (`beginRescan`): the longest a producer that
   * died mid-re-listing keeps every counted image in `recent`, and the longest a live one may go
   * without reaching Redis before its re-listing is abandoned. Default `DEFAULT_RESCAN_LEASE_MS`.
   */
  rescanLeaseMs?: number;
}

export const DEFAULT_PART_INDEX_LENGTH = 1000;
/** One minute: at ~60 B a key, a dead re-listing under a fast run costs a few MB at most. */
export const DEFAULT_RESCAN_LEASE_MS = 60_000;

interface QueuedResult {
  line: RunManifestLine;
  now: Date;
  resolve: (o: RecordOutcome) => void;
  reject: (e: unknown) => void;
}

export class RunStore {
  readonly objectStore: ObjectStore | undefined;
  private readonly batching: ResultBatching;
  private readonly writerId: string;
  private readonly partCache: PartCache | undefined;
  private readonly partIndexLength: number;
  readonly rescanLeaseMs: number;
  private seq = 0;
  private readonly batches = new Map<string, { items: QueuedResult[]; timer: NodeJS.Timeout }>();

  constructor(
    private readonly redis: RedisConnection,
    private readonly ks: KeySpace,
    options: RunStoreOptions = {},
  ) {
    this.objectStore = options.store;
    this.batching = { ...DEFAULT_RESULT_BATCHING, ...options.batching };
    this.writerId = options.writerId ?? randomBytes(4).toString('hex');
    this.partCache = options.partCache;
    this.partIndexLength = options.partIndexLength ?? DEFAULT_PART_INDEX_LENGTH;
    if (!Number.isInteger(this.partIndexLength) || this.partIndexLength < 1) throw new ConfigError('RunStore', `partIndexLength must be a positive integer, got ${this.partIndexLength}`);
    this.rescanLeaseMs = options.rescanLeaseMs ?? DEFAULT_RESCAN_LEASE_MS;
    if (!Number.isInteger(this.rescanLeaseMs) || this.rescanLeaseMs < 3) throw new ConfigError('RunStore', `rescanLeaseMs must be an integer of at least 3, got ${this.rescanLeaseMs}`);
    redis.defineCommand('gcaRegisterPage', { numberOfKeys: 6, lua: REGISTER_PAGE });
    redis.defineCommand('gcaCheckKeys', { numberOfKeys: 3, lua: CHECK_KEYS });
    redis.defineCommand('gcaCommitResults', { numberOfKeys: 8, lua: COMMIT_RESULTS });
    redis.defineCommand('gcaBeginRescan', { numberOfKeys: 3, lua: BEGIN_RESCAN });
    redis.defineCommand('gcaRenewRescan', { numberOfKeys: 1, lua: RENEW_RESCAN });
    redis.defineCommand('gcaEndRescan', { numberOfKeys: 2, lua: END_RESCAN });
    redis.defineCommand('gcaCreateRun', { numberOfKeys: 1 + runStateKeys(runKeys(this.ks, '')).length, lua: CREATE_RUN });
    redis.defineCommand('gcaUpdateRun', { numberOfKeys: 1, lua: UPDATE_RUN });
    redis.defineCommand('gcaClaimFinalizer', { numberOfKeys: 2, lua: CLAIM_FINALIZER });
    redis.defineCommand('gcaFinalizerStep', { numberOfKeys: 2, lua: FINALIZER_STEP });
  }

  keys(runId: string): ReturnType<typeof runKeys> {
    return runKeys(this.ks, runId);
  }

  /** Create the run record, or return the existing one (idempotent re-enqueue). */
  async createRun(run: NewRun, now = new Date()): Promise<{ record: RunRecord; created: boolean }> {
    const k = this.keys(run.id);
    const key = k.record;
    // A new record under an id whose state is still in Redis (the record alone was lost) starts
    // from nothing, or stale keys would never be counted again and the run would never end; a new
    // epoch sets aside part files the lost record's workers wrote. The run's keys share a hash slot
    // (keys.ts), so the script is valid on a cluster; the runs index is written on its own.
    const fields: Record<string, string> = {
      id: run.id,
      source: run.source,
      output: run.output,
      options: JSON.stringify(run.options),
      optionsHash: stableHash(run.options),
      model: run.model ?? '',
      ...(run.modelIdentity ? { modelIdentity: JSON.stringify(run.modelIdentity) } : {}),
      state: 'enqueuing',
      total: '0',
      done: '0',
      failed: '0',
      degenerate: '0',
      enqueueComplete: '0',
      createdAt: now.toISOString(),
      epoch: `${now.getTime().toString(36)}${randomBytes(3).toString('hex')}`,
      cursor: '',
      ...(run.outputsAtEnqueue ? { outputsAtEnqueue: run.outputsAtEnqueue } : {}),
    };
    const created = Number(await this.cmd().gcaCreateRun(key, ...runStateKeys(k), ...Object.entries(fields).flat()));
    if (created !== 1) {
      // A re-enqueue reopens listing; counters and pending keys stay. Outputs found now make the
      // run's 'may-exist' for good; finding none never undoes that (NX: it only fills in a run that
      // has no answer yet, one created by an older version). An older listing that found nothing
      // cannot hide objects a concurrent enqueue of the same run found either.
      const may = run.outputsAtEnqueue === 'may-exist';
      await this.updateRun(run.id, { enqueueComplete: '0', ...(may ? { outputsAtEnqueue: 'may-exist' } : {}) });
      if (run.outputsAtEnqueue === 'empty') await this.updateRun(run.id, { outputsAtEnqueue: 'empty' }, 'nx');
    }
    // A re-enqueue (NX) keeps the creation time, and repairs an index entry that a crash between
    // the record and this write left out.
    if (created === 1) await this.redis.zadd(runsIndexKey(this.ks), now.getTime(), run.id);
    else await this.redis.zadd(runsIndexKey(this.ks), 'NX', now.getTime(), run.id);
    const record = await this.getRun(run.id);
    if (!record) throw new NotFoundError(`run ${run.id} vanished while being created`);
    return { record, created: created === 1 };
  }

  async getRun(runId: string): Promise<RunRecord | null> {
    const h = await this.redis.hgetall(this.keys(runId).record);
    if (!h.id) return null;
    return parseRun(h);
  }

  async requireRun(runId: string): Promise<RunRecord> {
    const run = await this.getRun(runId);
    if (!run) throw new NotFoundError(`no run "${runId}" in Redis (check the run id and REDIS_URL / GRADCAM_AUDIT_PREFIX)`);
    return run;
  }

  /** Newest first. */
  async listRunIds(limit = 100): Promise<string[]> {
    return this.redis.zrevrange(runsIndexKey(this.ks), 0, limit - 1);
  }

  async listRuns(limit = 100): Promise<RunRecord[]> {
    const ids = await this.listRunIds(limit);
    const runs = await Promise.all(ids.map((id) => this.getRun(id)));
    return runs.filter((r): r is RunRecord => r !== null);
  }

  /**
   * Register one listing page's keys with the run, atomically with the listing cursor (forward
   * mode): a producer killed mid-listing resumes after the last page registered, and a page is
   * never registered twice, so no image is counted twice.
   */
  async registerPage(runId: string, entries: readonly PendingImage[], mode: RegisterMode): Promise<RegisterOutcome> {
    const k = this.keys(runId);
    const after = mode.kind === 'forward' ? mode.after : '';
    const last = mode.kind === 'forward' ? mode.last : '';
    const lease = mode.kind === 'rescan' ? mode.lease : '';
    const pairs: string[] = [];
    for (const e of entries) pairs.push(e.key, `${e.size}\t${e.etag}`);
    const out = (await this.cmd().gcaRegisterPage(k.record, k.pending, k.failed, k.recent, k.finalizer, k.rescans, mode.kind, after, last, lease, ...pairs)) as number[];
    if (out[0] === -1) return { status: 'unknown-run', states: [], reopened: false };
    if (out[0] === -2) return { status: 'cursor-moved', states: [], reopened: false };
    if (out[0] === -3) return { status: 'lease-expired', states: [], reopened: false };
    const names: KeyState[] = ['new', 'pending', 'failed', 'recorded'];
    return { status: 'ok', states: out.slice(1).map((s) => names[s] as KeyState), reopened: out[0] === 1 };
  }

  /** Register source keys for a run; returns the indices of entries that were not known before. */
  async addJobs(runId: string, entries: Array<{ key: string; size?: number; etag?: string }>): Promise<number[]> {
    if (entries.length === 0) return [];
    const r = await this.registerPage(
      runId,
      entries.map((e) => ({ key: e.key, size: e.size ?? 0, etag: e.etag ?? '' })),
      { kind: 'plain' },
    );
    if (r.status === 'unknown-run') throw new NotFoundError(`no run "${runId}" in Redis`);
    return r.states.flatMap((s, i) => (s === 'new' ? [i] : []));
  }

  /**
   * A re-listing starts: from now on, keys counted are remembered (the `recent` set) while its lease
   * (or another re-listing's) is live. Returns the lease, to be renewed (`renewRescan`) well within
   * `rescanLeaseMs` and ended (`endRescan`); null for an unknown run. A producer that dies without
   * ending it costs nothing once the lease has expired: no counter is left behind.
   */
  async beginRescan(runId: string): Promise<string | null> {
    const k = this.keys(runId);
    const lease = randomBytes(12).toString('hex');
    const ok = await this.cmd().gcaBeginRescan(k.record, k.rescans, k.recent, lease, String(this.rescanLeaseMs));
    return ok === 1 ? lease : null;
  }

  /** Extend a live lease by `rescanLeaseMs` from now; false when it has expired (or ended): it stays lost. */
  async renewRescan(runId: string, lease: string): Promise<boolean> {
    return (await this.cmd().gcaRenewRescan(this.keys(runId).rescans, lease, String(this.rescanLeaseMs))) === 1;
  }

  /** End a re-listing's lease. Idempotent: it removes only this lease. */
  async endRescan(runId: string, lease: string): Promise<void> {
    const k = this.keys(runId);
    await this.cmd().gcaEndRescan(k.rescans, k.recent, lease);
  }

  /** Images registered and still without a result: the run's backlog in Redis. */
  async backlog(runId: string): Promise<number> {
    return this.redis.hlen(this.keys(runId).pending);
  }

  /** Pending images (HSCAN pages): what a re-enqueue offers BullMQ again. */
  async *scanPending(runId: string, count = 1000): AsyncIterable<PendingImage[]> {
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(this.keys(runId).pending, cursor, 'COUNT', count);
      cursor = next;
      const page: PendingImage[] = [];
      for (let i = 0; i < flat.length; i += 2) {
        const v = flat[i + 1] as string;
        const tab = v.indexOf('\t');
        page.push({ key: flat[i] as string, size: Number(v.slice(0, tab)), etag: v.slice(tab + 1) });
      }
      if (page.length > 0) yield page;
    } while (cursor !== '0');
  }

  /** Listing finished: `total` is final from now on. Returns the record after the update. */
  async finishEnqueue(runId: string, now = new Date()): Promise<RunRecord> {
    await this.updateRun(runId, { enqueueComplete: '1', enqueueFinishedAt: now.toISOString(), listed: '1' });
    const run = await this.requireRun(runId);
    if (run.state === 'enqueuing') {
      const state: RunState = run.done + run.failed > 0 ? 'running' : 'queued';
      await this.updateRun(runId, { state });
      run.state = state;
    }
    return run;
  }

  /**
   * Record one image's final result exactly once. Results of one run arriving within
   * `batching.maxDelayMs` share one part file and one pair of Redis calls.
   */
  recordResult(runId: string, line: RunManifestLine, now = new Date()): Promise<RecordOutcome> {
    if (!this.objectStore) return Promise.reject(new ConfigError('RunStore', 'recording results needs an object store for the part files'));
    return new Promise<RecordOutcome>((resolve, reject) => {
      let batch = this.batches.get(runId);
      if (!batch) {
        const timer = setTimeout(() => this.flush(runId), this.batching.maxDelayMs);
        batch = { items: [], timer };
        this.batches.set(runId, batch);
      }
      batch.items.push({ line, now, resolve, reject });
      if (batch.items.length >= this.batching.maxLines) this.flush(runId);
    });
  }

  private flush(runId: string): void {
    const batch = this.batches.get(runId);
    if (!batch) return;
    this.batches.delete(runId);
    clearTimeout(batch.timer);
    this.recordBatch(runId, batch.items).then(
      (outcomes) => batch.items.forEach((it, i) => it.resolve(outcomes[i] as RecordOutcome)),
      (err: unknown) => batch.items.forEach((it) => it.reject(err)),
    );
  }

  /**
   * One batch: which keys may be written (pending or failed) → one part file with their lines →
   * one script that counts them. A crash between the PUT and the count leaves the images pending,
   * so their jobs run again and count then; the lines written twice merge into one. A finalizer
   * that sealed a manifest in between may have deleted the part (COMMIT_RESULTS): then the batch
   * is checked, written and committed again, a few times at most before the job is retried.
   */
  private async recordBatch(runId: string, items: readonly QueuedResult[]): Promise<RecordOutcome[]> {
    for (let attempt = 1; ; attempt++) {
      const outcomes = await this.tryRecordBatch(runId, items);
      if (outcomes !== 'sealed-meanwhile') return outcomes;
      if (attempt >= COMMIT_ATTEMPTS) throw new TransientError(`run ${runId}: a finalizer sealed its manifest during each of ${attempt} attempts at recording a batch`);
    }
  }

  private async tryRecordBatch(runId: string, items: readonly QueuedResult[]): Promise<RecordOutcome[] | 'sealed-meanwhile'> {
    const store = this.objectStore as ObjectStore;
    const k = this.keys(runId);
    const keyStatus = items.flatMap((it) => [it.line.key, it.line.status]);
    const check = (await this.cmd().gcaCheckKeys(k.record, k.pending, k.failed, ...keyStatus)) as Array<string | number | null>;
    if (!check[0]) return items.map(() => ({ counted: false, rejected: 'unknown-run', done: 0, failed: 0, total: 0, complete: false }));
    const epoch = String(check[0]);
    const out = parseS3Uri(String(check[1]), `output of run ${runId}`);
    const seals = String(check[2]);
    const writable = items.filter((_, i) => check[i + 3] === 1);
    let indexEntry = '';
    if (writable.length > 0) {
      const { body } = partBody(writable.map((it) => it.line));
      const name = partName(Date.now(), this.writerId, this.seq++);
      const { etag } = await store.put(out.bucket, `${partsPrefix(out.key, epoch)}${name}`, body, { contentType: 'application/x-ndjson' });
      indexEntry = `${name}\t${Buffer.byteLength(body)}\t${etag}`;
    }
    const args: string[] = [epoch, (items[0] as QueuedResult).now.toISOString(), String(writable.length), indexEntry, String(this.partIndexLength), seals];
    for (const it of writable) {
      const bucket = String(Math.floor(it.now.getTime() / 1000 / THROUGHPUT_BUCKET_SECONDS) * THROUGHPUT_BUCKET_SECONDS);
      args.push(it.line.key, it.line.status, it.line.degenerate ? '1' : '0', it.line.status === 'failed' ? JSON.stringify(it.line) : '', bucket);
    }
    const res = (await this.cmd().gcaCommitResults(k.record, k.pending, k.failed, k.throughput, k.finalizer, k.recent, k.parts, k.rescans, ...args)) as number[];
    const [status, done, failed, total, enqueueComplete] = res as [number, number, number, number, number];
    if (status === -2) return 'sealed-meanwhile';
    if (status < 0) return items.map(() => ({ counted: false, rejected: 'unknown-run', done: 0, failed: 0, total: 0, complete: false }));
    const complete = enqueueComplete === 1 && done + failed >= total;
    const countedByItem = new Map<QueuedResult, boolean>();
    writable.forEach((it, i) => countedByItem.set(it, res[5 + i] === 1));
    // `complete` goes to the one result that completed the run (the batch's last counted one), so
    // its caller alone triggers the finalizer.
    const last = writable.findLast((it) => countedByItem.get(it) === true);
    return items.map((it) => ({ counted: countedByItem.get(it) === true, done, failed, total, complete: complete && it === last }));
  }

  /** Whether `sourceKey` belongs to the run and still takes a result: pending, or failed (retry). */
  async isEnqueued(runId: string, sourceKey: string): Promise<boolean> {
    const k = this.keys(runId);
    const [p, f] = (await this.redis.multi().hexists(k.pending, sourceKey).hexists(k.failed, sourceKey).exec()) ?? [];
    return p?.[1] === 1 || f?.[1] === 1;
  }

  /** The result line of one image: a failure from Redis, else from the run's parts or manifest (see `getResults`). */
  async getResult(runId: string, sourceKey: string): Promise<RunManifestLine | null> {
    return (await this.getResults(runId, [sourceKey])).get(sourceKey) ?? null;
  }

  /**
   * The result lines of several images at once (a gallery page): failures from Redis in one call,
   * the others from one merged read of the run's parts that stops past the greatest key asked for.
   * One `getResult` per key would read every part once per key. A sealed manifest is not read up to
   * the greatest key: with a part cache, only the blocks holding the keys are (`PartCache.manifestLines`),
   * so a lookup on a finished run reads about 64 KiB, not the manifest. Keys without a result are absent.
   * Given the run's record instead of its id, reads the parts as of that record (see `asOf`). With
   * a deadline, leaves out the parts the part cache has not read by then (see `PartCache.read`).
   */
  async getResults(run: string | RunRecord, sourceKeys: readonly string[], deadline?: ReadDeadline): Promise<Map<string, RunManifestLine>> {
    const runId = typeof run === 'string' ? run : run.id;
    const found = new Map<string, RunManifestLine>();
    if (sourceKeys.length === 0) return found;
    const failed = await this.redis.hmget(this.keys(runId).failed, ...sourceKeys);
    const wanted = new Set<string>();
    sourceKeys.forEach((k, i) => {
      const f = failed[i];
      if (f) found.set(k, JSON.parse(f) as RunManifestLine);
      else wanted.add(k);
    });
    const record = wanted.size > 0 ? await this.asOf(run) : null;
    if (!record || !this.objectStore) return found;
    const keys = [...wanted].sort(compareKeys);
    const last = keys[keys.length - 1] as string;
    for await (const e of this.resultEntries(record, deadline, keys)) {
      if (wanted.has(e.key)) found.set(e.key, e.line);
      if (compareKeys(e.key, last) >= 0) break; // lines come in key order
    }
    return found;
  }

  /** Failed result lines (HSCAN of the failed hash: O(failures), arbitrary order). */
  async *scanFailed(runId: string, count = 1000): AsyncIterable<RunManifestLine[]> {
    let cursor = '0';
    do {
      const [next, flat] = await this.redis.hscan(this.keys(runId).failed, cursor, 'COUNT', count);
      cursor = next;
      const page: RunManifestLine[] = [];
      for (let i = 1; i < flat.length; i += 2) page.push(JSON.parse(flat[i] as string) as RunManifestLine);
      if (page.length > 0) yield page;
    } while (cursor !== '0');
  }

  /**
   * Every result line, one per key, in key order: the run's parts (and manifest) merged. Given the
   * run's record instead of its id, reads the parts as of that record (see `asOf`). With a
   * deadline, leaves out the parts the part cache has not read by then (see `PartCache.read`).
   */
  async *scanResults(run: string | RunRecord, count = 1000, deadline?: ReadDeadline): AsyncIterable<RunManifestLine[]> {
    const record = await this.asOf(run);
    if (!record || !this.objectStore) return;
    let page: RunManifestLine[] = [];
    for await (const e of this.resultEntries(record, deadline)) {
      page.push(e.line);
      if (page.length >= count) {
        yield page;
        page = [];
      }
    }
    if (page.length > 0) yield page;
  }

  /**
   * The record reads go by: the caller's, when it has one. The dashboard stamps what it computes
   * from a run's lines (a gallery's key listing, then the page's lines) with the record it read;
   * reading the record again for each step made each step read the parts counted meanwhile, one
   * round of S3 reads per step of one request while results keep coming. Lines counted after the
   * record may still appear (a listing holds whatever was stored when it ran), never fewer.
   */
  private async asOf(run: string | RunRecord): Promise<RunRecord | null> {
    return typeof run === 'string' ? this.getRun(run) : run;
  }

  /** Where a run's lines are: its manifest (once written in this epoch) and its part files. */
  resultSources(run: RunRecord): { bucket: string; partsPrefix: string; manifestKey: string } {
    const out = parseS3Uri(run.output, `output of run ${run.id}`);
    return { bucket: out.bucket, partsPrefix: partsPrefix(out.key, run.epoch), manifestKey: joinKey(out.key, 'manifest.jsonl') };
  }

  /**
   * Which of two lines of one key the run's books stand by. A key with an ok and a failed line was
   * counted once, as one of them: an ok result whose part was stored but never counted (its writer
   * lost the answer, or died, between the PUT and the counting script) and whose job then failed
   * for good is counted as failed, and stays in the `failed` hash; an ok result counted before a
   * later failure keeps the key out of it. So the `failed` hash decides, and the manifest, the
   * summary, the failures list and the counters agree. Other pairs: `preferLine`. One HEXISTS per
   * conflicting key only; fixed per key while the run is complete (the finalizer's case).
   */
  lineChooser(runId: string): LineChooser {
    const failedKey = this.keys(runId).failed;
    return async (a, b) => {
      if (a.line.status === b.line.status) return preferLine(a, b);
      const [ok, failed] = a.line.status === 'ok' ? [a, b] : [b, a];
      return (await this.redis.hexists(failedKey, a.key)) === 1 ? failed : ok;
    };
  }

  /**
   * The run's lines in key order, one per key (parts and manifest merged), for merge-joins (a
   * re-listing's check of done keys). With `spill`, at most `spill.fanIn` parts are open at once
   * (`mergeBounded`); without it every part is, about 12 KB of heap each before the first line.
   */
  async *resultLines(run: RunRecord, spill?: MergeSpill): AsyncGenerator<PartEntry> {
    yield* this.resultEntries(run, undefined, undefined, spill);
  }

  /**
   * The finalizer deletes the parts once the manifest holds their lines, and it sets
   * `manifestWritten` before it deletes any. A reader racing it either finds a listed part gone
   * (NotFoundError) or lists after the deletion with a record read before it; `currentSources`
   * catches the second case, and the first resumes here, after the last key already yielded, from
   * the run's sources as they are now (the manifest). Lines come in key order, so nothing is
   * yielded twice or skipped.
   */
  private async *resultEntries(run: RunRecord, deadline?: ReadDeadline, only?: readonly string[], spill?: MergeSpill): AsyncGenerator<PartEntry> {
    let current = run;
    let last: string | undefined;
    for (let attempt = 1; ; attempt++) {
      try {
        const sources = await this.currentSources(current, deadline, only);
        const choose = this.lineChooser(run.id);
        const out = parseS3Uri(current.output, `output of run ${run.id}`);
        const lines = spill ? mergeBounded(this.objectStore as ObjectStore, out.bucket, allPartsPrefix(out.key), sources, spill, choose) : mergeSorted(sources, choose);
        for await (const e of lines) {
          if (last !== undefined && compareKeys(e.key, last) <= 0) continue;
          last = e.key;
          yield e;
        }
        return;
      } catch (err) {
        // A run can be finalized only a few times; more vanished sources mean the output itself
        // is gone, which the caller reports.
        if (!(err instanceof NotFoundError) || attempt >= SOURCE_ATTEMPTS) throw err;
        const src = this.resultSources(current);
        this.partCache?.invalidate(src.bucket, src.partsPrefix);
        current = (await this.getRun(run.id)) ?? current;
      }
    }
  }

  /**
   * Readers of the run's parts (and manifest). The record is read again after the listing: if the
   * manifest was written meanwhile, the listing may have missed parts already deleted, and the
   * manifest holds their lines; a new epoch (the run was lost and recreated) means other parts.
   * With `only` (distinct keys in key order), the manifest gives only their lines, looked up in
   * its index (`PartCache.manifestLines`) when there is a part cache; the parts are read whole.
   */
  private async currentSources(run: RunRecord, deadline?: ReadDeadline, only?: readonly string[]): Promise<AsyncIterable<PartEntry>[]> {
    const store = this.objectStore as ObjectStore;
    for (let attempt = 1; ; attempt++) {
      const src = this.resultSources(run);
      const stamp = `${run.epoch}/${run.done}/${run.failed}/${run.manifestWritten ? 1 : 0}`;
      const index = run.partIndex && { ...run.partIndex, from: (seq: number) => this.partsIndexedFrom(run.id, src.partsPrefix, seq) };
      const parts = await (this.partCache ? this.partCache.list(store, src.bucket, src.partsPrefix, stamp, index, deadline) : listParts(store, src.bucket, src.partsPrefix));
      const now = (await this.getRun(run.id)) ?? run;
      if (now.epoch !== run.epoch && attempt < SOURCE_ATTEMPTS) {
        run = now;
        continue;
      }
      const cache = this.partCache;
      const readers = parts.map((p) => (cache ? cache.read(store, src.bucket, p, deadline) : readPart(store, src.bucket, p.key)));
      if (now.manifestWritten && now.epoch === run.epoch) {
        // Each new version of the manifest is sealed (`seals` moves) before the parts it merged
        // go, so under another count the index of the manifest is checked against its ETag.
        const sealed = `${now.epoch}/${now.seals ?? 0}/${now.done}/${now.failed}`;
        if (cache && only) readers.push(cache.manifestLines(store, src.bucket, src.manifestKey, sealed, only));
        else readers.push(cache ? cache.stream(store, src.bucket, src.manifestKey) : readPart(store, src.bucket, src.manifestKey));
      }
      return readers;
    }
  }

  /**
   * The run's part index (keys.ts `parts`) from sequence number `from` on: the entry at `from`
   * (none for 0), the parts indexed after it in index order, and the newest number. Null when the
   * index no longer holds every one of them (trimmed past `from`, or deleted: finalization, Redis
   * data loss). The scores have no holes (COMMIT_RESULTS), so "every one" is a count. O(parts
   * added since), bounded by the index's cap.
   */
  async partsIndexedFrom(runId: string, prefix: string, from: number): Promise<IndexedParts | null> {
    const flat = await this.redis.zrangebyscore(this.keys(runId).parts, from > 0 ? from : '(0', '+inf', 'WITHSCORES');
    let at: ObjectSummary | null = null;
    const parts: ObjectSummary[] = [];
    let last = from;
    for (let i = 0; i < flat.length; i += 2) {
      const [name, size, etag] = (flat[i] as string).split('\t');
      const part = { key: `${prefix}${name}`, size: Number(size), etag: etag ?? '' };
      const seq = Number(flat[i + 1]);
      if (seq === from) at = part;
      else parts.push(part);
      last = seq;
    }
    if (from > 0 && at === null) return null;
    return parts.length === last - from ? { at, parts, last } : null;
  }

  /**
   * The finalizer deleted the run's parts: their index goes too. A reader that listed before
   * finds its sequence number missing from the index and lists again.
   */
  async dropPartIndex(runId: string): Promise<void> {
    await this.redis.del(this.keys(runId).parts);
  }

  /** Images per throughput bucket, oldest first. */
  async throughput(runId: string): Promise<Array<{ t: number; count: number }>> {
    const h = await this.redis.hgetall(this.keys(runId).throughput);
    return Object.entries(h)
      .map(([t, c]) => ({ t: Number(t), count: Number(c) }))
      .sort((a, b) => a.t - b.t);
  }

  /**
   * Record when a worker took the run's first image: the start of its processing span, from which
   * throughput is measured (shared/run-stats.ts). Only the first call counts, and a deleted run is
   * not recreated. Recording a result sets it too, for runs whose worker never called this.
   */
  async markStarted(runId: string, at = new Date()): Promise<void> {
    await this.updateRun(runId, { startedAt: at.toISOString() }, 'nx');
  }

  /** Record the first worker's provenance (model hash, engine, backend) on the run. */
  async setProvenanceOnce(runId: string, provenance: Partial<Provenance>): Promise<void> {
    await this.updateRun(runId, { provenance: JSON.stringify(provenance) }, 'nx');
  }

  /**
   * Try to become the one process that writes the run's manifest: only a complete run that is not
   * completed can be claimed (CLAIM_FINALIZER). The lock expires (`ttlMs`) so a finalizer that
   * dies mid-write does not block the run forever; a sweeper may claim it again. `owner` must be
   * unique per finalization, not per process: two finalizations in one process sharing an id
   * would each take the other's lock for its own.
   */
  async claimFinalizer(runId: string, owner: string, ttlMs: number): Promise<FinalizerClaim> {
    const k = this.keys(runId);
    const r = Number(await this.cmd().gcaClaimFinalizer(k.record, k.finalizer, owner, String(ttlMs)));
    const claims: Record<number, FinalizerClaim> = { 1: 'claimed', 0: 'held', [-1]: 'incomplete', [-2]: 'completed', [-3]: 'unknown-run' };
    return claims[r] ?? 'held';
  }

  /**
   * The manifest of `generation` is written: from now on it is a source of the run's lines
   * (`manifestWritten`), so the parts it merged may go. Done only while `owner` holds the lock and
   * the generation is still the run's.
   */
  async sealManifest(runId: string, owner: string, generation: number): Promise<FinalizerStep> {
    return this.finalizerStep(runId, owner, generation, 'seal', '');
  }

  /**
   * The manifest and summary are written: the run is completed and the finalizer lock becomes
   * permanent, in one step with the check that `owner` holds the lock and `generation` is current.
   */
  async markCompleted(runId: string, owner: string, generation: number, now = new Date()): Promise<FinalizerStep> {
    return this.finalizerStep(runId, owner, generation, 'complete', now.toISOString());
  }

  private async finalizerStep(runId: string, owner: string, generation: number, step: 'seal' | 'complete', nowIso: string): Promise<FinalizerStep> {
    const k = this.keys(runId);
    const r = Number(await this.cmd().gcaFinalizerStep(k.record, k.finalizer, owner, String(generation), step, nowIso));
    return r === 1 ? 'done' : r === 0 ? 'lock-lost' : 'generation-moved';
  }

  /** Set fields of an existing run record; false (and nothing written) when the run does not exist. */
  async updateRun(runId: string, fields: Record<string, string>, mode: 'set' | 'nx' = 'set'): Promise<boolean> {
    const args = Object.entries(fields).flat();
    return (await this.cmd().gcaUpdateRun(this.keys(runId).record, mode, ...args)) === 1;
  }

  /**
   * Runs that have every result but no manifest yet (their finalizer died, or none was triggered),
   * among the newest `limit` runs and the next `limit` of a walk over the whole runs index, so a
   * call reads at most 2 * `limit` records however many runs there are, and a run whose finalizer
   * died behind any number of newer runs is found within one pass of the walk. The walk goes
   * oldest first (new runs join at its end, so its position keeps its meaning) and its position is
   * kept in Redis (keys.ts `sweepCursorKey`), shared by every worker's sweep. A run deleted
   * meanwhile shifts the ranks after it: a run may then be skipped, for that pass only.
   */
  async findUnfinalized(limit = 100): Promise<RunRecord[]> {
    const cursorKey = sweepCursorKey(this.ks);
    const from = Number(await this.redis.get(cursorKey)) || 0;
    const [newest, walked] = await Promise.all([this.listRunIds(limit), this.redis.zrange(runsIndexKey(this.ks), String(from), String(from + limit - 1))]);
    await this.redis.set(cursorKey, String(walked.length < limit ? 0 : from + limit));
    const ids = [...new Set([...newest, ...walked])];
    const runs = (await Promise.all(ids.map((id) => this.getRun(id)))).filter((r): r is RunRecord => r !== null);
    const candidates = runs.filter((r) => r.state !== 'completed' && r.enqueueComplete && r.done + r.failed >= r.total);
    const out: RunRecord[] = [];
    for (const r of candidates) {
      if ((await this.redis.exists(this.keys(r.id).finalizer)) === 0) out.push(r);
    }
    return out;
  }

  /** Delete a run's Redis state; outputs in S3 are untouched. */
  async deleteRun(runId: string): Promise<void> {
    const k = this.keys(runId);
    await this.redis.del(k.record, ...runStateKeys(k));
    await this.redis.zrem(runsIndexKey(this.ks), runId);
  }

  private cmd(): RunStoreCommands {
    return this.redis as unknown as RunStoreCommands;
  }
}

interface RunStoreCommands {
  gcaRegisterPage(...args: string[]): Promise<unknown>;
  gcaCheckKeys(...args: string[]): Promise<unknown>;
  gcaCommitResults(...args: string[]): Promise<unknown>;
  gcaBeginRescan(...args: string[]): Promise<unknown>;
  gcaRenewRescan(...args: string[]): Promise<unknown>;
  gcaEndRescan(...args: string[]): Promise<unknown>;
  gcaCreateRun(...args: string[]): Promise<unknown>;
  gcaUpdateRun(...args: string[]): Promise<unknown>;
  gcaClaimFinalizer(...args: string[]): Promise<unknown>;
  gcaFinalizerStep(...args: string[]): Promise<unknown>;
}

/** A run's Redis keys besides its record: what a new record starts without, and what a delete removes. */
function runStateKeys(k: ReturnType<typeof runKeys>): string[] {
  return [k.pending, k.failed, k.recent, k.rescans, k.throughput, k.finalizer, k.feeder, k.parts];
}

function parseRun(h: Record<string, string>): RunRecord {
  const num = (v: string | undefined): number => (v === undefined ? 0 : Number(v));
  const options = JSON.parse(h.options ?? '{}') as ExplainOptions;
  return {
    id: h.id as string,
    source: h.source ?? '',
    output: h.output ?? '',
    options,
    optionsHash: h.optionsHash ?? stableHash(options),
    model: h.model ?? '',
    ...(h.modelIdentity ? { modelIdentity: JSON.parse(h.modelIdentity) as ModelIdentity } : {}),
    state: (h.state ?? 'enqueuing') as RunState,
    total: num(h.total),
    done: num(h.done),
    failed: num(h.failed),
    degenerate: num(h.degenerate),
    enqueueComplete: h.enqueueComplete === '1',
    createdAt: h.createdAt ?? '',
    startedAt: h.startedAt,
    enqueueFinishedAt: h.enqueueFinishedAt,
    finishedAt: h.finishedAt,
    provenance: h.provenance ? (JSON.parse(h.provenance) as Partial<Provenance>) : undefined,
    epoch: h.epoch ?? '',
    seals: num(h.seals),
    cursor: h.cursor ?? '',
    listed: h.listed === '1',
    manifestWritten: h.manifestWritten === '1',
    partIndex: {
      seq: num(h.partSeq),
      basis: `${h.manifestWritten === '1' ? 1 : 0}/${num(h.done) - num(h.indexedDone)}/${num(h.failed) - num(h.indexedFailed)}`,
    },
    generation: num(h.gen),
    // Anything else (absent, or a value this version does not know) is doubt: workers keep looking.
    ...(h.outputsAtEnqueue === 'empty' || h.outputsAtEnqueue === 'may-exist' ? { outputsAtEnqueue: h.outputsAtEnqueue } : {}),
  };
}
