import { describe, expect, it } from 'vitest';
import { tuneWorkerHeap, WORKER_HEAP_GROWING_PERCENT } from '../../../src/worker/pipeline/heap-growth.js';

describe("the worker's V8 heap growth", () => {
  it('sets a fixed growing factor of 4 when the process was not started with one', () => {
    const set: string[] = [];
    expect(tuneWorkerHeap({ execArgv: ['--enable-source-maps'], setFlags: (f) => set.push(f) })).toBe('--heap-growing-percent=300');
    expect(set).toEqual(['--heap-growing-percent=300']);
    expect(WORKER_HEAP_GROWING_PERCENT).toBe(300);
  });

  it("keeps the operator's own flag, in either spelling", () => {
    for (const own of ['--heap-growing-percent=0', '--heap_growing_percent=150', '--heap-growing-percent']) {
      const set: string[] = [];
      expect(tuneWorkerHeap({ execArgv: ['--import', 'tsx', own], setFlags: (f) => set.push(f) })).toBeNull();
      expect(set).toEqual([]);
    }
  });
});
