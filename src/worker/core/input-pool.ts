/**
 * Model-input buffers reused from image to image. Each image's input is a float32 array of
 * `width x height x 3` (588 KiB for 224x224), live only from preprocessing until its batch has been
 * computed; allocating a fresh one per image made the worker's largest stream of external memory,
 * and V8 answers growing external memory with full (mark-compact) collections of the whole heap.
 * The image core takes a buffer before preprocessing and gives it back once the engine call has
 * answered (the engine thread copies its inputs when the batch is posted; an in-process engine is
 * done with them when `explain` resolves). A buffer whose engine call failed is not given back.
 */
export class InputBufferPool {
  private readonly free: Float32Array[] = [];

  /** @param capacity buffers kept at most (the images a worker holds at once is enough) */
  constructor(readonly capacity: number) {
    if (!(Number.isSafeInteger(capacity) && capacity >= 0)) throw new RangeError(`input pool capacity must be a non-negative integer, got ${String(capacity)}`);
  }

  /** A buffer of exactly `length` floats (contents undefined: preprocessing writes every one). */
  take(length: number): Float32Array {
    for (let i = this.free.length - 1; i >= 0; i--) {
      if (this.free[i].length === length) return this.free.splice(i, 1)[0];
    }
    return new Float32Array(length);
  }

  /** Give a buffer back; one taken elsewhere or detached (transferred) is dropped. */
  give(buffer: Float32Array): void {
    if (buffer.length === 0 || this.free.length >= this.capacity || this.free.includes(buffer)) return;
    this.free.push(buffer);
  }

  /** Buffers waiting to be reused (tests). */
  get size(): number {
    return this.free.length;
  }
}
