/**
 * The open ONNX Runtime sessions of one engine, one per gradient CAM method (compile-graph.ts
 * compiles one graph per method), at most `maxSessions` of them. Each session holds its own copy of
 * the weights (VGG16: about 0.55 GB), so an engine asked for every method would otherwise hold five.
 *
 * Past the cap, the least recently used session with no run in flight is released, before the new
 * one opens (so a swap never holds cap + 1 copies at once); a session under a running batch is never released (ONNX Runtime frees its buffers on release), so while every
 * open session is busy the pool stays over the cap and trims when a run ends. An evicted method
 * reopens on its next use, from the graph compiled when the engine was created (method-graphs.ts).
 *
 * `dispose` refuses new work at once (`EngineDisposedError`) and waits for the batches in flight
 * before releasing their sessions: ONNX Runtime frees a session's buffers on release, under a run
 * still reading them. The wait is bounded (`disposeWaitMs`); past it, dispose returns and a session
 * still under a batch is released when that batch ends. ONNX Runtime runs synchronously on the
 * calling thread, so the bound takes effect between runs, never inside one.
 */
import { EngineDisposedError } from '../../../shared/errors.js';
import type { CamMethod } from '../../../shared/explain-options.js';
import type { Logger } from '../../../shared/logger.js';
import { UNGATED } from '../native-gate.js';
import type { NativeGate } from '../native-gate.js';

/** A session of the pool: a gradient method's, or the forward-only graph's (no gradient method served). */
export type SessionKey = CamMethod | 'forward';

export const SESSION_POOL_DEFAULTS = Object.freeze({
  /**
   * Longest wait of `dispose` for batches in flight. A VGG16 batch of 64 takes seconds on a GPU and
   * about a minute on 2 CPU cores; past this, shutdown goes on and the batch's session is released
   * when it ends.
   */
  disposeWaitMs: 10_000,
});

export interface SessionPoolOptions {
  /** Most sessions open at once (`OnnxRuntimeOptions.maxSessions`). */
  maxSessions: number;
  /** Default `SESSION_POOL_DEFAULTS.disposeWaitMs`. */
  disposeWaitMs?: number;
  /** Releases go through it, like the engine's other native calls (native-gate.ts). Default: none. */
  gate?: NativeGate;
}

/** What the pool needs of a session: to be released. (ort.InferenceSession in the engine.) */
export interface Releasable {
  release(): Promise<void>;
}

/** The pool's own accounting, for logs, metrics and tests. */
export interface SessionPoolStats {
  /** Methods whose session is open or opening, least recently used first. */
  open: SessionKey[];
  /** Sessions opened so far, the first one included. */
  opened: number;
  /** Sessions released to stay within the cap (dispose not counted). */
  evicted: number;
  /** Runs in flight, over all sessions. */
  inFlight: number;
  /** Sessions alive now (opened and not yet released). */
  live: number;
  /** Most sessions alive (opened and not yet released) at any one time. */
  peakLive: number;
}

/**
 * Most sessions an engine with `methods` gradient methods (0: a forward-only graph, one session)
 * holds at once under a cap of `maxSessions`: what `--batch-size auto` must leave memory for.
 */
export function sessionsAtOnce(maxSessions: number, methods: number): number {
  return Math.max(1, Math.min(maxSessions, methods));
}

interface Entry<S> {
  session: Promise<S>;
  /** Set once opened: only an opened session can be evicted. */
  ready: S | null;
  inFlight: number;
  lastUsed: number;
}

export class SessionPool<S extends Releasable> {
  private readonly entries = new Map<SessionKey, Entry<S>>();
  private clock = 0;
  private opened = 0;
  private evicted = 0;
  private live = 0;
  private peakLive = 0;
  private loggedEviction = false;
  private disposed = false;
  /** Set by dispose: the runs in flight, and a wake-up for dispose when the last one ends. */
  private drained: (() => void) | null = null;
  private readonly maxSessions: number;
  private readonly disposeWaitMs: number;
  private readonly gate: NativeGate;

