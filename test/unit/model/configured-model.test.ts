/**
 * `resolveConfiguredModel` and `loadHintsOf`: the one way `explain`, `worker` and `doctor` resolve
 * their model (flags, then the model card, then the format's default) and what they hand the
 * weights loader. Real files in a temporary folder.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadHintsOf, resolveConfiguredModel } from '../../../src/worker/model/model-card.js';

const HDF5 = Buffer.concat([Buffer.from('\x89HDF\r\n\x1a\n', 'latin1'), Buffer.alloc(64, 1)]);
/** A local model never needs S3: reading the settings would fail a command that has none. */
const noS3 = (): never => {
  throw new Error('S3 settings read for a local model');
};

describe('resolveConfiguredModel', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'gca-configured-model-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const weightsWith = (name: string, card?: object): string => {
    const weights = join(dir, `${name}.h5`);
    writeFileSync(weights, HDF5);
    if (card) writeFileSync(join(dir, `${name}.model.json`), JSON.stringify(card));
    return weights;
  };

  it("defaults: no card and no flags leave the loader its own defaults (vgg16 224x224) and caffe preprocessing", async () => {
    const resolved = await resolveConfiguredModel(weightsWith('plain'), {}, noS3);
    expect(resolved.setup).toMatchObject({ format: 'keras-h5', preprocessing: { mode: 'caffe', centerCrop: false }, preprocessFrom: 'default', card: null });
    expect(loadHintsOf(resolved.setup)).toEqual({});
    // Explain skips the identity (no run to match; it would hash the weights).
    expect(resolved).not.toHaveProperty('identity');
  });

  it("the card's architecture and inputSize reach the loader, and the architecture picks the default preprocessing", async () => {
    const weights = weightsWith('carded', { architecture: 'densenet121', inputSize: [160, 192], centerCrop: true });
    const { setup, identity } = await resolveConfiguredModel(weights, {}, noS3, { identity: true });
    expect(loadHintsOf(setup)).toEqual({ architecture: 'densenet121', inputSize: [160, 192] });
    expect(setup).toMatchObject({ preprocessing: { mode: 'torch', centerCrop: true }, preprocessFrom: 'default' });
    expect(identity.architecture).toBe('densenet121 160x192');
  });

  it('flags win over the card field by field; the input size stays the card\'s', async () => {
    const weights = weightsWith('overridden', { architecture: 'densenet121', inputSize: [160, 192], centerCrop: true, preprocess: 'raw' });
    const byArchitecture = await resolveConfiguredModel(weights, { architecture: 'mobilenetv2', centerCrop: false }, noS3);
    expect(loadHintsOf(byArchitecture.setup)).toEqual({ architecture: 'mobilenetv2', inputSize: [160, 192] });
    // The card's preprocess still beats the default of the flag's architecture ...
    expect(byArchitecture.setup).toMatchObject({ preprocessing: { mode: 'raw', centerCrop: false }, preprocessFrom: 'model card' });
    // ... and the flag beats the card.
    const byFlag = await resolveConfiguredModel(weights, { preprocess: 'tf' }, noS3);
    expect(byFlag.setup).toMatchObject({ preprocessing: { mode: 'tf', centerCrop: true }, preprocessFrom: 'flag' });
  });
});
