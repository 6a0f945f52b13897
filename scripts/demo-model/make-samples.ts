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
import { DEFAULT_SAMPLE_OPTIONS, type SampleOptions } from './sample-options.js';
import { DEMO_CLASSES, generateImage } from './synth.js';

export async function makeSamples(o: SampleOptions): Promise<void> {
  const synthDir = path.join(o.outDir, 'synthetic');
  await mkdir(synthDir, { recursive: true });
  const boxes: Record<string, { class: string; box: [number, number, number, number] }> = {};
  for (let i = 0; i < o.count; i++) {
    const image = generateImage(o.seed, i);
    const name = `${String(i).padStart(2, '0')}-${image.className}.png`;
    const k = o.upscale;
    await sharp(Buffer.from(image.rgb), { raw: { width: image.width, height: image.height, channels: 3 } })
      .resize(image.width * k, image.height * k, { kernel: 'nearest' })
      .png({ compressionLevel: 9 })
      .toFile(path.join(synthDir, name));
    const b = image.box;
    boxes[name] = { class: image.className, box: [b.x0 * k, b.y0 * k, b.x1 * k, b.y1 * k] };
  }
  // Ground truth for the synthetic samples: class and box as [x0, y0, x1, y1), in sample pixels.
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
