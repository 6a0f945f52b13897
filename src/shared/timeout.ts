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
