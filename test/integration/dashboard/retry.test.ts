import { UnrecoverableError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeError, InvalidInputError, TransientError } from '../../../src/shared/errors.js';
import { DEFAULT_JOB_POLICY, JOB_NAME, jobIdFor, jobOptionsFor } from '../../../src/shared/queue/contract.js';
import { startHarness, type DashboardHarness } from './harness.js';
import { createSeedRun, finishImage } from './seed.js';

interface Failure {
  key: string;
  error: string;
  jobState: string;
  attemptsMade: number;
  retryable: boolean;
  notRetryableReason?: string;
}

/**
 * Real BullMQ failed jobs: a worker with the project's job options fails one job with a transient
 * error until its attempts run out, and another at once with UnrecoverableError (a corrupt image),
 * recording each final failure in the RunStore as the pipeline worker does.
 */
describe('failures and the retry action on real BullMQ jobs', () => {
  let h: DashboardHarness;
  let worker: Worker | undefined;
  let workerConnection: Redis;

  beforeEach(async () => {
    h = await startHarness();
    workerConnection = new Redis(h.t.url, { maxRetriesPerRequest: null });
  });
  afterEach(async () => {
    await worker?.close(true);
    workerConnection.disconnect();
    await h.close();
  });

  it('retries only retryable failures, and a successful retry turns the failure into a result', async () => {
    const run = await createSeedRun(h.seed, 'run-retry', ['flaky.png', 'corrupt.jpg']);
    const [flakyKey, corruptKey] = run.keys as [string, string];
    const policy = { ...DEFAULT_JOB_POLICY, attempts: 2, backoffMs: 10 };
    for (const key of run.keys) await h.queue.add(JOB_NAME, { runId: run.runId, key }, jobOptionsFor(run.runId, run.epoch, key, policy));

    let s3Healthy = false;
    let finalFailures = 0;
    let resolveFailures!: () => void;
    const failuresRecorded = new Promise<void>((r) => (resolveFailures = r));
    let resolveCompleted!: () => void;
    const retriedCompleted = new Promise<void>((r) => (resolveCompleted = r));

    worker = new Worker(
      h.queue.name,
      async (job: Job<{ runId: string; key: string }>) => {
        if (job.data.key === corruptKey) throw new UnrecoverableError(describeError(new InvalidInputError('INVALID_IMAGE', 'truncated JPEG data')));
        if (!s3Healthy) throw new TransientError('S3 request failed with HTTP 503');
        await finishImage(h.seed, run, { name: 'flaky.png', status: 'ok', cls: 1, probability: 0.8 });
      },
      { connection: workerConnection, concurrency: 2 },
    );
    worker.on('failed', (job, err) => {
      if (!job) return;
      const final = err.name === 'UnrecoverableError' || job.attemptsMade >= (job.opts.attempts ?? 1);
      if (!final) return;
      void h.seed.runs.recordResult(run.runId, { key: job.data.key, status: 'failed', error: describeError(err) }).then(() => {
        finalFailures += 1;
        if (finalFailures === 2) resolveFailures();
      });
    });
    worker.on('completed', () => resolveCompleted());
    await failuresRecorded;

    const list = await h.app.inject({ method: 'GET', url: '/api/runs/run-retry/failures' });
    const { items } = list.json() as { items: Failure[] };
    const flaky = items.find((i) => i.key === flakyKey)!;
    const corrupt = items.find((i) => i.key === corruptKey)!;
    expect(flaky).toMatchObject({ retryable: true, jobState: 'failed', attemptsMade: 2, error: 'TRANSIENT: S3 request failed with HTTP 503' });
    expect(corrupt).toMatchObject({ retryable: false, jobState: 'failed', attemptsMade: 1 });
    expect(corrupt.error).toContain('truncated JPEG data');
    expect(corrupt.notRetryableReason).toContain('permanent failure');

    // Form posts cannot trigger a retry: the action only accepts JSON (request-guard.test.ts covers Origin).
    const form = await h.app.inject({ method: 'POST', url: '/api/runs/run-retry/retry', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'all=true' });
    expect(form.statusCode).toBe(415);

    s3Healthy = true;
    const res = await h.app.inject({ method: 'POST', url: '/api/runs/run-retry/retry', payload: { all: true } });
    expect(res.statusCode).toBe(200);
    const outcome = res.json() as { retried: string[]; skipped: Array<{ key: string; reason: string }> };
    expect(outcome.retried).toEqual([flakyKey]);
    expect(outcome.skipped).toEqual([{ key: corruptKey, reason: expect.stringContaining('permanent failure') }]);

    await retriedCompleted;
    const detail = (await h.app.inject({ method: 'GET', url: '/api/runs/run-retry' })).json() as { run: { done: number; failed: number } };
    expect(detail.run).toMatchObject({ done: 1, failed: 1 });
    expect(await (await h.queue.getJob(jobIdFor(run.runId, run.epoch, corruptKey)))?.getState()).toBe('failed');

    // Retrying the same key again is refused with a reason: it is no longer a failure.
    const again = await h.app.inject({ method: 'POST', url: '/api/runs/run-retry/retry', payload: { keys: [flakyKey] } });
    expect((again.json() as { skipped: Array<{ reason: string }> }).skipped[0]!.reason).toBe('the image did not fail');
    const badBody = await h.app.inject({ method: 'POST', url: '/api/runs/run-retry/retry', payload: { keys: { x: 1 } } });
    expect(badBody.statusCode).toBe(400);
  });
});
