/**
 * The enqueue progress line on a TTY (stderr): redrawn in place at most every `intervalMs`, and
 * cleared before the summary so stdout output stays clean. Off when stderr is not a TTY (CI logs,
 * pipes), where a stream of carriage returns would only be noise.
 */
import type { EnqueueProgress } from './enqueue.js';

export interface ProgressLine {
  update(p: EnqueueProgress): void;
  clear(): void;
}

export function createProgressLine(stream: NodeJS.WriteStream, label: string, intervalMs = 100): ProgressLine {
  if (!stream.isTTY) return { update: () => undefined, clear: () => undefined };
  let last = 0;
  let drawn = false;
  return {
    update(p) {
      const now = Date.now();
      if (now - last < intervalMs) return;
      last = now;
      drawn = true;
      const rate = p.elapsedMs > 0 ? Math.round((p.matched / p.elapsedMs) * 1000) : 0;
      const text = `${label}: ${fmt(p.listed)} listed, ${fmt(p.matched)} images, ${fmt(p.added)} queued, ${fmt(p.known)} already in run (${fmt(rate)} keys/s)`;
      stream.write(`\r\x1b[K${text.slice(0, (stream.columns ?? 120) - 1)}`);
    },
    clear() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}

export function fmt(n: number): string {
  return n.toLocaleString('en-US');
}
