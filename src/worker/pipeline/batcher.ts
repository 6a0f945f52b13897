/**
 * A dynamic batcher in the style of Triton's: items arrive one by one (one per queue job), are
 * grouped by a key (only items whose engine-relevant options match may share a batch), and a group
 * is flushed to the runner when it holds `maxBatchSize` items or when its oldest item has waited
 * `maxDelayMs`, whichever comes first.
 *
 * Exactly one batch runs at a time: the engine owns the accelerator (or, on CPU, the main thread),
 * and two concurrent batches would only contend. Between batches the batcher yields a macrotask
 * (`setImmediate`) so that lock renewals, heartbeats and socket I/O run even when batches are
 * back to back.
 *
 * Deadlines and arrivals. An item that waited through the previous batch is overdue the moment the
 * engine frees, so a plain "oldest item waited `maxDelayMs`" rule starts the next batch at once
 * with whatever has arrived, often half a batch while the rest is still downloading or decoding.
 * The host therefore announces each item on its way (`expect()`, settled by `submit` or when the
 * item leaves without an engine call), and an overdue, under-full group waits for announced items
 * until the engine has been free for `maxDelayMs`; with nothing announced it flushes at once. The
 * wait is bounded either way, so a slow download never holds a batch longer than one delay.
 *
 * A failing batch never fails its batch-mates: when a batch of several items rejects, each item is
 * run again alone and only the ones that still fail are rejected.
 */
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';

export interface BatcherOptions {
  /** Largest batch handed to the runner. Default 16. */
  maxBatchSize: number;
  /** How long the oldest item of a group may wait for batch-mates, in ms. Default 50. */
  maxDelayMs: number;
  /** Re-run items one by one when a multi-item batch fails. Default true. */
  isolateFailures: boolean;
}

export const DEFAULT_BATCHER_OPTIONS: Readonly<BatcherOptions> = Object.freeze({
  maxBatchSize: 16,
  maxDelayMs: 50,
  isolateFailures: true,
});

export type FlushReason = 'size' | 'delay' | 'drain';

/** What an item learns about the batch that served it. */
export interface BatchInfo {
  /** Items in the batch that produced the result (1 when isolated after a batch failure). */
  size: number;
  /** Time from `submit` to the start of that batch, ms. */
  waitedMs: number;
  /** Wall time of the runner call, ms. */
  runMs: number;
  reason: FlushReason;
}

export interface BatchEvent {
  key: string;
  size: number;
  reason: FlushReason;
  /** How long the oldest item had waited when the batch started, ms. */
  oldestWaitedMs: number;
}

export interface BatchDoneEvent extends BatchEvent {
  runMs: number;
  ok: boolean;
}

/**
 * An item on its way to the batcher (its job is downloading or decoding): announced by `expect()`,
 * settled by `submit(…, arrival)` or by `settle()` when it leaves without an engine call (skipped,
 * failed). Settling twice is harmless.
 */
export interface Arrival {
  settle(): void;
}

/** Runs one batch; must return one result per item, in order. */
export type BatchRunner<T, R> = (key: string, items: T[]) => Promise<R[]>;

interface Pending<T, R> {
  item: T;
  enqueuedAt: number;
  resolve: (value: { result: R; batch: BatchInfo }) => void;
  reject: (err: unknown) => void;
}

export interface BatcherEvents {
  /** A batch is about to run. */
  batch: [BatchEvent];
  /** A batch finished (ok false: it failed and its items were isolated or rejected). */
  batchDone: [BatchDoneEvent];
}

export class DynamicBatcher<T, R> extends EventEmitter<BatcherEvents> {
  readonly options: BatcherOptions;
  private readonly groups = new Map<string, Array<Pending<T, R>>>();
  private running = false;
  private draining = false;
  private timer: NodeJS.Timeout | null = null;
  private idleWaiters: Array<() => void> = [];
  /** Items announced by `expect()` and not yet settled. */
  private expected = 0;
  /** Each open arrival's settle; `submit` settles without pumping (it pumps once the item is queued). */
  private readonly arrivals = new WeakMap<Arrival, (pump: boolean) => void>();
  /** When the engine last became free (a batch ended), or when the batcher was made. */
  private freeSince: number;

  constructor(
    private readonly runner: BatchRunner<T, R>,
    options: Partial<BatcherOptions> = {},
    private readonly now: () => number = () => performance.now(),
  ) {
    super();
    this.freeSince = now();
    this.options = { ...DEFAULT_BATCHER_OPTIONS, ...stripUndefined(options) };
    if (!Number.isInteger(this.options.maxBatchSize) || this.options.maxBatchSize < 1) {
      throw new RangeError(`batcher maxBatchSize must be a positive integer, got ${this.options.maxBatchSize}`);
    }
    if (!(this.options.maxDelayMs >= 0)) throw new RangeError(`batcher maxDelayMs must be >= 0, got ${this.options.maxDelayMs}`);
  }

  /** Items waiting for a batch (not counting the batch that runs). */
  get pending(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.length;
    return n;
  }

  get busy(): boolean {
    return this.running;
  }

  /** Items announced by `expect()` that have not been submitted or settled yet. */
  get incoming(): number {
    return this.expected;
  }