  constructor(
    private readonly open: (method: SessionKey) => Promise<S>,
    options: SessionPoolOptions,
    private readonly logger: Logger,
  ) {
    this.maxSessions = options.maxSessions;
    this.disposeWaitMs = options.disposeWaitMs ?? SESSION_POOL_DEFAULTS.disposeWaitMs;
    this.gate = options.gate ?? UNGATED;
  }

  /** Register a session opened elsewhere (the engine's first, opened at start-up). */
  adopt(method: SessionKey, session: S): void {
    this.opened++;
    this.countLive(1);
    this.entries.set(method, { session: Promise.resolve(session), ready: session, inFlight: 0, lastUsed: ++this.clock });
  }

  /**
   * Run `fn` on the session of `method`, opening it if needed (concurrent first uses share one
   * opening). The session is pinned while `fn` runs. After `dispose`: `EngineDisposedError`; a call
   * that came before it runs to the end (dispose waits for it).
   */
  async use<T>(method: SessionKey, fn: (session: S) => Promise<T>): Promise<T> {
    if (this.disposed) throw new EngineDisposedError();
    let entry = this.entries.get(method);
    if (!entry) {
      // Room first: the least recently used idle session is released before this one loads.
      const room = this.evictIdle(this.maxSessions - 1);
      const created: Entry<S> = { session: room.then(() => this.open(method)), ready: null, inFlight: 0, lastUsed: 0 };
      this.entries.set(method, created);
      this.opened++;
      created.session.then(
        (s) => {
          created.ready = s;
          this.countLive(1);
        },
        // A failed opening is not kept: the next request tries again.
        () => {
          if (this.entries.get(method) === created) this.entries.delete(method);
        },
      );
      entry = created;
    }
    entry.inFlight++;
    entry.lastUsed = ++this.clock;
    try {
      const session = await entry.session;
      entry.ready = session;
      // Opening may have taken the pool over the cap; the oldest idle session goes now.
      await this.trim();
      return await fn(session);
    } finally {
      entry.inFlight--;
      if (this.disposed) await this.afterDispose(method, entry);
      else await this.trim();
    }
  }

  /**
   * The most recently used open method, if any (forward passes run on any method's graph). One
   * still opening is passed over while another is open: a forward pass need not wait for it.
   */
  mostRecent(): SessionKey | null {
    let best: [SessionKey, number] | null = null;
    for (const [m, e] of this.entries) if (e.ready && (!best || e.lastUsed > best[1])) best = [m, e.lastUsed];
    if (best) return best[0];
    for (const [m, e] of this.entries) if (!best || e.lastUsed > best[1]) best = [m, e.lastUsed];
    return best ? best[0] : null;
  }

  stats(): SessionPoolStats {
    const open = [...this.entries].sort((a, b) => a[1].lastUsed - b[1].lastUsed).map(([m]) => m);
    const inFlight = [...this.entries.values()].reduce((n, e) => n + e.inFlight, 0);
    return { open, opened: this.opened, evicted: this.evicted, inFlight, live: this.live, peakLive: this.peakLive };
  }

  private countLive(delta: number): void {
    this.live += delta;
    this.peakLive = Math.max(this.peakLive, this.live);
  }

  /** Release idle sessions, least recently used first, until within the cap or none is idle. */
  private trim(): Promise<void> {
    return this.evictIdle(this.maxSessions);
  }

