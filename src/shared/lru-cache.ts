/**
 * A small LRU cache bounded by entry count and total bytes (thumbnails are a few KiB each, but a
 * byte budget keeps a gallery of unusually large images from growing the heap without limit).
 * A Map iterates in insertion order, so re-inserting on read makes the first key the least recent.
 */
export class LruCache<V extends { byteLength: number }> {
  private readonly map = new Map<string, V>();
  private bytes = 0;

  constructor(
    private readonly maxEntries: number,
    private readonly maxBytes: number,
  ) {}

  get(key: string): V | undefined {
    const value = this.map.get(key);
    if (value === undefined) return undefined;
    this.map.delete(key);
    this.map.set(key, value);
    return value;
  }

  /** Whether `key` is cached, without making it the most recent (a look, not a use). */
  has(key: string): boolean {
    return this.map.has(key);
  }

  set(key: string, value: V): void {
    if (value.byteLength > this.maxBytes) return;
    const old = this.map.get(key);
    if (old !== undefined) {
      this.bytes -= old.byteLength;
      this.map.delete(key);
    }
    this.map.set(key, value);
    this.bytes += value.byteLength;
    while (this.map.size > this.maxEntries || this.bytes > this.maxBytes) {
      const oldest = this.map.keys().next();
      if (oldest.done) break;
      this.bytes -= this.map.get(oldest.value)?.byteLength ?? 0;
      this.map.delete(oldest.value);
    }
  }

  get size(): number {
    return this.map.size;
  }

  get byteSize(): number {
    return this.bytes;
  }
}
