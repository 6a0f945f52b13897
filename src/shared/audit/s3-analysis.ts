/**
 * The run analysis on S3: a finished run's manifest.jsonl read as a stream, the files written under
 * the run's output prefix (streamed uploads), and report thumbnails made from the run's own
 * overlays. `gradcam-audit report` and the finalizer both analyse a run through
 * `analyseRunManifest`, so a report redone by hand is the one the run ended with.
 */
import { Readable } from 'node:stream';
import sharp from 'sharp';
import { describeError, NotFoundError } from '../errors.js';
import { silentLogger, type Logger } from '../logger.js';
import type { RunAnalysisRecord } from '../manifest.js';
import { MANIFEST_FILE, type RunAnalyser, type StreamUploader } from '../run-finalizer.js';
import type { ObjectStore } from '../storage/object-store.js';
import { formatS3Uri, joinKey, parseS3Prefix, parseS3Uri, type S3Location } from '../storage/uri.js';
import { CompareAccumulator, hashJoin, mergeJoin, UnorderedManifestError, type CompareReport } from './compare.js';
import { renderCompareHtml } from './compare-html.js';
import { COMPARE_FILE, COMPARE_HTML_FILE } from './files.js';
import { analyseLines, readManifestLines, type AnalysisSink, type RunAnalysisResult } from './run-analysis.js';
import type { AuditLine } from './types.js';

/** A run named by its id and its output prefix. */
export interface RunOutputRef {
  runId: string;
  output: S3Location;
}

export function s3Sink(upload: StreamUploader, output: S3Location): AnalysisSink {
  return {
    location: formatS3Uri(output),
    put: (name, body, contentType) => upload(output.bucket, joinKey(output.key, name), body, contentType),
  };
}

/** A sink through the ObjectStore's PUT: for small files written whole (the comparison's). */
export function storeSink(store: ObjectStore, output: S3Location): AnalysisSink {
  return {
    location: formatS3Uri(output),
    put: async (name, body, contentType) => {
      const chunks: Buffer[] = [];
      for await (const c of body) chunks.push(Buffer.from(c as Uint8Array));
      await store.put(output.bucket, joinKey(output.key, name), Buffer.concat(chunks), { contentType });
    },
  };
}

export interface ThumbnailOptions {
  /** Longer side in pixels. Default 96. */
  size: number;
  /** Largest overlay read, in bytes. Default 20 MiB. */
  maxBytes: number;
}

/** A JPEG data URI of an overlay, downscaled; null when it cannot be read or decoded. */
export function s3Thumbnail(store: ObjectStore, options: Partial<ThumbnailOptions> = {}): (uri: string) => Promise<string | null> {
  const size = options.size ?? 96;
  const maxBytes = options.maxBytes ?? 20 * 2 ** 20;
  return async (uri) => {
    try {
      const loc = parseS3Uri(uri, 'overlay');
      const object = await store.get(loc.bucket, loc.key, { maxBytes });
      const jpeg = await sharp(object.body, { limitInputPixels: 100_000_000, animated: false }).resize(size, size, { fit: 'inside', withoutEnlargement: true }).jpeg({ quality: 70 }).toBuffer();
      return `data:image/jpeg;base64,${jpeg.toString('base64')}`;
    } catch {
      return null;
    }
  };
}

/** The lines of a run's manifest.jsonl, streamed; a run without one gets an actionable error. */
export async function runManifestLines(store: ObjectStore, run: RunOutputRef): Promise<AsyncGenerator<AuditLine>> {
  const key = joinKey(run.output.key, MANIFEST_FILE);
  try {
    const { stream } = await store.getStream(run.output.bucket, key);
    return readManifestLines(stream, `s3://${run.output.bucket}/${key}`);
  } catch (err) {
    if (err instanceof NotFoundError) throw new NotFoundError(`run ${run.runId} has no ${MANIFEST_FILE} at ${formatS3Uri(run.output)}: it has not finished yet (see gradcam-audit status ${run.runId})`, { cause: err });
    throw err;
  }
}

/**
 * Analyse a finished run's manifest into audit.json, metrics.parquet and report.html, in `sink`
 * (default: the run's output prefix). One streamed pass: memory does not grow with the run.
 */
export async function analyseRunManifest(store: ObjectStore, upload: StreamUploader, run: RunOutputRef, sink: AnalysisSink = s3Sink(upload, run.output)): Promise<RunAnalysisResult & { location: string }> {
  const result = await analyseLines(await runManifestLines(store, run), {
    runId: run.runId,
    sink,
    outputUri: formatS3Uri(run.output),
    thumbnail: s3Thumbnail(store),
  });
  return { ...result, location: sink.location };
}

/**
 * The finalizer's analysis step: never throws. A failure is logged and returned as a record for
 * summary.json that says how to redo it, because the manifest is already written and must stand.
 */
export function s3RunAnalyser(store: ObjectStore, upload: StreamUploader, logger: Logger = silentLogger()): RunAnalyser {
  return async ({ runId, output }): Promise<RunAnalysisRecord> => {
    const started = performance.now();
    const seconds = (): number => Math.round(performance.now() - started) / 1000;
    try {
      const { audit, files, location } = await analyseRunManifest(store, upload, { runId, output: parseS3Prefix(output, `output of run ${runId}`) });
      const flags = Object.values(audit.flagCounts).reduce((a, n) => a + n, 0);
      logger.info({ runId, files, flags, flagCounts: audit.flagCounts, location, seconds: seconds() }, 'run analysis written');
      return { status: 'written', files, flags, seconds: seconds() };
    } catch (err) {
      const redo = `gradcam-audit report ${runId}`;
      logger.warn({ runId, err: describeError(err), redo }, `run analysis failed; the manifest stands, and \`${redo}\` redoes the analysis`);
      return { status: 'failed', error: describeError(err), seconds: seconds(), redo };
    }
  };
}

/** Where the comparison of run A with run B lives: `compare/<A>/` under B's output prefix. */
export function compareLocation(a: RunOutputRef, b: RunOutputRef): S3Location {
  return { bucket: b.output.bucket, key: joinKey(b.output.key, `compare/${a.runId}/`) };
}

/**
 * Compare two finished runs from their manifests. Manifests written in key order are merge-joined
 * in constant memory; older ones are joined in memory (run A's lines).
 */
export async function compareRunManifests(store: ObjectStore, a: RunOutputRef, b: RunOutputRef): Promise<CompareReport> {
  const run = async (join: typeof mergeJoin): Promise<CompareReport> => {
    const acc = new CompareAccumulator({ a: a.runId, b: b.runId });
    for await (const [la, lb] of join(await runManifestLines(store, a), await runManifestLines(store, b))) acc.add(la, lb);
    return acc.finish();
  };
  try {
    return await run(mergeJoin);
  } catch (err) {
    if (err instanceof UnorderedManifestError) return run(hashJoin);
    throw err;
  }
}

/** compare.json and compare.html into `sink`. */
export async function writeCompare(sink: AnalysisSink, report: CompareReport): Promise<string[]> {
  await sink.put(COMPARE_FILE, Readable.from([Buffer.from(`${JSON.stringify(report, null, 1)}\n`)]), 'application/json');
  await sink.put(COMPARE_HTML_FILE, Readable.from([Buffer.from(renderCompareHtml(report))]), 'text/html; charset=utf-8');
  return [COMPARE_FILE, COMPARE_HTML_FILE];
}
