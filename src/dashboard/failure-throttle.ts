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
 * A client is its IPv4 address, or its IPv6 /64 (one subscriber's prefix: a single host can use
 * every address in it, so counting per address would hand it 2^64 sets of free failures). An
 * IPv4-mapped IPv6 address is the IPv4 client it maps. At most one credential check per client is
 * in flight; further ones queue behind it, so one client guesses at most once per maxDelayMs.
 * Across all clients, failures past `globalFailures` per window refuse every further credential
 * check with a `SignInBusyError` (answered 429) until the window ends: a spray from many prefixes
 * can then test at most `globalFailures` credentials per window. Sessions are unaffected.
 *
 * Behind a reverse proxy every client shares the proxy's address unless `--trust-proxy` names it
 * (see options.ts).
 */
import { isIPv4, isIPv6 } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ThrottleOptions {
  /** Failed checks per client and window that cost nothing. Default 10. */
  freeFailures: number;
  /** Window over which failures are counted, in ms. Default 60 000. */
  windowMs: number;
  /** Wait after the first failure past the free ones, in ms; doubles per further failure. Default 250. */
  baseDelayMs: number;
  /** Longest wait before a credential check, in ms. Default 5000. */
  maxDelayMs: number;
  /** Failures per window over all clients past which every credential check is refused (429). Default 1000. */
  globalFailures: number;
  /** Clients whose windows are kept at once; past it the oldest window is dropped. Default 10 000. */
  maxTrackedClients: number;
}

export const THROTTLE_DEFAULTS: Readonly<ThrottleOptions> = Object.freeze({
  freeFailures: 10,
  windowMs: 60_000,
  baseDelayMs: 250,
  maxDelayMs: 5000,
  globalFailures: 1000,
  maxTrackedClients: 10_000,
});

/** Too many failed sign-ins over all clients in this window; `retryAfterMs` says when it ends. */
export class SignInBusyError extends Error {
  override readonly name = 'SignInBusyError';
  constructor(readonly retryAfterMs: number) {
    super('too many failed sign-ins on this dashboard; try again shortly');
  }
}

interface Window {
  start: number;
  failures: number;
}

export class FailureThrottle {
  /** Insertion order is start order (an expired window is deleted before a new one is set), so the first entry is the oldest. */
  private readonly windows = new Map<string, Window>();
  /** Per client, the end of the queue of credential checks waiting or in flight. */
  private readonly queues = new Map<string, Promise<void>>();
  private global: Window = { start: -Infinity, failures: 0 };

  constructor(
    private readonly options: ThrottleOptions = THROTTLE_DEFAULTS,
    private readonly now: () => number = Date.now,
  ) {}

  /** How long a credential check from `address` waits now, in ms (0 when under the free failures). */
  delayFor(address: string): number {
    const w = this.window(clientKey(address));
    if (!w) return 0;
    const excess = w.failures - this.options.freeFailures;
    if (excess < 0) return 0;
    return Math.min(this.options.maxDelayMs, this.options.baseDelayMs * 2 ** Math.min(excess, 20));
  }

  /**
   * Run the credential check `check` for a request from `address`: after the client's earlier
   * checks, after its wait, and counted as a failure when it returns false. Throws
   * `SignInBusyError` while the global failure budget is spent.
   */
  async attempt(address: string, check: () => boolean): Promise<boolean> {
    const key = clientKey(address);
    const before = this.queues.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = before.then(() => mine);
    this.queues.set(key, tail);
    try {
      await before;
      this.refuseWhenBusy();
      const delay = this.delayFor(address);
      if (delay > 0) await sleep(delay);
      // Checked again: the budget may have run out during the wait.
      this.refuseWhenBusy();
      const ok = check();
      if (!ok) this.fail(address);
      return ok;
    } finally {
      release();
      if (this.queues.get(key) === tail) this.queues.delete(key);
    }
  }

  fail(address: string): void {
    const t = this.now();
    if (t - this.global.start >= this.options.windowMs) this.global = { start: t, failures: 0 };
    this.global.failures += 1;
    const key = clientKey(address);
    const w = this.window(key);
    if (w) {
      w.failures += 1;
      return;
    }
    // Dropping the oldest window (not all of them) keeps a spray of addresses from resetting
    // the count of the client that is actually guessing.
    if (this.windows.size >= this.options.maxTrackedClients) {
      const oldest = this.windows.keys().next().value;
      if (oldest !== undefined) this.windows.delete(oldest);
    }
    this.windows.set(key, { start: t, failures: 1 });
  }

  private refuseWhenBusy(): void {
    const elapsed = this.now() - this.global.start;
    if (elapsed < this.options.windowMs && this.global.failures >= this.options.globalFailures) {
      throw new SignInBusyError(this.options.windowMs - elapsed);
    }
  }

  private window(key: string): Window | undefined {
    const w = this.windows.get(key);
    if (w && this.now() - w.start >= this.options.windowMs) {
      this.windows.delete(key);
      return undefined;
    }
    return w;
  }
}

/**
 * The client an address stands for: an IPv4 address itself (also when IPv4-mapped), an IPv6
 * address its /64 prefix; anything else (a Unix socket peer) as given.
 */
export function clientKey(address: string): string {
  const plain = address.split('%')[0] ?? address;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(plain);
  if (mapped?.[1] && isIPv4(mapped[1])) return mapped[1];
  if (isIPv4(plain) || !isIPv6(plain)) return plain;
  return `${expandIPv6(plain).slice(0, 4).join(':')}::/64`;
}

/** The eight hextets of a valid IPv6 address, as lowercase numbers in hex without leading zeros. */
function expandIPv6(address: string): string[] {
  let text = address.toLowerCase();
  // A trailing dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) is two hextets.
  const quad = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (quad) {
    const [a, b, c, d] = quad.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, quad.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - left.length - right.length).fill('0');
  return [...left, ...zeros, ...right].map((h) => parseInt(h, 16).toString(16));
}
