import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import h5wasm from 'h5wasm/node';
import { describe, expect, it } from 'vitest';
import { ModelError, NotFoundError } from '../../../src/shared/errors.js';
import { inspectKerasHdf5, readKerasHdf5 } from '../../../src/worker/model/hdf5.js';
import { vggShapedArchitecture, vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { writeKerasHdf5 } from '../../../scripts/weights/write-keras-hdf5.js';
import { expectSameSpec, withTempDir } from './helpers/specs.js';

const OPTIONS = { inputShape: [16, 16, 3] as [number, number, number], blocks: [{ filters: 4, convs: 2 }, { filters: 8, convs: 1 }], denseUnits: [16], classes: 5 };
const spec = vggShapedSpec({ ...OPTIONS, seed: 11 });
const arch = vggShapedArchitecture(OPTIONS);

describe('Keras HDF5 loader (files written by h5wasm)', () => {
  it('loads both dataset naming styles to the same spec, bit for bit', async () => {
    await withTempDir(async (dir) => {
      const legacy = join(dir, 'legacy.h5');
      const modern = join(dir, 'modern.h5');
      await writeKerasHdf5(legacy, spec, { style: 'legacy' });
      await writeKerasHdf5(modern, spec, { style: 'modern' });
      const a = await readKerasHdf5(legacy, { architecture: arch });
      const b = await readKerasHdf5(modern, { architecture: arch });
      expectSameSpec(a, spec);
      expectSameSpec(b, spec);
      expect(a.source).toBe(legacy);
    });
  });

  it('reads large datasets in slices without changing a value', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'w.h5');
      await writeKerasHdf5(path, spec, { style: 'modern' });
      // 100-byte slices: fc1's [128, 16] kernel is read 1 row at a time.
      expectSameSpec(await readKerasHdf5(path, { architecture: arch, sliceBytes: 100 }), spec);
    });
  });

  it('loads full-model files (model_weights/ + model_config) without being told the architecture', async () => {
    await withTempDir(async (dir) => {
      for (const style of ['legacy', 'modern'] as const) {
        const path = join(dir, `${style}-full.h5`);
        await writeKerasHdf5(path, spec, { style, fullModel: true });
        expectSameSpec(await readKerasHdf5(path), spec);
      }
    });
  });

  it('names the layer whose kernel does not fit the architecture, before reading data', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'w.h5');
      await writeKerasHdf5(path, spec, { style: 'legacy' });
      const wider = vggShapedArchitecture({ ...OPTIONS, blocks: [{ filters: 4, convs: 2 }, { filters: 9, convs: 1 }] });
      const err = await readKerasHdf5(path, { architecture: wider }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ModelError);
      expect((err as Error).message).toMatch(/layer "block2_conv1": block2_conv1_W_1:0 has shape \[3, 3, 4, 8\] but vgg-small needs \[3, 3, 4, 9\]/);
    });
  });

  it('says which VGG16 layer is missing when a small file is read as VGG16', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'w.h5');
      await writeKerasHdf5(path, spec, { style: 'modern' });
      await expect(readKerasHdf5(path)).rejects.toThrow(/no weights for layer "block2_conv2" of vgg16; the file has 5 weighted layers \(block1_conv1, block1_conv2, block2_conv1, fc1, predictions\)/);
    });
  });

  it('gives a clear error for truncated, empty, non-HDF5 and missing files', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'w.h5');
      await writeKerasHdf5(path, spec, { style: 'legacy' });
      const bytes = await readFile(path);
      for (const keep of [0.9, 0.5]) {
        const cut = join(dir, `cut-${keep}.h5`);
        await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length * keep)));
        const err = await readKerasHdf5(cut, { architecture: arch }).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(ModelError);
        expect((err as Error).message).toMatch(new RegExp(`${cut.replace(/[.]/g, '\\.')}: cannot open the file: truncated file: eof = \\d+.*download it again`));
        expect((err as Error).message).not.toMatch(/#00|H5F\.c/);
      }
      await writeFile(join(dir, 'empty.h5'), '');
      await expect(readKerasHdf5(join(dir, 'empty.h5'))).rejects.toThrow(/empty \(0 bytes\)/);
      await writeFile(join(dir, 'text.h5'), 'this is not hdf5');
      await expect(readKerasHdf5(join(dir, 'text.h5'))).rejects.toThrow(/is not an HDF5 file/);
      await expect(readKerasHdf5(join(dir, 'missing.h5'))).rejects.toBeInstanceOf(NotFoundError);
    });
  });

  it('recognises Keras 3 .weights.h5 files and says they are not supported', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'model.weights.h5');
      await h5wasm.ready;
      const file = new h5wasm.File(path, 'w');
      file.create_group('layers').create_group('conv2d').create_group('vars').create_dataset({ name: '0', data: new Float32Array(4), shape: [4] });
      file.create_group('vars');
      file.close();
      await expect(readKerasHdf5(path)).rejects.toThrow(/Keras 3 \.weights\.h5 file, which is not supported/);
    });
  });

  it('still opens good files after a failure (error handler restored, file closed)', async () => {
    await withTempDir(async (dir) => {
      const path = join(dir, 'w.h5');
      await writeKerasHdf5(path, spec, { style: 'legacy' });
      await copyFile(path, join(dir, 'copy.h5'));
      await writeFile(join(dir, 'bad.h5'), (await readFile(path)).subarray(0, 100));
      await expect(readKerasHdf5(join(dir, 'bad.h5'), { architecture: arch })).rejects.toThrow(ModelError);
      expectSameSpec(await readKerasHdf5(join(dir, 'copy.h5'), { architecture: arch }), spec);
    });
  });
});

