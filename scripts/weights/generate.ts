/**
 * Generate deterministic random weights in the formats the loaders read, for demos, end-to-end
 * tests and benchmarks (no pretrained weights can be downloaded on CI machines).
 *
 *   tsx scripts/weights/generate.ts --out DIR [--model small|vgg16] [--seed N] [--input-std S]
 *       [--formats h5-legacy,h5-modern,h5-full,tfjs]
 *
 * Writes DIR/<model>.legacy.h5, DIR/<model>.modern.h5, DIR/<model>.full.h5 and DIR/<model>-tfjs/model.json.
 * `--model vgg16` writes the full 138M-parameter network (553 MB per file).
 */
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { ModelSpec } from '../../src/worker/model/spec.js';
import { randomVgg16Spec, vggShapedSpec } from '../../src/worker/model/vgg-shaped.js';
import { writeKerasHdf5 } from './write-keras-hdf5.js';
import { writeTfjsLayers } from './write-tfjs-layers.js';

const FORMATS = ['h5-legacy', 'h5-modern', 'h5-full', 'tfjs'] as const;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      model: { type: 'string', default: 'small' },
      seed: { type: 'string', default: '1' },
      'input-std': { type: 'string', default: '64' },
      formats: { type: 'string', default: FORMATS.join(',') },
    },
  });
  if (!values.out) throw new Error('--out DIR is required');
  const seed = Number(values.seed);
  const inputStd = Number(values['input-std']);
  const formats = values.formats.split(',');
  for (const f of formats) if (!(FORMATS as readonly string[]).includes(f)) throw new Error(`--formats: unknown format ${f} (${FORMATS.join(', ')})`);
  const spec: ModelSpec = values.model === 'vgg16' ? randomVgg16Spec({ seed, inputStd }) : vggShapedSpec({ seed, inputStd });
  const name = values.model === 'vgg16' ? 'vgg16' : spec.name;
  for (const format of formats) {
    const started = Date.now();
    let path: string;
    if (format === 'tfjs') path = await writeTfjsLayers(join(values.out, `${name}-tfjs`), spec);
    else {
      path = join(values.out, `${name}.${format.slice(3)}.h5`);
      await writeKerasHdf5(path, spec, { style: format === 'h5-legacy' ? 'legacy' : 'modern', fullModel: format === 'h5-full' });
    }
    process.stdout.write(`${path}  (${Date.now() - started} ms, weights sha256 ${spec.weightsHash})\n`);
  }
}

await main();
