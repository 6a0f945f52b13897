/**
 * Ground-truth files: the three formats, the errors that name file and line, key matching on the
 * longest tail, labels by path segment, and label → class matching by index, wnid and name.
 */
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { LabelMatcher } from '../../../src/shared/audit/label-matcher.js';
import { parseTruthFlags } from '../../../src/producer/truth/load-truth.js';
import { PathTruth, TruthIndex } from '../../../src/producer/truth/truth-index.js';
import { parseCoco, parseCsv, parseJsonl, TruthFileError, type TruthRow } from '../../../src/producer/truth/truth-parsers.js';
import { ConfigError } from '../../../src/shared/errors.js';

async function rows(gen: AsyncGenerator<TruthRow>): Promise<TruthRow[]> {
  const out: TruthRow[] = [];
  for await (const r of gen) out.push(r);
  return out;
}
const csv = (text: string) => rows(parseCsv(Readable.from([text]), 'truth.csv'));
const jsonl = (text: string) => rows(parseJsonl(Readable.from([text]), 'truth.jsonl'));

describe('truth parsers', () => {
  it('reads CSV with a header, quoted keys holding commas, quotes and line breaks, and one row per box', async () => {
    const text = 'key,label,x0,y0,x1,y1\r\n"a,b.jpg",cat,1,2,10,20\n"q""uote.jpg",dog\n\n"multi\nline.png", tabby_cat ,0,0,5,5\n';
    const r = await csv(text);
    expect(r).toEqual([
      { key: 'a,b.jpg', label: 'cat', boxes: [[1, 2, 10, 20]], line: 2 },
      { key: 'q"uote.jpg', label: 'dog', boxes: [], line: 3 },
      { key: 'multi\nline.png', label: 'tabby_cat', boxes: [[0, 0, 5, 5]], line: 5 },
    ]);
    // An unquoted key with a comma shifts the fields: caught, not misread.
    await expect(csv('a,b.jpg,cat,3,4,5,6\n')).rejects.toThrow(/got 7/);
    await expect(csv('key,label\nx.jpg,cat,1,2,3\n')).rejects.toThrow(/truth\.csv:2: expected key,label or key,label,x0,y0,x1,y1 \(2 or 6 fields\), got 5/);
  });

  it('names file and line for every kind of bad row', async () => {
    const bad: [string, RegExp][] = [
      ['x.jpg,\n', /truth\.csv:1: label must be a non-empty string/],
      ['ok.jpg,cat\nx.jpg,cat,5,5,1,9\n', /truth\.csv:2: box \[5, 5, 1, 9\] is empty: need x1 > x0 and y1 > y0/],
      ['x.jpg,cat,-1,0,4,4\n', /truth\.csv:1: .*x0 and y0 must be ≥ 0/],
      ['x.jpg,cat,a,0,4,4\n', /truth\.csv:1: box must be 4 finite numbers/],
      ['"x.jpg,cat\n', /truth\.csv:1: a quoted field is never closed/],
      ['x"y.jpg,cat\n', /truth\.csv:1: a quote inside an unquoted field/],
    ];
    for (const [text, re] of bad) {
      const err = await csv(text).catch((e: unknown) => e);
      expect(err, text).toBeInstanceOf(TruthFileError);
      expect(err).toBeInstanceOf(ConfigError);
      expect(String((err as Error).message)).toMatch(re);
    }
  });

  it('reads JSONL and rejects malformed lines with their number', async () => {
    expect(await jsonl('{"key":"a.jpg","label":"cat","boxes":[[1,2,3,4],[0,0,9,9]]}\n\n{"key":"b.jpg","label":3}\n')).toEqual([
      { key: 'a.jpg', label: 'cat', boxes: [[1, 2, 3, 4], [0, 0, 9, 9]], line: 1 },
      { key: 'b.jpg', label: '3', boxes: [], line: 3 },
    ]);
    await expect(jsonl('{"key":"a.jpg","label":"cat"}\n{"key":"b.jpg","label":"x","boxes":[[1,2,3]]}\n')).rejects.toThrow(/truth\.jsonl:2: boxes\[0\] must be 4 numbers/);
    await expect(jsonl('{"key":"a.jpg"\n')).rejects.toThrow(/truth\.jsonl:1: not JSON/);
    await expect(jsonl('["a.jpg","cat"]\n')).rejects.toThrow(/truth\.jsonl:1: expected an object/);
  });

  it('reads COCO: file names, category names, bbox as x, y, w, h', () => {
    const coco = {
      images: [{ id: 1, file_name: 'val/0001.jpg' }, { id: 2, file_name: '0002.jpg' }, { id: 3, file_name: 'unannotated.jpg' }],
      categories: [{ id: 7, name: 'cat' }, { id: 9, name: 'dog' }],
      annotations: [
        { image_id: 1, category_id: 7, bbox: [10, 20, 30, 40] },
        { image_id: 1, category_id: 7, bbox: [0, 0, 5, 5] },
        { image_id: 2, category_id: 9 },
      ],
    };
    expect(parseCoco(JSON.stringify(coco), 'c.json')).toEqual([
      { key: 'val/0001.jpg', label: 'cat', boxes: [[10, 20, 40, 60], [0, 0, 5, 5]], line: 0 },
      { key: '0002.jpg', label: 'dog', boxes: [], line: 0 },
    ]);
    expect(() => parseCoco(JSON.stringify({ ...coco, annotations: [{ image_id: 5, category_id: 7 }] }), 'c.json')).toThrow(/c\.json: annotations\[0\] refers to image_id 5/);
    expect(() => parseCoco(JSON.stringify({ ...coco, annotations: [...coco.annotations, { image_id: 2, category_id: 7 }] }), 'c.json')).toThrow(/"0002\.jpg" has annotations of 2 categories/);
    expect(() => parseCoco('{"images": []}', 'c.json')).toThrow(/not a COCO file/);
  });
});

