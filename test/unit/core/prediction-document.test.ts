import { describe, expect, it } from 'vitest';
import type { ImageManifest } from '../../../src/shared/manifest.js';
import { camRecordOf, encodePredictionDocument } from '../../../src/worker/core/prediction-document.js';
import { mulberry32 } from '../../../src/worker/model/random-weights.js';

describe('camRecordOf', () => {
  it('records every grid value to 1e-4, in order, as plain JSON numbers', () => {
    const rand = mulberry32(5);
    const grid = Float32Array.from({ length: 56 * 56 }, () => rand());
    grid[0] = 0;
    grid[1] = 1;
    grid[2] = 0.00005; // a tie at the fourth decimal in float32 terms
    const record = camRecordOf({ classIndex: 3, score: 1.5, height: 56, width: 56, grid, rawMax: 2, rawMean: 0.5, degenerate: null }, null);
    expect(Array.isArray(record.grid)).toBe(true);
    expect(record.grid).toHaveLength(56 * 56);
    // An independent rounding: the decimal string of each value to 4 places, compared within half a unit.
    record.grid.forEach((v, i) => expect(Math.abs(v - Number(grid[i].toFixed(4)))).toBeLessThanOrEqual(1e-4 + 1e-12));
    expect(record.grid.slice(0, 2)).toEqual([0, 1]);
    // Round trip through JSON keeps every value (no holes, no typed-array object).
    expect(JSON.parse(JSON.stringify(record.grid))).toEqual(record.grid);
    expect(record.grid.every((v) => Number.isFinite(v) && Math.round(v * 1e4) / 1e4 === v)).toBe(true);
  });
});

describe('encodePredictionDocument', () => {
  const grid = (n: number, k: number) => Array.from({ length: n }, (_, i) => Math.round(Math.abs(Math.sin(i * k)) * 1e4) / 1e4);
  const doc = (key: string) =>
    ({
      schema: 's',
      source: { uri: `s3://b/${key}`, bucket: 'b', key },
      targets: [
        { classIndex: 1, score: 2, gridHeight: 3, gridWidth: 4, grid: grid(12, 1), degenerate: null },
        { classIndex: 7, score: 1, gridHeight: 3, gridWidth: 4, grid: grid(12, 2), degenerate: 'flat' },
      ],
      timings: { decode: 1.5 },
    }) as unknown as ImageManifest;

  it('parses back to the document, indented, with each grid on one line', () => {
    const d = doc('photos/cat.jpg');
    const text = encodePredictionDocument(d).toString('utf8');
    expect(JSON.parse(text)).toEqual(d);
    expect(text.endsWith('}\n')).toBe(true);
    const gridLines = text.split('\n').filter((l) => l.includes('"grid":'));
    expect(gridLines).toEqual(d.targets.map((t) => `   "grid": ${JSON.stringify(t.grid)},`));
    expect(text).toContain('\n "source": {\n  "uri": "s3://b/photos/cat.jpg",'); // the rest as JSON.stringify(doc, null, 1)
  });

  it('writes a document whose strings read like its placeholders all indented, still exact', () => {
    for (const key of ['\u0000grid 0', '\u0000grid 1']) {
      const d = doc(key);
      const text = encodePredictionDocument(d).toString('utf8');
      expect(JSON.parse(text)).toEqual(d);
      expect(text).toBe(`${JSON.stringify(d, null, 1)}\n`);
    }
  });
});
