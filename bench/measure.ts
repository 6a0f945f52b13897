/** Small helpers the process-CPU benchmarks share (bench:audit, bench:methods, stage-cpu, bench:pipeline). */
import sharp from 'sharp';

/** The word after `name` on the command line, or undefined when the flag is absent. */
export function textFlag(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

/** The number after `name` on the command line, or `fallback` when the flag is absent. */
export function flag(name: string, fallback: number): number {
  const value = textFlag(name);
  return value === undefined ? fallback : Number(value);
}

/** CPU time of this process so far, user + system, in ms: a loaded machine inflates wall time, not this. */
export function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/** A distinct photo-like JPEG per index: smooth gradients plus a few shapes, so decode does real work. */
export async function sourceImage(i: number, width: number, height: number): Promise<Buffer> {
  const data = Buffer.alloc(width * height * 3);
  const cx = (i * 37) % width;
  const cy = (i * 53) % height;
  const r = 20 + (i % 40);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const p = (y * width + x) * 3;
      const inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r;
      data[p] = inside ? 230 : (x * 255) / width;
      data[p + 1] = inside ? (i * 29) % 256 : (y * 255) / height;
      data[p + 2] = ((x ^ y) + i * 7) & 0xff;
    }
  }
  return sharp(data, { raw: { width, height, channels: 3 } }).jpeg({ quality: 88 }).toBuffer();
}
