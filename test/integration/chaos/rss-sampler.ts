/**
 * Samples the resident memory of a changing set of processes (workers come and go in a chaos run)
 * from /proc: VmRSS for the flat-over-time picture, VmHWM (the kernel's own peak) so a spike
 * between two samples is not missed. Keeps the peak per process name.
 */
import { processMemory } from '../../helpers/processes.js';

export interface RssPeak {
  name: string;
  pid: number;
  peakRssBytes: number;
}

export interface RssSampler {
  /** Start sampling `pid` under `name` until it exits. */
  watch(name: string, pid: number): void;
  /** Sample `pid` now (e.g. right before killing it). */
  sample(pid: number): void;
  peaks(): RssPeak[];
  samples(): number;
  stop(): void;
}

export function startRssSampler(intervalMs: number): RssSampler {
  const watched = new Map<number, RssPeak>();
  let count = 0;
  const sample = (pid: number): void => {
    const entry = watched.get(pid);
    const mem = processMemory(pid);
    if (!entry || !mem) return;
    count += 1;
    entry.peakRssBytes = Math.max(entry.peakRssBytes, mem.rssBytes, mem.peakRssBytes);
  };
  const timer = setInterval(() => {
    for (const pid of watched.keys()) sample(pid);
  }, intervalMs);
  return {
    watch(name, pid) {
      watched.set(pid, { name, pid, peakRssBytes: 0 });
      sample(pid);
    },
    sample,
    peaks: () => [...watched.values()],
    samples: () => count,
    stop: () => clearInterval(timer),
  };
}
