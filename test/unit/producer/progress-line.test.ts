import { describe, expect, it } from 'vitest';
import { createProgressLine } from '../../../src/producer/progress-line.js';
import type { EnqueueProgress } from '../../../src/producer/enqueue.js';

function stream(isTTY: boolean): NodeJS.WriteStream & { out: string[] } {
  const out: string[] = [];
  return { isTTY, columns: 80, out, write: (s: string) => out.push(s) > 0 } as unknown as NodeJS.WriteStream & { out: string[] };
}

const p = (matched: number, elapsedMs: number): EnqueueProgress => ({
  listed: matched + 5, matched, added: matched - 1, known: 1, pages: 1, elapsedMs,
  skipped: { 'folder-marker': 0, output: 0, 'not-image': 5, excluded: 0 },
});

describe('progress line', () => {
  it('redraws one throttled line in place on a TTY, within its width, and clears it', () => {
    const s = stream(true);
    const line = createProgressLine(s, 'enqueue run-1', 1000);
    line.update(p(12_000, 2000));
    line.update(p(13_000, 2100)); // within the interval: dropped
    expect(s.out).toHaveLength(1);
    expect(s.out[0]).toBe('\r\x1b[Kenqueue run-1: 12,005 listed, 12,000 images, 11,999 queued, 1 already in run (6,000 keys/s)'.slice(0, 4 + 79));
    expect((s.out[0] ?? '').length).toBeLessThanOrEqual(4 + 79);
    line.clear();
    expect(s.out[1]).toBe('\r\x1b[K');
  });

  it('writes nothing when stderr is not a TTY', () => {
    const s = stream(false);
    const line = createProgressLine(s, 'x', 0);
    line.update(p(10, 10));
    line.clear();
    expect(s.out).toEqual([]);
  });
});
