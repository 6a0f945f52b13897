/**
 * Overlay rendering benchmark (not a test): the reference path (CAM upsampled and blended in
 * JavaScript in doubles, `overlayPixelsReference`, then encoded by libvips) against both production
 * composers of `renderOverlay` (libvips: upsample and composite in libvips, fused with the encoder;
 * fused JS: one fixed-point pass, then the encoder), side by side in one process on the same images
 * and map, interleaved so load drift hits all three. The last column is the composer
 * `overlayComposer` picks for that size.
 *
 *   npm run bench:render -- [--rounds 5] [--format jpeg|png|webp]
 *
 * Per image it prints process CPU time (all threads: libvips works on libuv's threadpool) and
 * event-loop time (the main thread's busy time, from `eventLoopUtilization`), which is what stalls
 * lock renewals and socket I/O in a worker.
 */
import { performance } from 'node:perf_hooks';
import sharp from 'sharp';
import type { OverlayFormat } from '../src/shared/explain-options.js';
import { type OverlayComposer, overlayComposer, overlayPixelsReference, overlaySize, renderOverlay } from '../src/worker/image/render.js';
import type { RgbImage } from '../src/worker/image/resize.js';
import { mulberry32 } from '../src/worker/model/random-weights.js';

interface Case {
  width: number;
  height: number;
  maxSide?: number;
  perRound: number;
}

const CASES: Case[] = [
  { width: 320, height: 240, perRound: 40 },
  { width: 640, height: 480, perRound: 16 },
  { width: 1024, height: 768, perRound: 8 },
  { width: 1600, height: 1200, perRound: 6 },
  { width: 1600, height: 1200, maxSide: 1024, perRound: 8 },
];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1] : fallback;
}

const rounds = Number(arg('rounds', '5'));
const format = arg('format', 'jpeg') as OverlayFormat;

/** A photo-like image: smooth gradients plus noise (JPEG cost depends on content). */
function image(width: number, height: number): RgbImage {
  const rand = mulberry32(width * 31 + height);
  const data = new Uint8Array(width * height * 3);
  for (let y = 0, i = 0; y < height; y++) {
    for (let x = 0; x < width; x++, i += 3) {
      data[i] = (x * 255) / width + rand() * 30;
      data[i + 1] = (y * 255) / height + rand() * 30;
      data[i + 2] = 128 + rand() * 60;
    }
  }
  return { data, width, height };
}

const cam = (() => {
  const rand = mulberry32(14);
  const grid = new Float32Array(196);
  for (let y = 0; y < 14; y++) for (let x = 0; x < 14; x++) grid[y * 14 + x] = Math.max(0, 1 - Math.hypot(x - 9, y - 5) / 8) * (0.8 + 0.2 * rand());
  return { grid, width: 14, height: 14 };
})();

async function reference(img: RgbImage, maxSide: number | undefined): Promise<Buffer> {
  const px = await overlayPixelsReference(img, cam, { format, maxSide });
  const s = sharp(px.data, { raw: { width: px.width, height: px.height, channels: 3 } });
  return (format === 'png' ? s.png({ compressionLevel: 6 }) : format === 'webp' ? s.webp({ quality: 90 }) : s.jpeg({ quality: 90 })).toBuffer();
}

async function composed(img: RgbImage, maxSide: number | undefined, composer: OverlayComposer): Promise<Buffer> {
  return (await renderOverlay(img, cam, { format, maxSide }, composer)).data;
}

interface Totals {
  cpuMs: number;
  loopMs: number;
  wallMs: number;
  n: number;
}

async function measure(fn: () => Promise<unknown>, n: number, into: Totals): Promise<void> {
  const elu0 = performance.eventLoopUtilization();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await fn();
  into.wallMs += performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  into.cpuMs += (cpu.user + cpu.system) / 1000;
  into.loopMs += performance.eventLoopUtilization(elu0).active;
  into.n += n;
}

const paths = [
  { name: 'JS reference', run: reference },
  { name: 'libvips', run: (img: RgbImage, maxSide: number | undefined) => composed(img, maxSide, 'libvips') },
  { name: 'fused JS', run: (img: RgbImage, maxSide: number | undefined) => composed(img, maxSide, 'js') },
];
const rows: string[] = [];
for (const c of CASES) {
  const img = image(c.width, c.height);
  for (const p of paths) await p.run(img, c.maxSide); // warm every path (tables, libvips caches)
  const totals: Totals[] = paths.map(() => ({ cpuMs: 0, loopMs: 0, wallMs: 0, n: 0 }));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < paths.length; k++) await measure(() => paths[k].run(img, c.maxSide), c.perRound, totals[k]);
  }
  const per = (k: keyof Omit<Totals, 'n'>) => totals.map((t) => (t[k] / t.n).toFixed(1)).join(' / ');
  const out = overlaySize(c.width, c.height, c.maxSide);
  const name = `${c.width}x${c.height}${c.maxSide ? ` → max-side ${c.maxSide}` : ''}`;
  rows.push(`| ${name} | ${per('cpuMs')} | ${per('loopMs')} | ${per('wallMs')} | ${overlayComposer(out.width, out.height)} |`);
}
process.stdout.write(
  [
    `overlay render, ${format}, ${rounds} interleaved rounds (ms per image, ${paths.map((p) => p.name).join(' / ')})`,
    '',
    '| image | CPU, all threads | event loop | wall | production composer |',
    '|---|---|---|---|---|',
    ...rows,
    '',
  ].join('\n'),
);
