import { TransientError } from './errors.js';

/**
 * Bounded waits for shutdown paths: with Redis or S3 unreachable, a close or a command may never
 * settle (ioredis queues commands while it reconnects), and a process asked to stop must stop anyway.
 */

/** Resolves true when `ms` passed before `promise` settled (the promise keeps running; its outcome is ignored). */
export async function raceTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(true), Math.max(0, ms));
  });
  try {
    return await Promise.race([promise.then(() => false, () => false), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export interface AttemptLimits {
  /** An attempt that has not settled after this many ms is aborted (its signal fires) and tried again. */
  attemptTimeoutMs: number;
  /** Attempts in all, the first included. */
  attempts: number;
}

/**
 * `attempt(signal)` until it succeeds, its signal aborting it after `attemptTimeoutMs`. A request
 * to a busy or stuck server (an S3 GET that never answers) is given up and sent again instead of
 * waited on; `retryable` says which other failures are worth another attempt (a timed-out attempt
 * always is). The last failure is thrown; a last attempt that timed out as a TransientError
 * naming `what`.
 */
export async function withAttempts<T>(what: string, attempt: (signal: AbortSignal) => Promise<T>, limits: AttemptLimits, retryable: (err: unknown) => boolean): Promise<T> {
  for (let n = 1; ; n++) {
    const signal = AbortSignal.timeout(limits.attemptTimeoutMs);
    try {
      return await attempt(signal);
    } catch (err) {
      if (n < limits.attempts && (signal.aborted || retryable(err))) continue;
      if (signal.aborted) throw new TransientError(`${what}: no answer within ${limits.attemptTimeoutMs} ms, ${n} attempt${n === 1 ? '' : 's'}`, { cause: err });
      throw err;
    }
  }
}
