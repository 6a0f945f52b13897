import { once } from 'node:events';
import { describe, expect, it } from 'vitest';
import { DynamicBatcher, type BatchEvent } from '../../../src/worker/pipeline/batcher.js';

/** A runner that records every batch it sees and doubles numbers. */
function recordingRunner(): { calls: Array<{ key: string; items: number[] }>; run: (key: string, items: number[]) => Promise<number[]> } {
  const calls: Array<{ key: string; items: number[] }> = [];
  return {
    calls,
    run: async (key, items) => {
      calls.push({ key, items: [...items] });
      return items.map((x) => x * 2);
    },
  };
}

describe('DynamicBatcher', () => {
  it('flushes as soon as a group is full, without waiting for the delay', async () => {
    const r = recordingRunner();
    const b = new DynamicBatcher(r.run, { maxBatchSize: 4, maxDelayMs: 60_000 });
    const flushed = once(b, 'batch') as Promise<[BatchEvent]>;
    const results = await Promise.all([1, 2, 3, 4].map((x) => b.submit('k', x)));
    const [event] = await flushed;
    expect(event).toMatchObject({ key: 'k', size: 4, reason: 'size' });
    expect(results.map((x) => x.result)).toEqual([2, 4, 6, 8]);
    expect(results.every((x) => x.batch.size === 4)).toBe(true);
    expect(r.calls).toEqual([{ key: 'k', items: [1, 2, 3, 4] }]);
  });

  it('flushes a partial group once its oldest item has waited maxDelayMs', async () => {
    const r = recordingRunner();
    const b = new DynamicBatcher(r.run, { maxBatchSize: 16, maxDelayMs: 40 });
    const flushed = once(b, 'batch') as Promise<[BatchEvent]>;
    const t0 = performance.now();
    const results = await Promise.all([b.submit('k', 1), b.submit('k', 2)]);
    const [event] = await flushed;
    expect(event.reason).toBe('delay');
    expect(event.size).toBe(2);
    // Timers may fire late on a busy machine, never early.
    expect(event.oldestWaitedMs).toBeGreaterThanOrEqual(39);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(39);
    expect(results[0].batch.waitedMs).toBeGreaterThanOrEqual(39);
    expect(r.calls).toHaveLength(1);
  });

  it('never mixes groups in one batch', async () => {
    const r = recordingRunner();
    const b = new DynamicBatcher(r.run, { maxBatchSize: 2, maxDelayMs: 10 });
    await Promise.all([b.submit('a', 1), b.submit('b', 10), b.submit('a', 2), b.submit('b', 20), b.submit('a', 3)]);
    for (const call of r.calls) {
      expect(call.items.every((x) => (call.key === 'a' ? x < 10 : x >= 10))).toBe(true);
      expect(call.items.length).toBeLessThanOrEqual(2);
    }
    expect(r.calls.flatMap((c) => c.items).sort((x, y) => x - y)).toEqual([1, 2, 3, 10, 20]);
  });

  it('runs one batch at a time and collects arrivals during a batch into the next one', async () => {
    let active = 0;
    let maxActive = 0;
    let release: (() => void) | null = null;
    const sizes: number[] = [];
    const b = new DynamicBatcher<number, number>(
      async (_k, items) => {
        active++;
        maxActive = Math.max(maxActive, active);
        sizes.push(items.length);
        if (sizes.length === 1) await new Promise<void>((resolve) => (release = resolve));
        active--;
        return items;
      },
      { maxBatchSize: 8, maxDelayMs: 0 },
    );
    const started = once(b, 'batch');
    const first = b.submit('k', 0);
    await started;
    const later = [1, 2, 3].map((x) => b.submit('k', x));
    expect(b.pending).toBe(3);
    (release as unknown as () => void)();
    await Promise.all([first, ...later]);
    expect(maxActive).toBe(1);
    expect(sizes).toEqual([1, 3]);
  });

  it('isolates a failing item so its batch-mates still succeed', async () => {
    const b = new DynamicBatcher<number, number>(
      async (_k, items) => {
        if (items.includes(13)) throw new Error('unlucky item');
        return items.map((x) => x + 1);
      },
      { maxBatchSize: 3, maxDelayMs: 1000 },
    );
    const outcomes = await Promise.allSettled([b.submit('k', 1), b.submit('k', 13), b.submit('k', 3)]);
    expect(outcomes[0]).toMatchObject({ status: 'fulfilled', value: { result: 2, batch: { size: 1 } } });
    expect(outcomes[1].status).toBe('rejected');
    expect((outcomes[1] as PromiseRejectedResult).reason).toBeInstanceOf(Error);
    expect(outcomes[2]).toMatchObject({ status: 'fulfilled', value: { result: 4 } });
  });

  it('drain() flushes partial groups at once and whenIdle() resolves after them', async () => {
    const r = recordingRunner();
    const b = new DynamicBatcher(r.run, { maxBatchSize: 16, maxDelayMs: 60_000 });
    const p = b.submit('k', 5);
    const flushed = once(b, 'batch') as Promise<[BatchEvent]>;
    b.drain();
    const [event] = await flushed;
    expect(event.reason).toBe('drain');
    expect((await p).result).toBe(10);
    await b.whenIdle();
    expect(b.pending).toBe(0);
    expect(b.busy).toBe(false);
  });

  it('rejects a runner that returns the wrong number of results', async () => {
    const b = new DynamicBatcher<number, number>(async () => [], { maxBatchSize: 1, maxDelayMs: 0, isolateFailures: false });
    await expect(b.submit('k', 1)).rejects.toThrow(/0 results for 1 items/);
  });

  it('validates its options', () => {
    expect(() => new DynamicBatcher(async (_k, x: number[]) => x, { maxBatchSize: 0 })).toThrow(/maxBatchSize/);
    expect(() => new DynamicBatcher(async (_k, x: number[]) => x, { maxDelayMs: -1 })).toThrow(/maxDelayMs/);
  });

  describe('announced arrivals', () => {
    /** A runner whose first batch runs until released; records batch sizes and reasons. */
    function gatedBatcher(options: { maxBatchSize: number; maxDelayMs: number }, now?: () => number) {
      let release: () => void = () => undefined;
      const gate = new Promise<void>((resolve) => (release = resolve));
      const batches: BatchEvent[] = [];
      const b = new DynamicBatcher<number, number>(
        async (_k, items) => {
          if (batches.length === 1) await gate;
          return items;
        },
        options,
        now,
      );
      b.on('batch', (e) => batches.push(e));
      return { b, batches, release };
    }

    it('an overdue group waits for announced items when the engine frees, so the next batch is full', async () => {
      // The batcher's clock is the test's: on a loaded machine a real 10 ms wait for the announced
      // images could outlast maxDelayMs after the engine frees, and the batch of 3 would start.
      let t = 0;
      const { b, batches, release } = gatedBatcher({ maxBatchSize: 4, maxDelayMs: 40 }, () => t);
      const started = once(b, 'batch');
      const first = b.submit('k', 0);
      t = 40; // due: the batch of 1 starts when its timer fires
      await started;
      const arrivals = [b.expect(), b.expect()];
      const early = [b.submit('k', 1), b.submit('k', 2)];
      expect(b.incoming).toBe(2);
      t = 1_000; // the engine is held until the waiting items are well past their delay
      release();
      await first;
      // Real time passes (more than maxDelayMs of timers) while the clock says the engine has just freed.
      await new Promise((r) => setTimeout(r, 60));
      expect(batches).toHaveLength(1); // without announcements a batch of 2 would have started
      const late = arrivals.map((a, i) => b.submit('k', 3 + i, a));
      await Promise.all([...early, ...late]);
      expect(b.incoming).toBe(0);
      expect(batches.map((e) => [e.size, e.reason])).toEqual([
        [1, 'delay'],
        [4, 'size'],
      ]);
    });

    it('settling an announced item that never comes starts the waiting batch at once', async () => {
      let t = 0;
      const { b, batches, release } = gatedBatcher({ maxBatchSize: 8, maxDelayMs: 1_000 }, () => t);
      const started = once(b, 'batch');
      const first = b.submit('k', 0);
      t = 1_000;
      b.expect().settle(); // settling pumps: the first item is due now, without its 1 s timer
      await started;
      const skipped = b.expect();
      const waiting = [b.submit('k', 1), b.submit('k', 2)];
      t = 5_000; // the two are long overdue when the engine frees
      release();
      await first;
      await new Promise((r) => setTimeout(r, 20));
      expect(batches).toHaveLength(1); // waiting for the announced item (up to 1 s after the engine freed)
      const settledAt = performance.now();
      skipped.settle();
      skipped.settle(); // twice is harmless
      await Promise.all(waiting);
      expect(performance.now() - settledAt).toBeLessThan(500);
      expect(batches.map((e) => [e.size, e.reason])).toEqual([
        [1, 'delay'],
        [2, 'delay'],
      ]);
      expect(b.incoming).toBe(0);
    });

    it('never waits for an announced item longer than maxDelayMs after the engine frees', async () => {
      const { b, batches, release } = gatedBatcher({ maxBatchSize: 8, maxDelayMs: 60 });
      const first = b.submit('k', 0);
      await once(b, 'batch');
      b.expect(); // a download that hangs
      const waiting = [b.submit('k', 1), b.submit('k', 2)];
      await new Promise((r) => setTimeout(r, 100));
      // Taken before the release: the engine frees after it, however long a loaded machine takes
      // to get back to this test (taken after `await first`, a late resumption read as an early timer).
      const freedAt = performance.now();
      release();
      await first;
      await Promise.all(waiting);
      // Timers fire late on a busy machine, never early.
      expect(performance.now() - freedAt).toBeGreaterThanOrEqual(55);
      expect(batches.map((e) => [e.size, e.reason])).toEqual([
        [1, 'delay'],
        [2, 'delay'],
      ]);
      expect(b.incoming).toBe(1);
    });
  });
});
