/**
 * Queue shards: the audit queue split into N BullMQ queues (`GRADCAM_AUDIT_QUEUE_SHARDS`), each
 * under its own hash-tagged prefix, so that on a Redis Cluster the queue's traffic (every job's
 * add, fetch, lock renewal and completion) spreads over the masters instead of landing on the one
 * that owns `{gca}`.
 *
 * A job's shard is a function of its (deterministic) job id, so a re-enqueue offers a job to the
 * shard that already holds it and BullMQ still ignores the duplicate; one run's jobs spread over
 * all shards. Nothing else depends on the shard: a result is counted in the run's own keys.
 *
 * Shard i's tag is chosen so that its hash slot lies in the middle of the i-th N-th of the slot space: on a
 * cluster whose masters own equal contiguous slot ranges (what `redis-cli --cluster create` and
 * most managed services set up) N shards for N masters put one shard on each. The names depend
 * only on the prefix, i and N, never on the live slot map, so every process agrees on them.
 */
import { Queue, type Job, type JobType, type JobsOptions, type QueueOptions } from 'bullmq';
import type { KeySpace } from './keys.js';
import type { RedisConnection } from './redis.js';

/** Redis Cluster's hash slots. */
export const CLUSTER_SLOTS = 16384;

/** CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with. */
export function crc16(s: string): number {
  let crc = 0;
  for (const byte of Buffer.from(s, 'utf8')) {
    crc ^= byte << 8;
    for (let b = 0; b < 8; b++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
  }
  return crc;
}

/** The hash slot of a key: of its `{tag}` when it has a non-empty one, else of the whole key. */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(key.slice(open + 1, close)) % CLUSTER_SLOTS;
  }
  return crc16(key) % CLUSTER_SLOTS;
}

/** Number of queue shards of a key space (1 when unset). */
export function shardCount(ks: KeySpace): number {
  return Math.max(1, ks.queueShards ?? 1);
}

/**
 * BullMQ prefix of shard `index`. One shard: the prefix itself, tagged on a cluster (`{gca}`), as
 * before sharding. N shards: `{gca#i}`, or `{gca#i.k}` with the smallest k that puts the tag's slot
 * in the middle of the i-th N-th of the slot space.
 */
export function shardPrefix(ks: KeySpace, index: number): string {
  const n = shardCount(ks);
  if (n === 1) return ks.cluster ? `{${ks.prefix}}` : ks.prefix;
  // The middle half of the i-th N-th: clear of the range ends, where slicing tools round differently.
  const width = CLUSTER_SLOTS / n;
  const lo = Math.ceil(index * width + width / 4);
  const hi = Math.floor(index * width + (3 * width) / 4);
  const base = `${ks.prefix}#${index}`;
  for (let k = 0; ; k++) {
    const tag = k === 0 ? base : `${base}.${k}`;
    const slot = crc16(tag) % CLUSTER_SLOTS;
    if (slot >= lo && slot < hi) return `{${tag}}`;
  }
}

/** Shard of a job: its id hashed (the same CRC16), modulo the number of shards. */
export function shardOfJob(jobId: string, shards: number): number {
  return shards <= 1 ? 0 : crc16(jobId) % shards;
}

/**
 * Entries each shard's BullMQ event stream is trimmed to (approximately: whole stream nodes), in
 * place of BullMQ's 10,000. Every job writes to the stream as it is added (two entries), started
 * and completed (with its return value), and nothing in the project reads it: there is no
 * QueueEvents; progress, counts, failures and bull-board read the run records and BullMQ's job
 * lists. The default kept 1.8 MB of entries per shard for no reader (0.2 MB now;
 * docs/benchmarks.md, "Enqueue: where a key's time goes"). A QueueEvents
 * listener of an operator's own still receives every event live; it can look back this far.
 */
export const QUEUE_EVENTS_MAX_LEN = 1000;

type BulkJob<T> = { name: string; data: T; opts?: JobsOptions };

