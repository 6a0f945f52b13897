/**
 * CPU per image of each CPU stage of the image core outside the engine (not a test): decode,
 * preprocess, display resize, overlay, heatmap, prediction document, run one after another on one
 * JPEG per size, so each stage's process CPU (all threads: libvips works on libuv's threadpool) is
 * its own. The pipeline benchmark measures the sum with I/O and queue work; this one says which
 * stage to cut.
 *
 *   npx tsx bench/stage-cpu.ts [--rounds 20] [--max-side N] [--display-kernel lanczos3|cubic|linear|nearest]
 *
 * `--display-kernel` prices another libvips kernel for the display resize (the core uses the default,
 * lanczos3).
 */
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import { decodeImage } from '../src/worker/image/decode.js';
import { preprocess } from '../src/worker/image/preprocess.js';
import { heatmapSize, overlaySize, renderHeatmap, renderOverlay } from '../src/worker/image/render.js';
import { mulberry32 } from '../src/worker/model/random-weights.js';
import { cpuMs, flag, sourceImage, textFlag } from './measure.js';

const rounds = flag('--rounds', 20);
const maxSide = textFlag('--max-side') === undefined ? undefined : flag('--max-side', 0);
const kernel = (textFlag('--display-kernel') ?? 'lanczos3') as 'lanczos3' | 'cubic' | 'linear' | 'nearest' | 'mitchell' | 'lanczos2';

const rand = mulberry32(14);
const cam = { grid: Float32Array.from({ length: 14 * 14 }, () => rand()), width: 14, height: 14 };

async function timed(label: string, totals: Map<string, number>, f: () => Promise<unknown> | unknown): Promise<void> {
  const c0 = cpuMs();
  await f();
  totals.set(label, (totals.get(label) ?? 0) + cpuMs() - c0);
}

for (const [w, h] of [[320, 240], [1600, 1200]] as const) {
  const bytes = await sourceImage(0, w, h);
  const totals = new Map<string, number>();
  const t0 = performance.now();
  for (let r = 0; r < rounds + 2; r++) {
    const t = r < 2 ? new Map<string, number>() : totals; // two warm-up rounds
    let decoded!: Awaited<ReturnType<typeof decodeImage>>;
    await timed('decode', t, async () => (decoded = await decodeImage(bytes)));
    await timed('preprocess', t, () => preprocess(decoded, { width: 224, height: 224 }));
    const size = overlaySize(decoded.width, decoded.height, maxSide, 'jpeg');
    let display = decoded as { data: Uint8Array; width: number; height: number };
    if (size.width !== decoded.width) {
      await timed('display resize', t, async () => {
        const data = await sharp(decoded.data, { raw: { width: decoded.width, height: decoded.height, channels: 3 } }).resize(size.width, size.height, { fit: 'fill', kernel }).raw().toBuffer();
        display = { data, width: size.width, height: size.height };
      });
    }
    await timed('overlay', t, () => renderOverlay(display, cam, { maxSide, reuseImage: true }));
    await timed('heatmap', t, () => renderHeatmap(cam, { size: heatmapSize(w, h, 224) }));
  }
  const ms = performance.now() - t0;
  const sum = [...totals.values()].reduce((a, b) => a + b, 0) / rounds;
  console.log(`${w}x${h} (${(bytes.length / 1024).toFixed(0)} KiB), max side ${maxSide ?? 'none'}, display kernel ${kernel}: ${sum.toFixed(2)} ms CPU per image over ${rounds} rounds (${(ms / (rounds + 2)).toFixed(1)} ms wall)`);
  for (const [k, v] of totals) console.log(`  ${k.padEnd(16)} ${(v / rounds).toFixed(2)} ms`);
}
