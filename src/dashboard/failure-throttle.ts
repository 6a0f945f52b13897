/**
 * Slows down credential guessing per client address without ever locking anyone out.
 *
 * Failed credential checks (a wrong token or password in an `Authorization` header or the login
 * form) are counted per client address in a fixed window. Past `freeFailures`, every further
 * credential check from that address waits before it is evaluated, twice as long per failure, up
 * to `maxDelayMs`. The wait comes before the check and is the same for right and wrong
 * credentials, so the response time tells a guesser nothing; a correct sign-in is only ever
 * delayed, by at most `maxDelayMs`, never refused.
 *
 * What is deliberately not throttled: requests with a valid session cookie (an HMAC no one can
 * guess), requests with no credentials at all (a browser's first visit, an expired cookie after a
 * restart: not guesses), and `/healthz`. Many users behind one NAT or proxy therefore keep
 * working while a script with a stale token fails next to them.
 *
 * The guess rate an address can reach is (concurrent requests) / maxDelayMs; with the 16-character
 * minimum for tokens that remains hopeless for random tokens. Behind a reverse proxy every client
 * shares the proxy's address unless `--trust-proxy` names it (see options.ts).
 */
import { setTimeout as sleep } from 'node:timers/promises';

export interface ThrottleOptions {
  /** Failed checks per address and window that cost nothing. Default 10. */
  freeFailures: number;
  /** Window over which failures are counted, in ms. Default 60 000. */
  windowMs: number;
  /** Wait after the first failure past the free ones, in ms; doubles per further failure. Default 250. */
  baseDelayMs: number;
  /** Longest wait before a credential check, in ms. Default 5000. */
  maxDelayMs: number;
}

export const THROTTLE_DEFAULTS: Readonly<ThrottleOptions> = Object.freeze({ freeFailures: 10, windowMs: 60_000, baseDelayMs: 250, maxDelayMs: 5000 });

/** Addresses tracked at once; a spray of addresses clears old windows rather than grow memory. */
const MAX_TRACKED = 10_000;

export class FailureThrottle {
  private readonly windows = new Map<string, { start: number; failures: number }>();

  constructor(
    private readonly options: ThrottleOptions = THROTTLE_DEFAULTS,
    private readonly now: () => number = Date.now,
  ) {}

  /** How long a credential check from `client` waits now, in ms (0 when under the free failures). */
  delayFor(client: string): number {
    const w = this.window(client);
    if (!w) return 0;
    const excess = w.failures - this.options.freeFailures;
    if (excess < 0) return 0;
    return Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** Math.min(excess, 20));
  }

  /** Wait as long as `client` must before its credentials are checked. */
  async admit(client: string): Promise<void> {
    const delay = this.delayFor(client);
    if (delay > 0) await sleep(delay);
  }

  fail(client: string): void {
    const w = this.window(client);
    if (w) {
      w.failures += 1;
      return;
    }
    if (this.windows.size >= MAX_TRACKED) this.windows.clear();
    this.windows.set(client, { start: this.now(), failures: 1 });
  }

  private window(client: string): { start: number; failures: number } | undefined {
    const w = this.windows.get(client);
    if (w && this.now() - w.start >= this.options.windowMs) {
      this.windows.delete(client);
      return undefined;
    }
    return w;
  }
}