describe('Keras HDF5 loader (files written by h5py, as Keras writes them)', () => {
  // scripts/weights/write_keras_h5.py: value = float32(0.1 * sin(0.37 i + 1.3 L + 0.7 j)).
  const fixtureArch = vggShapedArchitecture({ inputShape: [16, 16, 3], blocks: [{ filters: 4, convs: 1 }, { filters: 8, convs: 1 }], denseUnits: [16], classes: 5 });
  const formula = (layer: number, j: number, n: number): Float32Array =>
    Float32Array.from({ length: n }, (_, i) => 0.1 * Math.sin(0.37 * i + 1.3 * layer + 0.7 * j));

  it('reads both styles, fixed-length string attributes included, with the expected values', async () => {
    const fixtures = join(import.meta.dirname, '../../fixtures/model');
    const legacy = await readKerasHdf5(join(fixtures, 'h5py-legacy.h5'), { architecture: fixtureArch });
    const modern = await readKerasHdf5(join(fixtures, 'h5py-modern.h5'), { architecture: fixtureArch });
    expectSameSpec(modern, legacy);
    let weighted = 0;
    for (const layer of legacy.layers) {
      if (layer.type !== 'conv2d' && layer.type !== 'dense') continue;
      const kernel = formula(weighted, 0, layer.kernel.length);
      const bias = formula(weighted, 1, layer.bias!.length);
      // numpy and V8 sines may differ in the last float64 bit, which can flip a float32 rounding.
      for (let i = 0; i < kernel.length; i++) expect(Math.abs(layer.kernel[i]! - kernel[i]!)).toBeLessThan(1e-8);
      for (let i = 0; i < bias.length; i++) expect(Math.abs(layer.bias![i]! - bias[i]!)).toBeLessThan(1e-8);
      weighted++;
    }
    expect(weighted).toBe(4);
  });
});

describe('Keras HDF5 loader on the full-size VGG16 layout', () => {
  // write_keras_h5.py: the structure of vgg16_weights_tf_dim_ordering_tf_kernels.h5 with
  // unallocated datasets (40 KB), so the real names and shapes are checked without 553 MB.
  const fixtures = join(import.meta.dirname, '../../fixtures/model');

  it('matches every layer of keras.applications.VGG16 by name and shape, 138,357,544 params', async () => {
    const inspection = await inspectKerasHdf5(join(fixtures, 'vgg16-hollow.h5'));
    expect(inspection.architecture.name).toBe('vgg16');
    expect(inspection.fullModel).toBe(false);
    expect(inspection.params).toBe(138_357_544);
    expect(inspection.layers).toHaveLength(16);
    const fc1 = inspection.layers.find((l) => l.name === 'fc1');
    expect(fc1?.datasets).toEqual([{ name: 'fc1_W_1:0', shape: [25088, 4096] }, { name: 'fc1_b_1:0', shape: [4096] }]);
    expect(inspection.layers[0]?.datasets[0]).toEqual({ name: 'block1_conv1_W_1:0', shape: [3, 3, 3, 64] });
  });

  it('names the VGG16 layer whose kernel has the wrong shape', async () => {
    const path = join(fixtures, 'vgg16-hollow-bad-block4_conv2.h5');
    await expect(inspectKerasHdf5(path)).rejects.toThrow(/layer "block4_conv2": block4_conv2_W_1:0 has shape \[3, 3, 256, 512\] but vgg16 needs \[3, 3, 512, 512\]/);
    // The full read fails the same way, before allocating 553 MB.
    await expect(readKerasHdf5(path)).rejects.toThrow(/layer "block4_conv2"/);
  });
});
