/**
 * `metrics.parquet`: one row per image (DuckDB, pandas, Athena read it directly), written as a
 * stream. Rows are buffered one row group at a time, encoded by hyparquet-writer and handed to an
 * async sink that applies backpressure, so memory is bounded by the row group size however many
 * images the run has. Metric columns come from the one metric table (snake_case names).
 */
import { ByteWriter, ParquetWriter, schemaFromColumnData, type ColumnSource } from 'hyparquet-writer';
import { decodeAtlas } from './image-metrics.js';
import { METRIC_COLUMNS, METRICS_EXTRA_KEYS, metricText, metricValue, type MetricColumn } from './metric-table.js';
import type { AuditLine } from './types.js';

/** `top1Prob` → `top1_prob`. */
export function snakeCase(name: string): string {
  return name.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

type Cell = string | number | boolean | Uint8Array | null;

interface Column {
  name: string;
  type: 'STRING' | 'INT32' | 'DOUBLE' | 'BOOLEAN' | 'BYTE_ARRAY';
  get(line: AuditLine): Cell;
}

function metricCell(c: MetricColumn, line: AuditLine): Cell {
  const v = metricValue(c, line.metrics);
  if (v === undefined) return null;
  return c.kind === 'rate' ? v === 1 : v;
}

function intCell(line: AuditLine, key: string): Cell {
  const v = line.metrics?.[key];
  return typeof v === 'number' && Number.isInteger(v) ? v : null;
}

const str = (v: string | undefined | null): Cell => (v === undefined || v === null ? null : v);

/** The table's columns, in order. */
export const PARQUET_COLUMNS: readonly Column[] = [
  { name: 'key', type: 'STRING', get: (l) => l.key },
  { name: 'status', type: 'STRING', get: (l) => l.status },
  { name: 'error', type: 'STRING', get: (l) => str(l.error) },
  { name: 'predicted_index', type: 'INT32', get: (l) => l.top1?.index ?? null },
  { name: 'predicted_label', type: 'STRING', get: (l) => str(l.top1?.label) },
  { name: 'true_label', type: 'STRING', get: (l) => str(l.truth?.label) },
  { name: 'true_index', type: 'INT32', get: (l) => l.truth?.index ?? null },
  { name: 'boxes', type: 'INT32', get: (l) => (l.truth ? l.truth.boxes : null) },
  { name: 'width', type: 'INT32', get: (l) => intCell(l, METRICS_EXTRA_KEYS.imageWidth) },
  { name: 'height', type: 'INT32', get: (l) => intCell(l, METRICS_EXTRA_KEYS.imageHeight) },
  { name: 'degenerate', type: 'BOOLEAN', get: (l) => (l.status === 'ok' ? l.degenerate === true : null) },
  { name: 'degenerate_reason', type: 'STRING', get: (l) => str(metricText(l.metrics, METRICS_EXTRA_KEYS.degenerate)) },
  ...METRIC_COLUMNS.map((c): Column => ({ name: snakeCase(c.name), type: c.kind === 'rate' ? 'BOOLEAN' : c.kind === 'integer' ? 'INT32' : 'DOUBLE', get: (l) => metricCell(c, l) })),
  { name: 'atlas', type: 'BYTE_ARRAY', get: (l) => decodeAtlas(metricText(l.metrics, METRICS_EXTRA_KEYS.atlas)) },
  { name: 'overlay', type: 'STRING', get: (l) => str(l.outputs?.overlay) },
  { name: 'prediction', type: 'STRING', get: (l) => str(l.outputs?.prediction) },
];

/** Receives encoded bytes; the returned promise is awaited before more rows are encoded. */
export type ByteSink = (chunk: Uint8Array) => Promise<void>;

/** A ByteWriter that hands its bytes to the sink after every row group instead of growing. */
class SinkWriter extends ByteWriter {
  constructor(private readonly sink: ByteSink) {
    super(1 << 16);
  }

  flush(): Promise<void> {
    const chunk = new Uint8Array(this.buffer.slice(0, this.index));
    this.index = 0;
    return this.sink(chunk);
  }

  // hyparquet-writer's Writer contract allows finish() to return a promise (ParquetWriter.finish
  // returns it to its caller); ByteWriter's own declaration just says void.
  // eslint-disable-next-line @typescript-eslint/no-misused-promises
  override finish(): Promise<void> {
    return this.flush();
  }
}

export interface ParquetTableOptions {
  /** Rows per row group (and rows held in memory). Default 10,000. */
  rowGroupSize: number;
}

export class MetricsParquetWriter {
  private readonly writer: ParquetWriter;
  private rows: AuditLine[] = [];
  private readonly rowGroupSize: number;
  count = 0;

  constructor(sink: ByteSink, options: Partial<ParquetTableOptions> = {}) {
    this.rowGroupSize = options.rowGroupSize ?? 10_000;
    const schema = schemaFromColumnData({ columnData: PARQUET_COLUMNS.map((c) => ({ name: c.name, data: [], type: c.type, nullable: c.name !== 'key' && c.name !== 'status' })) });
    this.writer = new ParquetWriter({ writer: new SinkWriter(sink), schema, createdBy: 'gradcam-audit (hyparquet-writer)' });
  }

  async add(line: AuditLine): Promise<void> {
    this.rows.push(line);
    this.count++;
    if (this.rows.length >= this.rowGroupSize) await this.flushRows();
  }

  private async flushRows(): Promise<void> {
    if (this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    const columnData: ColumnSource[] = PARQUET_COLUMNS.map((c) => ({ name: c.name, data: rows.map((l) => c.get(l)), type: c.type, nullable: c.name !== 'key' && c.name !== 'status' }));
    await this.writer.write({ columnData, rowGroupSize: rows.length });
  }

  /** Write the last row group and the footer. */
  async finish(): Promise<void> {
    await this.flushRows();
    await this.writer.finish();
  }
}