describe('truth index', () => {
  it('matches listed keys on the longest tail and merges box rows of one key', () => {
    const idx = new TruthIndex('t.csv');
    idx.add({ key: 's3://bucket/photos/cats/1.jpg', label: 'cat', boxes: [[0, 0, 2, 2]], line: 1 });
    idx.add({ key: 'photos/cats/1.jpg', label: 'cat', boxes: [[1, 1, 3, 3]], line: 2 });
    idx.add({ key: 'dogs/2.jpg', label: 'dog', boxes: [], line: 3 });
    idx.add({ key: '3.jpg', label: 'bird', boxes: [], line: 4 });
    idx.add({ key: 'unused.jpg', label: 'fish', boxes: [], line: 5 });
    expect(idx.lookup('photos/cats/1.jpg')).toEqual({ label: 'cat', boxes: [[0, 0, 2, 2], [1, 1, 3, 3]] });
    expect(idx.lookup('photos/dogs/2.jpg')).toEqual({ label: 'dog' }); // relative to the prefix
    expect(idx.lookup('photos/birds/3.jpg')).toEqual({ label: 'bird' }); // COCO file_name
    expect(idx.lookup('photos/cats/9.jpg')).toBeUndefined();
    expect(idx.unused()).toBe(1);
    expect(() => idx.add({ key: 'dogs/2.jpg', label: 'wolf', boxes: [], line: 9 })).toThrow(/t\.csv:9: key "dogs\/2\.jpg" is labelled "wolf" here but "dog" on line 3/);
  });

  it('takes the label from a path segment', () => {
    expect(new PathTruth(-2).lookup('train/cat/1.jpg')).toEqual({ label: 'cat' });
    expect(new PathTruth(0).lookup('train/cat/1.jpg')).toEqual({ label: 'train' });
    expect(new PathTruth(-4).lookup('train/cat/1.jpg')).toBeUndefined();
  });

  it('validates the truth flags before any I/O', () => {
    expect(parseTruthFlags({ truth: 's3://bkt/t.jsonl' })).toEqual({ kind: 'file', uri: 's3://bkt/t.jsonl', format: 'jsonl' });
    expect(parseTruthFlags({ truth: 'labels.txt', truthFormat: 'csv' })).toEqual({ kind: 'file', uri: 'labels.txt', format: 'csv' });
    expect(parseTruthFlags({ truthFromPath: '-2' })).toEqual({ kind: 'path', segment: -2 });
    expect(parseTruthFlags({})).toBeUndefined();
    expect(() => parseTruthFlags({ truth: 'labels.txt' })).toThrow(/--truth: cannot tell the format/);
    expect(() => parseTruthFlags({ truth: 'a.csv', truthFromPath: '1' })).toThrow(/either --truth or --truth-from-path/);
    expect(() => parseTruthFlags({ truthFromPath: 'parent' })).toThrow(/--truth-from-path: expected a path segment index/);
    expect(() => parseTruthFlags({ truth: 'a.csv', truthFormat: 'xml' })).toThrow(/--truth-format: expected one of csv, jsonl, coco/);
  });
});

describe('label matching', () => {
  const m = new LabelMatcher(
    [{ label: 'tench', wnid: 'n01440764' }, { label: 'tabby cat', wnid: 'n02123045' }, { label: 'crane', wnid: 'n02012849' }, { label: 'crane', wnid: 'n03126707' }],
    4,
  );
  it('matches by index, wnid and name, ignoring case, underscores and spacing', () => {
    expect(m.match('1')).toBe(1);
    expect(m.match('N02123045')).toBe(1);
    expect(m.match('Tabby_Cat')).toBe(1);
    expect(m.match('  tabby   cat ')).toBe(1);
    expect(m.match('TENCH')).toBe(0);
  });
  it('matches nothing for unknown, out-of-range or ambiguous labels', () => {
    expect(m.match('4')).toBeNull();
    expect(m.match('unicorn')).toBeNull();
    expect(m.match('crane')).toBeNull();
    expect(m.match('n03126707')).toBe(3);
  });
});
