/**
 * Every Redis key the project owns, in one place. All live under the configured prefix (default
 * `gca`), next to BullMQ's own keys (`<prefix>:<queue>:*`, contract.ts).
 *
 * A run's Redis state is sized by what is in flight, never by the run: result lines live in S3 part
 * files (shared/queue/result-parts.ts), the listing position is one cursor in the run record, and
 * the index of the latest part files is capped (`parts`).
 *
 * On a Redis Cluster a Lua script or MULTI may only touch keys of one hash slot, so keys that are
 * used together carry the same hash tag (the part of a key between the first `{` and `}` is what
 * the cluster hashes): a run's keys are tagged with its id (`gca:run:{<id>}:pending`), which spreads
 * runs over the masters while each run's scripts stay on one, and the worker heartbeat pair shares
 * `{workers}`. A single server uses the untagged names it always used.
 */
import type { AppConfig } from '../config.js';
import { isClusterUrl } from '../redis-target.js';

export interface KeySpace {
  prefix: string;
  /** Keys carry hash tags (a Redis Cluster). Default false. */
  cluster?: boolean;
  /** BullMQ queues the audit queue is split into (shards.ts). Default 1. */
  queueShards?: number;
}

/** The key space a deployment's configuration names. */
export function keySpaceOf(config: Pick<AppConfig, 'keyPrefix' | 'redisUrl'> & Partial<Pick<AppConfig, 'queueShards'>>): KeySpace {
  return { prefix: config.keyPrefix, cluster: isClusterUrl(config.redisUrl), queueShards: config.queueShards ?? 1 };
}

export const runKeys = (ks: KeySpace, runId: string) => {
  const base = ks.cluster ? `${ks.prefix}:run:{${runId}}` : `${ks.prefix}:run:${runId}`;
  return {
    /** Hash: the run record (see RunRecord). */
    record: base,
    /** Hash: source key -> `size\tETag` for every image registered but without a result yet (the backlog). */
    pending: `${base}:pending`,
    /** Hash: source key -> failed manifest line; the failures list and what a retry may upgrade. */
    failed: `${base}:failed`,
    /**
     * Sorted set (score 0, lexicographic): keys counted while a re-enqueue re-lists the run, so the
     * re-listing never registers an image that was finished after it took its snapshot of the parts.
     */
    recent: `${base}:recent`,
    /**
     * Sorted set: one lease per re-listing under way (a random token), scored by its expiry in ms of
     * Redis's clock. `recent` is written only while one is unexpired: a producer that dies
     * mid-re-listing stops costing memory once its lease runs out (RunStore.beginRescan).
     */
    rescans: `${base}:rescans`,
    /**
     * Sorted set: the run's most recently stored part files, member `<name>\t<bytes>\t<ETag>`,
     * scored by the run's part sequence (`partSeq` in the record: 1, 2, 3, ... in the order the
     * parts were counted). Lets a reader that listed the parts once add the new ones without
     * listing again. Capped (RunStoreOptions.partIndexLength, about 100 bytes an entry), so its
     * size follows the recent write rate, not the run; deleted with the parts by the finalizer.
     */
    parts: `${base}:parts`,
    /** Hash: 10-second bucket (epoch s) -> images finished in it; the throughput chart. */
    throughput: `${base}:tput`,
    /** String lock: the process that writes manifest.jsonl and summary.json. */
    finalizer: `${base}:finalizer`,
    /** String lock: the process that lists the next pages into the run (producer or worker refill). */
    feeder: `${base}:feeder`,
  };
};

/** Sorted set of run ids scored by creation time (ms). Touched alone, so it needs no tag. */
export const runsIndexKey = (ks: KeySpace): string => `${ks.prefix}:runs`;
/**
 * String: the rank in the runs index where the sweep for unfinalized runs reads next
 * (RunStore.findUnfinalized), shared by every worker's sweep. Touched alone, so it needs no tag.
 */
export const sweepCursorKey = (ks: KeySpace): string => `${ks.prefix}:runs:sweep`;

/** Sorted set of worker ids scored by last heartbeat (ms); hash of worker id -> heartbeat JSON. */
export const workersIndexKey = (ks: KeySpace): string => (ks.cluster ? `${ks.prefix}:{workers}` : `${ks.prefix}:workers`);
export const workersDataKey = (ks: KeySpace): string => `${workersIndexKey(ks)}:data`;
