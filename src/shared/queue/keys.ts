/**
 * Every Redis key the project owns, in one place. All live under the configured prefix (default
 * `gca`), next to BullMQ's own keys (`<prefix>:<queue>:*`).
 *
 * A run's Redis state is sized by what is in flight, never by the run: result lines live in S3 part
 * files (shared/queue/result-parts.ts) and the listing position is one cursor in the run record.
 */

export interface KeySpace {
  prefix: string;
}

export const runKeys = (ks: KeySpace, runId: string) => ({
  /** Hash: the run record (see RunRecord). */
  record: `${ks.prefix}:run:${runId}`,
  /** Hash: source key -> `size\tETag` for every image registered but without a result yet (the backlog). */
  pending: `${ks.prefix}:run:${runId}:pending`,
  /** Hash: source key -> failed manifest line; the failures list and what a retry may upgrade. */
  failed: `${ks.prefix}:run:${runId}:failed`,
  /**
   * Sorted set (score 0, lexicographic): keys counted while a re-enqueue re-lists the run, so the
   * re-listing never registers an image that was finished after it took its snapshot of the parts.
   */
  recent: `${ks.prefix}:run:${runId}:recent`,
  /** Hash: 10-second bucket (epoch s) -> images finished in it; the throughput chart. */
  throughput: `${ks.prefix}:run:${runId}:tput`,
  /** String lock: the process that writes manifest.jsonl and summary.json. */
  finalizer: `${ks.prefix}:run:${runId}:finalizer`,
  /** String lock: the process that lists the next pages into the run (producer or worker refill). */
  feeder: `${ks.prefix}:run:${runId}:feeder`,
});

/** Sorted set of run ids scored by creation time (ms). */
export const runsIndexKey = (ks: KeySpace): string => `${ks.prefix}:runs`;

/** Sorted set of worker ids scored by last heartbeat (ms); hash of worker id -> heartbeat JSON. */
export const workersIndexKey = (ks: KeySpace): string => `${ks.prefix}:workers`;
export const workersDataKey = (ks: KeySpace): string => `${ks.prefix}:workers:data`;
