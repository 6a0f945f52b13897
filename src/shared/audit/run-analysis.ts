/**
 * A run's analysis files from its manifest lines, in one streamed pass: `audit.json`,
 * `metrics.parquet` (uploaded while the lines still arrive) and `report.html`. The finalizer feeds
 * it the lines it merges at the end of every run; `gradcam-audit report` feeds it a finished run's
 * manifest.jsonl. Where the files go (S3 or a local folder) and how thumbnails are made are
 * injected, so the same code serves both.
 */
import { createWriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { AuditOptions } from './audit-options.js';
import { AuditAccumulator } from './accumulator.js';
import { AUDIT_FILE, METRICS_PARQUET_FILE, REPORT_FILE } from './files.js';
import { MetricsParquetWriter } from './parquet-table.js';
import { renderReportHtml, type ReportOptions } from './report-html.js';
import type { AuditLine, AuditReport } from './types.js';


/** Writes one named file of the run's analysis. */
export interface AnalysisSink {
  put(name: string, body: Readable, contentType: string): Promise<void>;
  /** Where the files end up, for messages (an s3:// prefix or a folder). */
  readonly location: string;
}

/** A sink into a local folder. */
export function folderSink(dir: string): AnalysisSink {
  return {
    location: dir,
    async put(name, body) {
      await mkdir(dir, { recursive: true });
      await pipeline(body, createWriteStream(path.join(dir, name)));
    },
  };
}

export interface RunAnalysisContext {
  runId: string;
  sink: AnalysisSink;
  /** The run's output prefix: report links to overlays become relative to it. */
  outputUri?: string;
  classLabels?: readonly string[];
  /** A thumbnail data URI for a flagged image's overlay (null when it cannot be read). */
  thumbnail?: (overlayUri: string) => Promise<string | null>;
  about?: ReportOptions['about'];
  options?: Partial<AuditOptions>;
  /** Rows per Parquet row group. */
  rowGroupSize?: number;
  now?: () => Date;
}

export interface RunAnalysisResult {
  audit: AuditReport;
  files: string[];
}

export class RunAnalysis {
  private readonly acc: AuditAccumulator;
  private readonly parquet: MetricsParquetWriter;
  private readonly parquetStream = new PassThrough({ highWaterMark: 1 << 20 });
  private readonly parquetUpload: Promise<void>;

  constructor(private readonly ctx: RunAnalysisContext) {
    this.acc = new AuditAccumulator({ runId: ctx.runId, classLabels: ctx.classLabels, now: ctx.now }, ctx.options);
    this.parquet = new MetricsParquetWriter((chunk) => this.writeParquet(chunk), { rowGroupSize: ctx.rowGroupSize });
    this.parquetUpload = ctx.sink.put(METRICS_PARQUET_FILE, this.parquetStream, 'application/vnd.apache.parquet');
    // Observed now, awaited in finish(): an upload failing early must not be an unhandled rejection.
    this.parquetUpload.catch(() => undefined);
  }

  /** Backpressure: resolve once the upload has taken the chunk (or has room for it). */
  private async writeParquet(chunk: Uint8Array): Promise<void> {
    if (chunk.length === 0) return;
    if (!this.parquetStream.write(chunk)) {
      await new Promise<void>((resolve, reject) => {
        const done = (): void => {
          this.parquetStream.off('error', fail);
          resolve();
        };
        const fail = (err: Error): void => {
          this.parquetStream.off('drain', done);
          reject(err);
        };
        this.parquetStream.once('drain', done);
        this.parquetStream.once('error', fail);
      });
    }
  }

  async add(line: AuditLine): Promise<void> {
    this.acc.add(line);
    await this.parquet.add(line);
  }

  async finish(): Promise<RunAnalysisResult> {
    await this.parquet.finish();
    this.parquetStream.end();
    await this.parquetUpload;
    const audit = this.acc.finish();
    await this.ctx.sink.put(AUDIT_FILE, Readable.from([Buffer.from(`${JSON.stringify(audit, null, 1)}\n`)]), 'application/json');
    const thumbnails = await this.thumbnails(audit);
    const html = renderReportHtml(audit, { outputUri: this.ctx.outputUri, thumbnails, about: this.ctx.about });
    await this.ctx.sink.put(REPORT_FILE, Readable.from([Buffer.from(html)]), 'text/html; charset=utf-8');
    return { audit, files: [METRICS_PARQUET_FILE, AUDIT_FILE, REPORT_FILE] };
  }

  /** Thumbnails of the flagged images, a few at a time. */
  private async thumbnails(audit: AuditReport): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const make = this.ctx.thumbnail;
    if (make === undefined) return out;
    const todo = new Map<string, string>();
    for (const f of audit.flags) if (f.subject.type === 'image' && f.subject.overlay !== undefined) todo.set(f.subject.key, f.subject.overlay);
    const entries = [...todo.entries()];
    const workers = Array.from({ length: Math.min(8, entries.length) }, async () => {
      for (let e = entries.shift(); e !== undefined; e = entries.shift()) {
        const [key, uri] = e;
        const data = await make(uri).catch(() => null);
        if (data !== null) out.set(key, data);
      }
    });
    await Promise.all(workers);
    return out;
  }
}

/** Analyse a whole stream of lines (a finished run's manifest). */
export async function analyseLines(lines: AsyncIterable<AuditLine>, ctx: RunAnalysisContext): Promise<RunAnalysisResult> {
  const analysis = new RunAnalysis(ctx);
  for await (const line of lines) await analysis.add(line);
  return analysis.finish();
}

/** The lines of a manifest.jsonl stream; a malformed line names its number. */
export async function* readManifestLines(stream: Readable, where: string): AsyncGenerator<AuditLine> {
  let n = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
    n++;
    if (text.trim() === '') continue;
    let line: unknown;
    try {
      line = JSON.parse(text);
    } catch (err) {
      throw new Error(`${where}:${n}: not a manifest line (${(err as Error).message})`);
    }
    const l = line as AuditLine;
    if (typeof l?.key !== 'string' || (l.status !== 'ok' && l.status !== 'failed')) throw new Error(`${where}:${n}: a manifest line needs "key" and "status"`);
    yield l;
  }
}
