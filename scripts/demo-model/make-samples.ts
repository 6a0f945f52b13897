/**
 * Write the demo's sample images: synthetic scenes (a few per class, from their own seed, never
 * used in training or evaluation) as PNG, plus a few public-domain / CC0 photographs shipped in
 * Debian's python3-skimage as JPEG. Licences are recorded by hand in samples/LICENSES.md.
 *
 *   npx tsx scripts/demo-model/make-samples.ts [--out samples] [--skimage-data DIR]
 */
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { DEMO_CLASSES, generateImage } from './synth.js';

export interface SampleOptions {
  /** Output folder. Default `samples`. */
  outDir: string;
  /** Seed of the sample scenes (training uses 1, validation 1001, evaluation 2024). Default 777. */
  seed: number;
  /** Synthetic images in all; classes cycle. Default 25 (5 per class). */
  count: number;
  /** Where Debian's python3-skimage keeps its data. */
  skimageData: string;
  /** skimage files to convert, with the name they get under samples/photos/. */
  photos: readonly { file: string; name: string }[];
  /** JPEG quality of the photographs. Default 85. */
  jpegQuality: number;
}

export const DEFAULT_SAMPLE_OPTIONS: Readonly<SampleOptions> = Object.freeze({
  outDir: 'samples',
  seed: 777,
  count: 25,
  skimageData: '/usr/lib/python3/dist-packages/skimage/data',
  photos: [
    { file: 'astronaut.png', name: 'astronaut.jpg' },
    { file: 'chelsea.png', name: 'chelsea-cat.jpg' },
    { file: 'coffee.png', name: 'coffee.jpg' },
    { file: 'rocket.jpg', name: 'rocket.jpg' },
  ],
  jpegQuality: 85,
});

export async function makeSamples(o: SampleOptions): Promise<void> {
  const synthDir = path.join(o.outDir, 'synthetic');
  await mkdir(synthDir, { recursive: true });
  const boxes: Record<string, { class: string; box: [number, number, number, number] }> = {};
  for (let i = 0; i < o.count; i++) {
    const image = generateImage(o.seed, i);
    const name = `${String(i).padStart(2, '0')}-${image.className}.png`;
    await sharp(Buffer.from(image.rgb), { raw: { width: image.width, height: image.height, channels: 3 } })
      .png({ compressionLevel: 9 })
      .toFile(path.join(synthDir, name));
    const b = image.box;
    boxes[name] = { class: image.className, box: [b.x0, b.y0, b.x1, b.y1] };
  }
  // Ground truth for the synthetic samples: class and box as [x0, y0, x1, y1), pixels.
  await writeFile(path.join(synthDir, 'ground-truth.json'), `${JSON.stringify({ classes: DEMO_CLASSES, seed: o.seed, images: boxes }, null, 2)}\n`);

  const photoDir = path.join(o.outDir, 'photos');
  await mkdir(photoDir, { recursive: true });
  for (const photo of o.photos) {
    const from = path.join(o.skimageData, photo.file);
    try {
      await access(from);
    } catch {
      throw new Error(`${from} is missing: install Debian's python3-skimage (apt-get install python3-skimage) or pass --skimage-data DIR`);
    }
    await sharp(from).removeAlpha().jpeg({ quality: o.jpegQuality, mozjpeg: true }).toFile(path.join(photoDir, photo.name));
  }
  console.log(`wrote ${o.count} synthetic samples to ${synthDir} and ${o.photos.length} photographs to ${photoDir}`);
}

const { values } = parseArgs({ args: process.argv.slice(2), options: { out: { type: 'string' }, 'skimage-data': { type: 'string' } } });
await makeSamples({
  ...DEFAULT_SAMPLE_OPTIONS,
  outDir: values.out ?? DEFAULT_SAMPLE_OPTIONS.outDir,
  skimageData: values['skimage-data'] ?? DEFAULT_SAMPLE_OPTIONS.skimageData,
});
