import { describe, expect, it } from 'vitest';
import { AccessDeniedError, InvalidInputError } from '../../../src/shared/errors.js';
import { DEFAULT_EXPLAIN_OPTIONS } from '../../../src/shared/explain-options.js';
import type { RunRecord } from '../../../src/shared/queue/run-store.js';
import { resolveRunObject, safeContentType } from '../../../src/dashboard/object-proxy.js';

const run = (source: string, output: string): RunRecord => ({
  id: 'r1',
  source,
  output,
  options: { ...DEFAULT_EXPLAIN_OPTIONS, overlayFormat: 'webp' },
  optionsHash: '',
  model: '',
  state: 'running',
  total: 1,
  done: 0,
  failed: 0,
  degenerate: 0,
  enqueueComplete: true,
  createdAt: '',
  epoch: 'e1',
  cursor: '',
  listed: true,
  manifestWritten: false,
  generation: 0,
});

describe('resolveRunObject', () => {
  const r = run('s3://photos/in/', 's3://audits/out/r1/');

  it('maps a source key to the original and to its escaped outputs in the output bucket', () => {
    expect(resolveRunObject(r, 'original', 'in/a b+%.jpg')).toEqual({ bucket: 'photos', key: 'in/a b+%.jpg' });
    expect(resolveRunObject(r, 'overlay', 'in/a b+%.jpg')).toEqual({ bucket: 'audits', key: 'out/r1/overlays/in/a b+%25.jpg.webp' });
    expect(resolveRunObject(r, 'heatmap', 'in/x.png')).toEqual({ bucket: 'audits', key: 'out/r1/heatmaps/in/x.png.png' });
    expect(resolveRunObject(r, 'prediction', 'in/x.png')).toEqual({ bucket: 'audits', key: 'out/r1/predictions/in/x.png.json' });
  });

  it('refuses keys outside the source prefix and dot segments for every role', () => {
    for (const key of ['other/a.jpg', 'in/../secret.txt', 'in/./a.jpg', '../in/a.jpg', 'inbox/a.jpg']) {
      for (const role of ['original', 'overlay', 'heatmap', 'prediction'] as const) {
        expect(() => resolveRunObject(r, role, key), `${role} ${key}`).toThrow(AccessDeniedError);
      }
    }
    expect(() => resolveRunObject(r, 'original', '')).toThrow(InvalidInputError);
    expect(() => resolveRunObject(r, 'original', 'in/a\0b')).toThrow(InvalidInputError);
  });

  it('treats a source prefix without a trailing slash as the producer listed it', () => {
    const loose = run('s3://photos/in', 's3://audits/out/r1');
    expect(resolveRunObject(loose, 'original', 'in/a.jpg').key).toBe('in/a.jpg');
    expect(resolveRunObject(loose, 'original', 'inbox/a.jpg').key).toBe('inbox/a.jpg');
    expect(resolveRunObject(loose, 'overlay', 'in/a.jpg').key).toBe('out/r1/overlays/in/a.jpg.webp');
    expect(() => resolveRunObject(loose, 'original', 'other/a.jpg')).toThrow(AccessDeniedError);
  });
});

describe('safeContentType', () => {
  it('passes image and JSON types by extension and downloads everything else', () => {
    expect(safeContentType('a/b.JPG')).toEqual({ type: 'image/jpeg', inline: true });
    expect(safeContentType('a/b.webp').type).toBe('image/webp');
    expect(safeContentType('p.json').type).toBe('application/json; charset=utf-8');
    // SVG and HTML can carry scripts: never rendered from the dashboard's origin.
    expect(safeContentType('x.svg')).toEqual({ type: 'application/octet-stream', inline: false });
    expect(safeContentType('x.html')).toEqual({ type: 'application/octet-stream', inline: false });
  });
});
