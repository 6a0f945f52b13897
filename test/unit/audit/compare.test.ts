/**
 * Run comparison on synthetic runs: the class whose attention moved comes first, agreement and
 * similarity are right, unmatched keys are counted, the merge join needs key order and the hash
 * join does not.
 */
import { describe, expect, it } from 'vitest';
import { CompareAccumulator, hashJoin, mergeJoin, UnorderedManifestError } from '../../../src/shared/audit/compare.js';
import type { AuditLine } from '../../../src/shared/audit/types.js';
import { sceneRun } from './helpers.js';

async function* from(lines: AuditLine[]): AsyncGenerator<AuditLine> {
  yield* lines;
}

async function compare(a: AuditLine[], b: AuditLine[], join = mergeJoin) {
  const acc = new CompareAccumulator({ a: 'clean', b: 'shortcut' }, { maxImages: 5 });
  for await (const [la, lb] of join(from(a), from(b))) acc.add(la, lb);
  return acc.finish();
}

describe('run comparison', () => {
  const clean = sceneRun(10, 1);
  // The same scenes; the second model adds heat in the bottom-right corner for class 3 and
  // changes its mind on one image.
  const shortcut = sceneRun(10, 1, (s, i) => ({ ...s, ...(s.predicted === 3 ? { cornerWeight: 1.5 } : {}), ...(i === 11 ? { predicted: 4 } : {}) }));

  it('names the class whose attention moved first, with both atlases and side-by-side corner shares', async () => {
    const r = await compare(clean, shortcut);
    expect(r.counts).toEqual({ both: 50, onlyA: 0, onlyB: 0, okInBoth: 50, mapsInBoth: 50 });
    expect(r.agreement).toBe(0.98);
    expect(r.classes[0].class).toEqual({ index: 3, label: 'star' });
    expect(r.classes[0].movement).toBeGreaterThan(0.1);
    expect(r.classes.slice(1).every((c) => c.movement < 1e-9 || c.class.index === 1)).toBe(true);
    expect(r.classes[0].metrics.cornerBottomRight.b!).toBeGreaterThan(r.classes[0].metrics.cornerBottomRight.a! + 0.2);
    expect(r.classes[0].atlasB![255]).toBeGreaterThan(r.classes[0].atlasA![255]);
    // The most changed image is the one whose prediction flipped.
    expect(r.images[0].key).toBe(clean[11].key);
    expect(r.images[0].change).toBeGreaterThanOrEqual(1);
    expect(r.images).toHaveLength(5);
    expect(r.similarity.rankCorrelation.n).toBe(50);
  });

  it('counts keys found in one run only', async () => {
    const r = await compare(clean.slice(0, 40), shortcut.slice(5));
    expect(r.counts).toMatchObject({ both: 35, onlyA: 5, onlyB: 10 });
  });

  it('merge join refuses manifests out of key order; the hash join takes them', async () => {
    const shuffled = [...shortcut].reverse();
    await expect(compare(clean, shuffled)).rejects.toBeInstanceOf(UnorderedManifestError);
    const r = await compare(clean, shuffled, hashJoin);
    expect(r.counts.both).toBe(50);
    expect(r.classes[0].class.index).toBe(3);
  });
});
