/**
 * The N entries with the highest severity seen so far (a min-heap): flag evidence for runs of any
 * size in fixed memory. Ties keep the entry that arrived first, so results do not depend on heap
 * internals.
 */
export class BoundedTop<T> {
  private readonly heap: { severity: number; seq: number; item: T }[] = [];
  private seq = 0;
  /** Entries offered, kept or not. */
  offered = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`capacity must be a non-negative integer, got ${capacity}`);
  }

  /** Lower severity first; at equal severity the later arrival is the lesser. */
  private less(i: number, j: number): boolean {
    const a = this.heap[i];
    const b = this.heap[j];
    return a.severity < b.severity || (a.severity === b.severity && a.seq > b.seq);
  }

  private swap(i: number, j: number): void {
    const t = this.heap[i];
    this.heap[i] = this.heap[j];
    this.heap[j] = t;
  }

  offer(severity: number, item: T): void {
    this.offered++;
    if (this.capacity === 0 || !Number.isFinite(severity)) return;
    const entry = { severity, seq: this.seq++, item };
    if (this.heap.length < this.capacity) {
      this.heap.push(entry);
      for (let i = this.heap.length - 1; i > 0; ) {
        const parent = (i - 1) >> 1;
        if (!this.less(i, parent)) break;
        this.swap(i, parent);
        i = parent;
      }
      return;
    }
    const root = this.heap[0];
    // At equal severity the earlier arrival stays.
    if (severity <= root.severity) return;
    this.heap[0] = entry;
    for (let i = 0; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < this.heap.length && this.less(l, m)) m = l;
      if (r < this.heap.length && this.less(r, m)) m = r;
      if (m === i) break;
      this.swap(i, m);
      i = m;
    }
  }

  get size(): number {
    return this.heap.length;
  }

  /** Kept entries, highest severity first (earlier arrival first at equal severity). */
  sorted(): { severity: number; item: T }[] {
    return [...this.heap].sort((a, b) => b.severity - a.severity || a.seq - b.seq).map(({ severity, item }) => ({ severity, item }));
  }
}
