/**
 * Failed images of a run and the retry action. Reasons come from the run's result lines; whether a
 * retry can help comes from the BullMQ job: a job failed by `UnrecoverableError` (corrupt or
 * unsupported image) failed before using its attempts and will fail the same way again, while a
 * job that exhausted its attempts on transient errors (S3 5xx, network) may well succeed now.
 */
import type { Job } from 'bullmq';
import type { RunManifestLine } from '../shared/manifest.js';
import { jobIdFor } from '../shared/queue/contract.js';
import type { RunStore } from '../shared/queue/run-store.js';

/** Where a job is looked up by id: a BullMQ queue, or the queue shards (which find its shard). */
export interface JobLookup {
  getJob(jobId: string): Promise<Job | undefined>;
}

export interface FailureView {
  key: string;
  error: string;
  jobId: string;
  /** BullMQ state of the job now (`failed`, `waiting`, `active`, …) or `missing`. */
  jobState: string;
  attemptsMade: number;
  retryable: boolean;
  /** Why the failure is not retryable; absent when it is. */
  notRetryableReason?: string;
}

/** Decide whether `job` may be retried, and say why not. */
export async function classifyFailure(job: Job | undefined): Promise<{ state: string; retryable: boolean; reason?: string }> {
  if (!job) return { state: 'missing', retryable: false, reason: 'the job record is no longer in the queue (expired); re-enqueue the source prefix to process it again' };
  const state = await job.getState();
  if (state !== 'failed') return { state, retryable: false, reason: `the job is ${state}, not failed: it is already queued or running again` };
  if (isUnrecoverable(job)) {
    return { state, retryable: false, reason: 'permanent failure: the image itself was rejected (corrupt, unsupported or oversized); a retry would fail the same way' };
  }
  return { state, retryable: true };
}

export function isUnrecoverable(job: Job): boolean {
  const last = job.stacktrace?.[job.stacktrace.length - 1] ?? '';
  if (last.startsWith('UnrecoverableError')) return true;
  // BullMQ only fails a job early, with attempts left, when the error was unrecoverable.
  return job.attemptsMade < (job.opts.attempts ?? 1);
}

export async function listFailures(runs: RunStore, queue: JobLookup, runId: string, offset: number, limit: number): Promise<{ total: number; items: FailureView[] }> {
  const failed: RunManifestLine[] = [];
  for await (const chunk of runs.scanFailed(runId)) failed.push(...chunk);
  failed.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  const epoch = (await runs.getRun(runId))?.epoch ?? '';
  const items = await Promise.all(
    failed.slice(offset, offset + limit).map(async (line): Promise<FailureView> => {
      const jobId = jobIdFor(runId, epoch, line.key);
      const job = await queue.getJob(jobId);
      const c = await classifyFailure(job);
      return {
        key: line.key,
        error: line.error ?? job?.failedReason ?? 'unknown error',
        jobId,
        jobState: c.state,
        attemptsMade: job?.attemptsMade ?? 0,
        retryable: c.retryable,
        ...(c.reason ? { notRetryableReason: c.reason } : {}),
      };
    }),
  );
  return { total: failed.length, items };
}

export interface RetryOutcome {
  retried: string[];
  skipped: Array<{ key: string; reason: string }>;
}

/**
 * Retry the named failed images (or, with `keys` undefined, every retryable failure of the run).
 * Attempts are reset so the job gets its full backoff schedule again. When the retry succeeds the
 * worker's result upgrades the run's `failed` line to `ok` and the run is finalized again.
 */
export async function retryFailures(runs: RunStore, queue: JobLookup, runId: string, keys: string[] | undefined): Promise<RetryOutcome> {
  // The failed lines of the named keys in one batched lookup: one per key read the run's lines up
  // to each key (on a finished run, the manifest up to it: 78 MB per key at 200k images).
  const lines = new Map<string, RunManifestLine>();
  let targets: string[];
  if (keys === undefined) {
    targets = [];
    for await (const chunk of runs.scanFailed(runId)) {
      for (const line of chunk) {
        targets.push(line.key);
        lines.set(line.key, line);
      }
    }
  } else {
    targets = keys;
    for (const [key, line] of await runs.getResults(runId, targets)) lines.set(key, line);
  }
  const outcome: RetryOutcome = { retried: [], skipped: [] };
  // The failed images are the current epoch's: a run created afresh starts with none.
  const epoch = (await runs.getRun(runId))?.epoch ?? '';
  for (const key of targets) {
    const line = lines.get(key);
    if (!line || line.status !== 'failed') {
      outcome.skipped.push({ key, reason: line ? 'the image did not fail' : 'no such image in this run' });
      continue;
    }
    const job = await queue.getJob(jobIdFor(runId, epoch, key));
    const c = await classifyFailure(job);
    if (!c.retryable || !job) {
      outcome.skipped.push({ key, reason: c.reason ?? 'not retryable' });
      continue;
    }
    try {
      await job.retry('failed', { resetAttemptsMade: true, resetAttemptsStarted: true });
      outcome.retried.push(key);
    } catch (err) {
      // Another client may have retried it a moment ago; report rather than fail the whole request.
      outcome.skipped.push({ key, reason: `BullMQ refused the retry: ${(err as Error).message}` });
    }
  }
  return outcome;
}