  /** Announce an item on its way; see `Arrival`. */
  expect(): Arrival {
    this.expected++;
    let settled = false;
    const settle = (pump: boolean): void => {
      if (settled) return;
      settled = true;
      this.expected--;
      // One fewer item to wait for may make a waiting group due now.
      if (pump) this.pump();
    };
    const arrival = { settle: () => settle(true) };
    this.arrivals.set(arrival, settle);
    return arrival;
  }

  /**
   * Queue one item; resolves with its own result when its batch has run. `arrival`, when the item
   * was announced with `expect()`, is settled by this call.
   */
  submit(key: string, item: T, arrival?: Arrival): Promise<{ result: R; batch: BatchInfo }> {
    if (arrival) this.arrivals.get(arrival)?.(false);
    return new Promise((resolve, reject) => {
      let group = this.groups.get(key);
      if (!group) {
        group = [];
        this.groups.set(key, group);
      }
      group.push({ item, enqueuedAt: this.now(), resolve, reject });
      this.pump();
    });
  }

  /**
   * Stop waiting for batch-mates: every queued item is flushed as soon as the engine is free.
   * Used on shutdown, when no new items will come.
   */
  drain(): void {
    this.draining = true;
    this.pump();
  }

  /** Resolves when nothing is queued or running. */
  whenIdle(): Promise<void> {
    if (!this.running && this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private pump(): void {
    if (this.running) return; // the running batch pumps again when it finishes
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const now = this.now();
    const choice = this.choose(now);
    if (choice) {
      void this.run(choice.key, choice.reason, now);
      return;
    }
    // Nothing is due yet: wake up at the earliest deadline (or when an arrival settles).
    let earliest = Infinity;
    for (const g of this.groups.values()) if (g.length > 0) earliest = Math.min(earliest, this.deadlineOf(g[0].enqueuedAt));
    if (earliest === Infinity) {
      this.notifyIdle();
      return;
    }
    const wait = Math.max(0, earliest - now);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.pump();
    }, Math.ceil(wait));
  }

  /**
   * When an under-full group whose oldest item arrived at `oldest` may start: `maxDelayMs` after
   * that item arrived and, while announced items are still on their way, not before the engine has
   * been free for `maxDelayMs` (see the header).
   */
  private deadlineOf(oldest: number): number {
    const own = oldest + this.options.maxDelayMs;
    return this.expected > 0 ? Math.max(own, this.freeSince + this.options.maxDelayMs) : own;
  }

  /** Full groups first, then expired ones; among equals, the group whose oldest item is oldest. */
  private choose(now: number): { key: string; reason: FlushReason } | null {
    let best: { key: string; reason: FlushReason; oldest: number; rank: number } | null = null;
    for (const [key, g] of this.groups) {
      if (g.length === 0) continue;
      const oldest = g[0].enqueuedAt;
      let reason: FlushReason | null = null;
      if (g.length >= this.options.maxBatchSize) reason = 'size';
      else if (now >= this.deadlineOf(oldest)) reason = 'delay';
      else if (this.draining) reason = 'drain';
      if (reason === null) continue;
      const rank = reason === 'size' ? 0 : 1;
      if (!best || rank < best.rank || (rank === best.rank && oldest < best.oldest)) best = { key, reason, oldest, rank };
    }
    return best ? { key: best.key, reason: best.reason } : null;
  }

  private async run(key: string, reason: FlushReason, startedAt: number): Promise<void> {
    this.running = true;
    const group = this.groups.get(key) ?? [];
    const batch = group.splice(0, this.options.maxBatchSize);
    if (group.length === 0) this.groups.delete(key);
    const oldestWaitedMs = startedAt - batch[0].enqueuedAt;
    this.emit('batch', { key, size: batch.length, reason, oldestWaitedMs });
    let ok = true;
    let runMs = 0;
    try {
      const t0 = this.now();
      let results: R[];
      try {
        results = await this.runner(key, batch.map((p) => p.item));
      } finally {
        runMs = this.now() - t0;
      }
      if (results.length !== batch.length) {
        throw new RangeError(`batch runner returned ${results.length} results for ${batch.length} items`);
      }
      batch.forEach((p, i) => p.resolve({ result: results[i], batch: { size: batch.length, waitedMs: startedAt - p.enqueuedAt, runMs, reason } }));
    } catch (err) {
      ok = false;
      if (batch.length > 1 && this.options.isolateFailures) {
        await this.isolate(key, batch, reason);
      } else {
        for (const p of batch) p.reject(err);
      }
    } finally {
      this.emit('batchDone', { key, size: batch.length, reason, oldestWaitedMs, runMs, ok });
      this.running = false;
      this.freeSince = this.now();
      // Yield a macrotask so timers (lock renewal, heartbeats) and I/O callbacks run between batches.
      setImmediate(() => this.pump());
    }
  }

  /** Re-run each item of a failed batch alone, so one bad item cannot fail the others. */
  private async isolate(key: string, batch: Array<Pending<T, R>>, reason: FlushReason): Promise<void> {
    for (const p of batch) {
      const started = this.now();
      try {
        const [result] = await this.runner(key, [p.item]);
        if (result === undefined) throw new RangeError('batch runner returned no result for a single item');
        p.resolve({ result, batch: { size: 1, waitedMs: started - p.enqueuedAt, runMs: this.now() - started, reason } });
      } catch (err) {
        p.reject(err);
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private notifyIdle(): void {
    if (this.running || this.pending > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

function stripUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
