/**
 * The contract between producer and worker: queue name, job payload, deterministic job ids and the
 * job options that decide retries. Changing the payload shape means bumping `PAYLOAD_VERSION`.
 */
import { createHash, randomBytes } from 'node:crypto';
import { ConfigError } from '../errors.js';
import type { JobTruth } from '../audit/types.js';
import type { ExplainOptions } from '../explain-options.js';
import type { ModelIdentity } from '../model-setup.js';
import type { JobsOptions } from 'bullmq';
import type { KeySpace } from './keys.js';
import { shardPrefix } from './shards.js';

export const PAYLOAD_VERSION = 1;
/** BullMQ job name; one kind of job per queue today. */
export const JOB_NAME = 'explain';

export interface AuditJobPayload {
  v: typeof PAYLOAD_VERSION;
  runId: string;
  source: { bucket: string; key: string; etag: string; size: number };
  output: { bucket: string; prefix: string };
  options: ExplainOptions;
  /** The model the run needs (the run record's `modelIdentity`); absent: any model. */
  model?: ModelIdentity;
  /** This image's ground truth (`enqueue --truth`); absent when the run has none for it. */
  truth?: JobTruth;
}

/** Run ids appear in Redis keys, job ids and S3 prefixes: a conservative alphabet. */
const RUN_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/;

export function validateRunId(runId: string, what = '--run-id'): string {
  if (!RUN_ID_RE.test(runId)) {
    throw new ConfigError(what, `expected 1-64 characters from [A-Za-z0-9_-] starting with a letter or digit, got "${runId}"`);
  }
  return runId;
}

/** A sortable, readable run id: `20261125-171503-ab12cd`. */
export function newRunId(now = new Date()): string {
  const iso = now.toISOString();
  return `${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}-${randomBytes(3).toString('hex')}`;
}

/**
 * Deterministic job id for (run, epoch, source key): `<runId>.<epoch>.<digest>`. BullMQ ignores an
 * add whose id it already holds in any state, kept completed and failed records included, so the
 * id carries the run's epoch (RunRecord.epoch, new whenever the run record is created afresh): a
 * run deleted (or lost) and enqueued again gets ids no record of its old jobs can block. Within
 * one epoch the id is stable, which makes re-offering a live job a no-op. BullMQ ids must not
 * contain ':' (its key separator) and must not be all digits (reserved for auto ids); run ids and
 * epochs use neither ':' nor '.'. The key is hashed because keys may contain any character; 128
 * bits make collisions irrelevant at any bucket size.
 */
export function jobIdFor(runId: string, epoch: string, sourceKey: string): string {
  const digest = createHash('sha256').update(runId).update('\0').update(sourceKey, 'utf8').digest('base64url').slice(0, 22);
  return `${runId}.${epoch}.${digest}`;
}

export interface JobPolicy {
  /** Attempts for retryable failures. Default 6. */
  attempts: number;
  /** Base of the exponential backoff in ms. Default 2000. */
  backoffMs: number;
  /**
   * Completed job records kept (the newest, for bull-board). A bound, not an age: a record (about
   * 1 KB with its payload) per image finished in a window would make Redis memory follow the run's
   * size instead of its backlog, and the run's own registry already makes re-enqueues no-ops.
   */
  keepCompletedCount: number;
  /** Failed job records are kept this long (s): the failures list and its retries need them. */
  keepFailedSeconds: number;
}

export const DEFAULT_JOB_POLICY: Readonly<JobPolicy> = Object.freeze({
  attempts: 6,
  backoffMs: 2000,
  keepCompletedCount: 1000,
  keepFailedSeconds: 14 * 24 * 3600,
});

export function jobOptionsFor(runId: string, epoch: string, sourceKey: string, policy: JobPolicy = DEFAULT_JOB_POLICY): JobsOptions {
  return {
    jobId: jobIdFor(runId, epoch, sourceKey),
    attempts: policy.attempts,
    // Jitter spreads retries of a whole failed batch so they do not hit S3 in lockstep.
    backoff: { type: 'exponential', delay: policy.backoffMs, jitter: 0.5 },
    removeOnComplete: { count: policy.keepCompletedCount },
    removeOnFail: { age: policy.keepFailedSeconds },
  };
}

/**
 * BullMQ key prefix. BullMQ's keys (`<prefix>:<queue>:wait`, `:prioritized`, …) share the project's
 * namespace, so one GRADCAM_AUDIT_PREFIX separates whole deployments on one Redis. Producer,
 * worker, dashboard and the KEDA trigger (deploy/k8s) must all agree on it: always use this.
 *
 * On a Redis Cluster the prefix is a hash tag (`{gca}`): BullMQ's scripts touch several keys of a
 * queue at once, which a cluster allows only within one hash slot. With queue shards, each shard
 * has its own (shards.ts); `shard` picks one.
 */
export function bullPrefix(ks: KeySpace, shard = 0): string {
  return shardPrefix(ks, shard);
}
