/**
 * V8's heap growth for a long-running worker. V8 sizes the old generation's next full collection
 * from the live heap times a factor it picks from its own speed measurements; for the worker's
 * 25-30 MB live heap it picked about 1.8, and its incremental marking then started every 0.6-0.7 s
 * (every 15-17 images at 320x240), each collection marking the whole live heap on the main thread
 * and V8's helper threads to reclaim 10 MB. A job's objects live from its download to its upload,
 * longer than a scavenge cycle, so they reach the old generation however short the job's work is.
 *
 * A fixed factor of 4 (`--heap-growing-percent=300`) lets the old generation grow to four times the
 * live heap (about 100-120 MB for the worker) before a full collection: none at all in 960-image
 * runs (47-50 with V8's own growth), V8's helper threads 1.3-2 ms less CPU per 320x240 image, and
 * the CPU outside the engine lower in 7 of 8 alternating pairs (docs/benchmarks.md). The cost is
 * that heap in memory (the heap in use grew from 25 to 56 MB over 960 images), small next to the
 * decode budget. Collections that external memory triggers (sharp's image buffers, at 1600x1200)
 * are unaffected; there the full collections fell from 33-37 to 20 per 160 images.
 */
import v8 from 'node:v8';

export const WORKER_HEAP_GROWING_PERCENT = 300;

export interface HeapGrowthDeps {
  /** The process's Node/V8 flags: a `--heap-growing-percent` given there is the operator's choice, kept. */
  execArgv: readonly string[];
  setFlags: (flags: string) => void;
}

/**
 * Sets the worker's heap growth unless the process was started with its own; returns the flag set,
 * or null when the operator's is kept (`node --heap-growing-percent=0 ...` restores V8's own).
 */
export function tuneWorkerHeap(deps: HeapGrowthDeps = { execArgv: process.execArgv, setFlags: (f) => v8.setFlagsFromString(f) }): string | null {
  if (deps.execArgv.some((arg) => /^--heap[-_]growing[-_]percent(=|$)/.test(arg))) return null;
  const flag = `--heap-growing-percent=${WORKER_HEAP_GROWING_PERCENT}`;
  deps.setFlags(flag);
  return flag;
}
