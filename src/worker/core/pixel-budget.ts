/**
 * A budget of decoded pixels shared by every image a process holds at once. Decoding is where an
 * image's memory peaks (3 bytes per pixel as RGB, plus libvips' working buffers), and a worker holds
 * `batch + prefetch` images: sixteen 100-megapixel PNGs would need about 5 GB of RGB alone. Each
 * image asks for its pixels (read from the header, before any pixel is decoded) and waits until
 * they fit; after preprocessing it keeps only the overlay's share (`Lease.shrink`) and gives the
 * rest back. Requests are served in arrival order, so a large image cannot starve behind a stream
 * of small ones, and a request larger than the whole budget is served alone (it waits until
 * nothing else holds pixels), so no valid image is refused.
 */

export interface Lease {
  /** Pixels this lease holds now. */
  readonly pixels: number;
  /** Keep only `pixels` (never grows); the rest goes back to the budget. */
  shrink(pixels: number): void;
  /** Give everything back; idempotent. */
  release(): void;
}

interface Waiter {
  pixels: number;
  resolve: (lease: Lease) => void;
}

export class PixelBudget {
  private used = 0;
  private readonly queue: Waiter[] = [];
  /** Largest number of pixels held at once so far (tests and metrics). */
  peak = 0;

  constructor(readonly capacity: number) {
    if (!(Number.isSafeInteger(capacity) && capacity > 0)) throw new RangeError(`pixel budget must be a positive integer, got ${String(capacity)}`);
  }

  get inUse(): number {
    return this.used;
  }

  /** Wait until `pixels` fit (capped at the capacity), then hold them. */
  acquire(pixels: number): Promise<Lease> {
    const want = Math.min(Math.max(0, Math.ceil(pixels)), this.capacity);
    return new Promise((resolve) => {
      this.queue.push({ pixels: want, resolve });
      this.pump();
    });
  }

  private pump(): void {
    while (this.queue.length > 0 && this.used + this.queue[0].pixels <= this.capacity) {
      const w = this.queue.shift()!;
      this.used += w.pixels;
      this.peak = Math.max(this.peak, this.used);
      w.resolve(this.lease(w.pixels));
    }
  }

  private lease(initial: number): Lease {
    let held = initial;
    const give = (n: number): void => {
      this.used -= n;
      held -= n;
      this.pump();
    };
    return {
      get pixels() {
        return held;
      },
      shrink: (pixels: number) => {
        if (pixels < held) give(held - Math.max(0, pixels));
      },
      release: () => {
        if (held > 0) give(held);
      },
    };
  }
}
