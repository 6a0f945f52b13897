/**
 * A job whose run needs another model than this worker serves goes back to the queue untouched,
 * for a worker that serves that model; it is never failed and never counted against the job's
 * attempts. Why, and what it costs, is in docs/architecture.md ("Which worker serves a run").
 *
 * BullMQ cannot filter jobs by worker, so a worker only learns a job is not for it after taking
 * it. Handing it back is three Redis commands and no S3 or engine work; the delay keeps a worker
 * that serves no waiting run from taking the same jobs back at Redis speed, and the jitter spreads
 * a whole prefetch of handed-back jobs.
 */
import { DelayedError, type Job } from 'bullmq';
import type { ModelMismatchError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { AuditJobPayload } from '../../shared/queue/contract.js';
import type { WorkerMetrics } from './metrics.js';

/** One warning per run per this interval; each hand-back is logged at debug. */
const WARN_INTERVAL_MS = 60_000;
const lastWarned = new Map<string, number>();

export async function leaveForMatchingWorker(
  job: Job<AuditJobPayload>,
  token: string | undefined,
  error: ModelMismatchError,
  ctx: { metrics: WorkerMetrics; handBackDelayMs: number },
  log: Logger,
  now: () => number = Date.now,
): Promise<Error> {
  // Without the lock token the job cannot be moved; a plain (retryable) error lets BullMQ back it off.
  if (token === undefined) return error;
  const delay = Math.round(ctx.handBackDelayMs * (1 + Math.random() * 0.5));
  await job.moveToDelayed(now() + delay, token);
  ctx.metrics.handedBack.inc({ reason: error.code });
  await job.log(`${new Date(now()).toISOString()} handed back: ${error.message}`).catch(() => undefined);
  const runId = job.data?.runId ?? '';
  const last = lastWarned.get(runId);
  if (last === undefined || now() - last > WARN_INTERVAL_MS) {
    lastWarned.set(runId, now());
    if (lastWarned.size > 1_000) lastWarned.delete(lastWarned.keys().next().value as string);
    log.warn({ err: error.message, delayMs: delay }, 'job left in the queue for a worker that serves its run\'s model');
  } else log.debug({ delayMs: delay }, 'job handed back (model mismatch)');
  return new DelayedError(error.message);
}
