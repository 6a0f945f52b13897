/**
 * Every Redis key the project owns, in one place. All live under the configured prefix (default
 * `gca`), next to BullMQ's own keys (`<prefix>:<queue>:*`).
 */

export interface KeySpace {
  prefix: string;
}

export const runKeys = (ks: KeySpace, runId: string) => ({
  /** Hash: the run record (see RunRecord). */
  record: `${ks.prefix}:run:${runId}`,
  /** Hash: source key -> job id, one field per enqueued image (dedupes re-enqueues). */
  jobs: `${ks.prefix}:run:${runId}:jobs`,
  /** Hash: source key -> compact manifest line; one field per finished image (exactly once). */
  results: `${ks.prefix}:run:${runId}:results`,
  /** Hash: 10-second bucket (epoch s) -> images finished in it; the throughput chart. */
  throughput: `${ks.prefix}:run:${runId}:tput`,
  /** String lock: the process that writes manifest.jsonl and summary.json. */
  finalizer: `${ks.prefix}:run:${runId}:finalizer`,
});

/** Sorted set of run ids scored by creation time (ms). */
export const runsIndexKey = (ks: KeySpace): string => `${ks.prefix}:runs`;

/** Sorted set of worker ids scored by last heartbeat (ms); hash of worker id -> heartbeat JSON. */
export const workersIndexKey = (ks: KeySpace): string => `${ks.prefix}:workers`;
export const workersDataKey = (ks: KeySpace): string => `${ks.prefix}:workers:data`;