/**
 * Of `ids`, the jobs whose records BullMQ keeps as completed or failed in `queues` (a queue, or
 * the shards, where each id is looked up in its own): one ZSCORE on each of the two sorted sets per
 * id, pipelined per shard. Not `getJobState`: it also searches the wait list, O(backlog) per call.
 * For 20,000 jobs waiting, in pages of 1,000 (local Redis, load 10): getJobState for each 11.3 s,
 * this 0.4-1.0 s, re-adding them all (a no-op addBulk) 1.4-3.0 s.
 */
export async function finishedJobIds<T>(queues: Queue<T> | QueueShards<T>, ids: readonly string[]): Promise<Set<string>> {
  const byQueue = new Map<Queue<T>, string[]>();
  for (const id of ids) {
    const q = queues instanceof QueueShards ? queues.forJob(id) : queues;
    byQueue.set(q, [...(byQueue.get(q) ?? []), id]);
  }
  const finished = new Set<string>();
  for (const [q, group] of byQueue) {
    // The queue's own connection: an ioredis client or cluster, which the project always gives it.
    const client = (await q.backend.client) as unknown as RedisConnection;
    const pipeline = client.pipeline();
    for (const id of group) pipeline.zscore(q.keys.completed as string, id).zscore(q.keys.failed as string, id);
    const replies = (await pipeline.exec()) ?? [];
    group.forEach((id, i) => {
      for (const [err, score] of [replies[2 * i], replies[2 * i + 1]] as Array<[Error | null, unknown]>) {
        if (err) throw err;
        if (score !== null) finished.add(id);
      }
    });
  }
  return finished;
}

/** The audit queue's shards as one queue: adds route by job id, reads look in the right shard or sum. */
export class QueueShards<T = unknown> {
  readonly queues: ReadonlyArray<Queue<T>>;

  constructor(
    readonly name: string,
    readonly keySpace: KeySpace,
    connection: RedisConnection,
    options: Omit<QueueOptions, 'connection' | 'prefix'> = {},
  ) {
    // BullMQ keeps the stream length in the queue's meta hash, written by every Queue that opens:
    // every process opens the queue here, so they all write the same value.
    const streams = { events: { maxLen: QUEUE_EVENTS_MAX_LEN } };
    this.queues = Array.from({ length: shardCount(keySpace) }, (_, i) => new Queue<T>(name, { streams, ...options, connection, prefix: shardPrefix(keySpace, i) }));
  }

  /** The shard that holds (or will hold) job `jobId`. */
  forJob(jobId: string): Queue<T> {
    return this.queues[shardOfJob(jobId, this.queues.length)] as Queue<T>;
  }

  /** Jobs without an id go to the first shard (the project always sets ids: contract.ts). */
  async addBulk(jobs: Array<BulkJob<T>>): Promise<Array<Job<T>>> {
    if (this.queues.length === 1) return (this.queues[0] as Queue<T>).addBulk(jobs as never) as Promise<Array<Job<T>>>;
    const groups = this.queues.map(() => [] as Array<BulkJob<T>>);
    for (const job of jobs) groups[job.opts?.jobId === undefined ? 0 : shardOfJob(job.opts.jobId, this.queues.length)]?.push(job);
    const added = await Promise.all(groups.map((g, i) => (g.length === 0 ? [] : ((this.queues[i] as Queue<T>).addBulk(g as never) as Promise<Array<Job<T>>>))));
    return added.flat();
  }

  async getJob(jobId: string): Promise<Job<T> | undefined> {
    return this.forJob(jobId).getJob(jobId);
  }

  /** 1 when removed, 0 when the job is locked (active) or absent (BullMQ's `Queue.remove`). */
  async remove(jobId: string): Promise<number> {
    return this.forJob(jobId).remove(jobId);
  }

  /** Counts summed over the shards. */
  async getJobCounts(...types: JobType[]): Promise<Record<string, number>> {
    const all = await Promise.all(this.queues.map((q) => q.getJobCounts(...types)));
    const sum: Record<string, number> = {};
    for (const counts of all) for (const [k, v] of Object.entries(counts)) sum[k] = (sum[k] ?? 0) + v;
    return sum;
  }

  on(event: 'error', listener: (err: Error) => void): this {
    for (const q of this.queues) q.on(event, listener);
    return this;
  }

  async close(): Promise<void> {
    await Promise.all(this.queues.map((q) => q.close()));
  }
}
