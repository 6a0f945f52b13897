/**
 * metrics.parquet read back by an independent implementation (DuckDB): every column, nulls, the
 * atlas bytes, several row groups, and bounded buffering (the sink sees row groups as they fill).
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { decodeAtlas } from '../../../src/shared/audit/image-metrics.js';
import { MetricsParquetWriter, PARQUET_COLUMNS } from '../../../src/shared/audit/parquet-table.js';
import type { AuditLine } from '../../../src/shared/audit/types.js';
import { lineFor, sceneRun } from './helpers.js';

describe('metrics.parquet', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'gca-parquet-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('round-trips through DuckDB with every column, nulls and several row groups', async () => {
    const lines: AuditLine[] = sceneRun(5, 3);
    lines.push(lineFor({ key: 'deg.png', predicted: 2, prob: 0.6, x: 0.5, y: 0.5, degenerate: true }));
    lines.push(lineFor({ key: 'weird "key", with ünïcode.png', predicted: 1, prob: 0.7, x: 0.2, y: 0.8, truth: { index: null, label: 'hexagon' } }));
    lines.push({ key: 'broken.jpg', status: 'failed', error: 'InvalidInputError: truncated JPEG' });
    const chunks: Uint8Array[] = [];
    const flushesAt: number[] = [];
    const writer = new MetricsParquetWriter(async (c) => {
      chunks.push(c);
      flushesAt.push(writer.count);
    }, { rowGroupSize: 8 });
    for (const l of lines) await writer.add(l);
    await writer.finish();
    // Bytes leave after each full row group, not only at the end.
    expect(flushesAt.slice(0, 3)).toEqual([8, 16, 24]);
    const file = path.join(dir, 'metrics.parquet');
    await writeFile(file, Buffer.concat(chunks));

    const db = await DuckDBInstance.create(':memory:');
    const conn = await db.connect();
    try {
      const meta = await conn.runAndReadAll(`select count(distinct row_group_id) as groups from parquet_metadata('${file}')`);
      expect(Number(meta.getRowObjects()[0].groups)).toBe(Math.ceil(lines.length / 8));
      const reader = await conn.runAndReadAll(`select * from read_parquet('${file}') order by key`);
      const rows = reader.getRowObjects();
      expect(reader.columnNames()).toEqual(PARQUET_COLUMNS.map((c) => c.name));
      expect(rows).toHaveLength(lines.length);
      const byKey = new Map(rows.map((r) => [String(r.key), r]));
      for (const l of lines) {
        const r = byKey.get(l.key);
        expect(r, l.key).toBeDefined();
        expect(r?.status).toBe(l.status);
        if (l.status === 'failed') {
          expect(r?.error).toBe(l.error);
          expect(r?.top1_prob).toBeNull();
          continue;
        }
        const m = l.metrics!;
        expect(r?.predicted_index).toBe(l.top1?.index);
        expect(r?.predicted_label).toBe(l.top1?.label);
        expect(r?.top1_prob).toBe(m.top1Prob);
        expect(r?.entropy).toBe(m.entropy);
        expect(r?.true_label).toBe(l.truth?.label ?? null);
        expect(r?.true_index).toBe(l.truth?.index ?? null);
        expect(r?.width).toBe(64);
        expect(r?.degenerate).toBe(l.degenerate === true);
        expect(r?.border_share).toBe(m.borderShare ?? null);
        expect(r?.corner_bottom_right).toBe(m.cornerBottomRight ?? null);
        expect(r?.pointing_hit).toBe(m.pointingHit ?? null);
        expect(r?.correct).toBe(m.correct ?? null);
        expect(r?.true_rank).toBe(m.trueRank ?? null);
        expect(r?.degenerate_reason).toBe(m.degenerate ?? null);
        expect(r?.overlay).toBe(l.outputs?.overlay);
        const atlas = decodeAtlas(m.atlas as string | undefined);
        if (atlas === null) expect(r?.atlas).toBeNull();
        else expect(Buffer.from((r?.atlas as { bytes: Uint8Array }).bytes).equals(Buffer.from(atlas))).toBe(true);
      }
      // The question a user asks in SQL: which classes sit in a corner?
      const q = await conn.runAndReadAll(`select predicted_label, avg(corner_bottom_right) as c from read_parquet('${file}') where status = 'ok' group by 1 order by 2 desc limit 1`);
      expect(q.getRowObjects()[0].predicted_label).toBeTypeOf('string');
    } finally {
      conn.closeSync();
    }
  });
});
