import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import {
  decodeTopK,
  imagenetClassIndexPath,
  loadImagenetLabels,
  loadLabels,
  parseLabels,
} from '../../../src/worker/model/labels.js';

describe('ImageNet labels', () => {
  it('reads the file that is byte-identical to Keras (md5 c2c37ea5...)', () => {
    const md5 = createHash('md5').update(readFileSync(imagenetClassIndexPath())).digest('hex');
    expect(md5).toBe('c2c37ea517e94d9795004a39431a14cb');
  });

  it('maps 513 to n03110669 cornet and keeps duplicate labels apart by index and wnid', async () => {
    const labels = await loadImagenetLabels();
    expect(labels).toHaveLength(1000);
    expect(labels[513]).toEqual({ wnid: 'n03110669', label: 'cornet' });
    expect(labels[134]!.label).toBe('crane');
    expect(labels[517]!.label).toBe('crane');
    expect(labels[134]!.wnid).not.toBe(labels[517]!.wnid);
    expect(labels[638]!.label).toBe('maillot');
    expect(labels[639]!.label).toBe('maillot');
  });

  it('decodes duplicate labels with distinct index and wnid', async () => {
    const labels = await loadImagenetLabels();
    const p = new Float32Array(1000);
    p[134] = 0.4;
    p[517] = 0.35;
    p[513] = 0.25;
    const top = decodeTopK(p, 3, labels);
    expect(top.map((t) => [t.index, t.wnid, t.label])).toEqual([
      [134, labels[134]!.wnid, 'crane'],
      [517, labels[517]!.wnid, 'crane'],
      [513, 'n03110669', 'cornet'],
    ]);
    expect(top[0]!.probability).toBeCloseTo(0.4, 6);
  });
});

describe('decodeTopK', () => {
  it('sorts by probability, breaks ties by lower index and clamps k', () => {
    const top = decodeTopK([0.1, 0.3, 0.3, 0.2, 0.1], 10, null);
    expect(top.map((t) => t.index)).toEqual([1, 2, 3, 0, 4]);
    expect(top[0]).toEqual({ index: 1, probability: 0.3 });
  });

  it('never ranks NaN first', () => {
    expect(decodeTopK([Number.NaN, 0.2, 0.8], 2, null).map((t) => t.index)).toEqual([2, 1]);
  });

  it('returns nothing for k = 0', () => {
    expect(decodeTopK([0.5, 0.5], 0, null)).toEqual([]);
  });
});

describe('label files', () => {
  const files: Record<string, string> = {
    'array.json': '["cat", "dog", "bird"]',
    'index.json': '{"1": ["n2", "dog"], "0": ["n1", "cat"], "2": ["n3", "bird"]}',
    'lines.txt': 'cat\r\ndog\n\nbird\n',
    'bad-key.json': '{"0": ["n1", "cat"], "5": ["n2", "dog"]}',
    'broken.json': '["cat", ',
  };
  const read = async (path: string): Promise<string> => {
    const text = files[path];
    if (text === undefined) throw new Error(`ENOENT: ${path}`);
    return text;
  };

  it('accepts a JSON array, the Keras class index format and one label per line', async () => {
    for (const file of ['array.json', 'index.json', 'lines.txt']) {
      const result = await loadLabels({ numClasses: 3, file, read });
      expect(result.labels?.map((l) => l.label), file).toEqual(['cat', 'dog', 'bird']);
      expect(result.warning).toBeNull();
    }
    expect((await loadLabels({ numClasses: 3, file: 'index.json', read })).labels?.[1]).toEqual({ wnid: 'n2', label: 'dog' });
  });

  it('rejects a count mismatch, bad keys, broken JSON and missing files as --labels errors', async () => {
    await expect(loadLabels({ numClasses: 4, file: 'array.json', read })).rejects.toThrow(/has 3 labels but the model outputs 4 classes/);
    await expect(loadLabels({ numClasses: 2, file: 'bad-key.json', read })).rejects.toThrow(/key "5"/);
    await expect(loadLabels({ numClasses: 2, file: 'broken.json', read })).rejects.toThrow(ConfigError);
    await expect(loadLabels({ numClasses: 2, file: 'missing.txt', read })).rejects.toThrow(/--labels: cannot read missing.txt/);
    expect(() => parseLabels('  \n', 'empty.txt')).toThrow(/no labels/);
  });

  it('falls back to index-only output, and says so, when a model is not 1000-class', async () => {
    const result = await loadLabels({ numClasses: 10 });
    expect(result.labels).toBeNull();
    expect(result.warning).toMatch(/10 classes.*index-only.*--labels/);
    expect((await loadLabels({ numClasses: 1000 })).source).toBe('imagenet');
  });
});
