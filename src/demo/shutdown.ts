/**
 * The demo's stopping order: named phases run one after another, the members of a phase together.
 * The demo stops its clients before the services they need (worker, then dashboard, then S3 and
 * Redis), so nothing it started sees its server vanish mid-request.
 */
export interface Stoppable {
  name: string;
  /** Stop gracefully; resolves once stopped. */
  stop(): Promise<void>;
  /** Stop at once, synchronously (used when the process is exiting anyway). */
  kill?(): void;
}

export class ShutdownPlan {
  private readonly phases = new Map<string, Stoppable[]>();

  /** `order`: phase names, first stopped first. */
  constructor(order: readonly string[]) {
    for (const phase of order) this.phases.set(phase, []);
  }

  add(phase: string, member: Stoppable): void {
    const members = this.phases.get(phase);
    if (!members) throw new Error(`unknown shutdown phase "${phase}"`);
    members.push(member);
  }

  /** Stop every phase in order (a member's failure does not stop the others); `done` reports each non-empty phase. */
  async stopAll(done: (phase: string, ms: number) => void = () => undefined): Promise<void> {
    for (const [phase, members] of this.phases) {
      if (members.length === 0) continue;
      const t0 = Date.now();
      await Promise.all(members.splice(0).map((m) => m.stop().catch(() => undefined)));
      done(phase, Date.now() - t0);
    }
  }

  /** Kill whatever is still registered, synchronously. */
  killAll(): void {
    for (const members of this.phases.values()) for (const m of members.splice(0)) m.kill?.();
  }
}

/**
 * `promise`, or a rejection as soon as `signal` aborts. The work itself is left to finish or to be
 * stopped by the shutdown plan; its later failure, if any, is expected and ignored.
 */
export async function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  promise.catch(() => undefined);
  if (signal.aborted) throw new Error('interrupted');
  let onAbort = (): void => undefined;
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(new Error('interrupted'));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([promise, aborted]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