  /**
   * Take idle sessions out of the pool, least recently used first, until at most `limit` remain or
   * none is idle, and release them. The choice is synchronous, so concurrent callers never pick
   * the same session or miss one another's entries.
   */
  private evictIdle(limit: number): Promise<void> {
    const releases: Array<Promise<void>> = [];
    while (!this.disposed && this.entries.size > limit) {
      let victim: [SessionKey, Entry<S>] | null = null;
      for (const [m, e] of this.entries) {
        if (e.inFlight === 0 && e.ready && (!victim || e.lastUsed < victim[1].lastUsed)) victim = [m, e];
      }
      if (!victim) break;
      const [method, entry] = victim;
      this.entries.delete(method);
      this.evicted++;
      const fields = { method, maxSessions: this.maxSessions, open: [...this.entries.keys()], evicted: this.evicted };
      if (!this.loggedEviction) {
        // Once per engine at info: a worker alternating between more methods than the cap would
        // otherwise log every batch. Later evictions are counted (stats) and logged at debug.
        this.loggedEviction = true;
        this.logger.info(fields, `released the ONNX Runtime session of ${method} (at most ${this.maxSessions} open, --onnx-max-sessions); it reopens when next asked for`);
      } else {
        this.logger.debug(fields, `released the ONNX Runtime session of ${method}`);
      }
      // A failed release only loses memory: it must not fail the batch that triggered the trim.
      releases.push(
        this.release(entry.ready as S)
          .catch((err: unknown) => this.logger.warn({ err, method }, `releasing the ONNX Runtime session of ${method} failed`))
          .finally(() => this.countLive(-1)),
      );
    }
    return Promise.all(releases).then(() => undefined);
  }

  /**
   * Refuse new work, wait (at most `disposeWaitMs`) for the runs in flight, and release every
   * session. A session still under a run past the wait is released when that run ends. Idempotent.
   */
  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const inFlight = (): number => [...this.entries.values()].reduce((n, e) => n + e.inFlight, 0);
    if (inFlight() > 0) {
      let timer: NodeJS.Timeout | undefined;
      const drained = new Promise<boolean>((resolve) => {
        this.drained = () => resolve(true);
        timer = setTimeout(() => resolve(false), this.disposeWaitMs);
      });
      const inTime = await drained;
      clearTimeout(timer);
      this.drained = null;
      if (!inTime) {
        const busy = [...this.entries].filter(([, e]) => e.inFlight > 0).map(([m]) => m);
        this.logger.warn(
          { busy, inFlight: inFlight(), disposeWaitMs: this.disposeWaitMs },
          `ONNX Runtime sessions still under ${inFlight()} batch(es) after ${this.disposeWaitMs} ms of dispose (${busy.join(', ')}); each is released when its batch ends`,
        );
      }
    }
    // Sessions still opening are waited for: an opening cannot be cancelled, and its session must
    // be released too.
    const idle = [...this.entries].filter(([, e]) => e.inFlight === 0);
    for (const [m] of idle) this.entries.delete(m);
    await this.releaseAll(idle);
  }

  /** A run ended after dispose: release its session if it was the last run on it, wake dispose if none is left. */
  private async afterDispose(method: SessionKey, entry: Entry<S>): Promise<void> {
    if (entry.inFlight > 0) return;
    const remaining = [...this.entries.values()].reduce((n, e) => n + e.inFlight, 0);
    if (remaining === 0) this.drained?.();
    // While dispose waits it releases this session itself; past its wait, this run releases it.
    if (this.drained === null && this.entries.get(method) === entry) {
      this.entries.delete(method);
      await this.releaseAll([[method, entry]]);
    }
  }

  private release(session: S): Promise<void> {
    return this.gate.through(() => session.release());
  }

  private async releaseAll(entries: Array<[SessionKey, Entry<S>]>): Promise<void> {
    const settled = await Promise.allSettled(entries.map(([, e]) => e.session));
    await Promise.all(
      settled.map((o, i) =>
        o.status === 'fulfilled'
          ? this.release(o.value)
              .catch((err: unknown) => this.logger.warn({ err, method: entries[i][0] }, `releasing the ONNX Runtime session of ${entries[i][0]} failed`))
              .finally(() => this.countLive(-1))
          : Promise.resolve(),
      ),
    );
  }
}
