/**
 * `gradcam-audit report` and `gradcam-audit compare` as processes. A run is named by its id (its
 * output prefix comes from the run record in Redis) or directly by its output prefix
 * (`s3://bucket/prefix/`, no Redis needed). Both read the run's manifest.jsonl as a stream.
 */
import { COMPARE_FILE, COMPARE_HTML_FILE } from '../shared/audit/files.js';
import { folderSink } from '../shared/audit/run-analysis.js';
import { analyseRunManifest, compareLocation, compareRunManifests, s3Sink, writeCompare, type RunOutputRef } from '../shared/audit/s3-analysis.js';
import { loadConfig } from '../shared/config.js';
import { ConfigError } from '../shared/errors.js';
import { validateRunId } from '../shared/queue/contract.js';
import { s3StreamUploader } from '../shared/run-finalizer.js';
import { parseS3Prefix } from '../shared/storage/uri.js';
import { connectProducer, openStore } from './connections.js';

export interface ReportCliFlags {
  out?: string;
  json?: boolean;
}

export interface CompareCliFlags {
  out?: string;
  json?: boolean;
}



/** Run ids → output prefixes (Redis is asked only when an argument is a run id). */
async function resolveRuns(args: { value: string; what: string }[]): Promise<RunOutputRef[]> {
  const ids = args.filter((a) => !a.value.startsWith('s3://'));
  const out = new Map<string, RunOutputRef>();
  for (const a of args.filter((x) => x.value.startsWith('s3://'))) {
    const output = parseS3Prefix(a.value, a.what);
    const folder = output.key.replace(/\/$/, '');
    out.set(a.value, { runId: folder.slice(folder.lastIndexOf('/') + 1) || output.bucket, output: { bucket: output.bucket, key: folder === '' ? '' : `${folder}/` } });
  }
  if (ids.length > 0) {
    for (const a of ids) validateRunId(a.value, a.what);
    const conn = await connectProducer(loadConfig(), `gca-report-${process.pid}`);
    try {
      for (const a of ids) {
        const run = await conn.runs.getRun(a.value);
        if (run === null) throw new ConfigError(a.what, `no run "${a.value}" in Redis; name it by its output prefix (s3://bucket/prefix/) instead`);
        const output = parseS3Prefix(run.output, `output of run ${a.value}`);
        out.set(a.value, { runId: a.value, output });
      }
    } finally {
      await conn.close();
    }
  }
  return args.map((a) => out.get(a.value) as RunOutputRef);
}

export async function runReportCli(run: string, flags: ReportCliFlags): Promise<void> {
  const [ref] = await resolveRuns([{ value: run, what: 'RUN_ID' }]);
  const config = loadConfig();
  const store = openStore(config);
  try {
    const upload = s3StreamUploader(store.client);
    const { audit, files, location } = await analyseRunManifest(store, upload, ref, flags.out !== undefined ? folderSink(flags.out) : undefined);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify({ runId: ref.runId, location, files, counts: audit.counts, flagCounts: audit.flagCounts }, null, 2)}\n`);
      return;
    }
    const flagged = Object.entries(audit.flagCounts).filter(([, n]) => n > 0);
    const flagText = flagged.length === 0 ? 'no flags' : flagged.map(([k, n]) => `${n} ${k}`).join(', ');
    process.stdout.write(`audit of run ${ref.runId}: ${audit.counts.images} images (${audit.counts.failed} failed), ${flagText}\n  wrote ${files.join(', ')} to ${location}\n`);
    for (const f of audit.flags.filter((x) => x.subject.type === 'class')) process.stdout.write(`  ${f.kind}: ${f.message}\n`);
  } finally {
    store.destroy();
  }
}

export async function runCompareCli(runA: string, runB: string, flags: CompareCliFlags): Promise<void> {
  const [a, b] = await resolveRuns([
    { value: runA, what: 'RUN_A' },
    { value: runB, what: 'RUN_B' },
  ]);
  const store = openStore(loadConfig());
  try {
    const report = await compareRunManifests(store, a, b);
    const sink = flags.out !== undefined ? folderSink(flags.out) : s3Sink(s3StreamUploader(store.client), compareLocation(a, b));
    await writeCompare(sink, report);
    if (flags.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
      return;
    }
    const pct = (x: number | null): string => (x === null ? '–' : `${(x * 100).toFixed(1)}%`);
    const lines = [
      `compare ${a.runId} (A) with ${b.runId} (B): ${report.counts.both} images in both (${report.counts.onlyA} only in A, ${report.counts.onlyB} only in B)`,
      `  same top-1 class: ${pct(report.agreement)}; map rank correlation: mean ${report.similarity.rankCorrelation.mean ?? '–'}; top-20% IoU: mean ${report.similarity.topIou.mean ?? '–'}`,
      '  classes whose attention moved most:',
      ...report.classes.slice(0, 5).map((c, i) => `    ${i + 1}. ${c.class.label ?? `#${c.class.index}`}: moved ${c.movement.toFixed(3)} (ρ ${c.rankCorrelation ?? '–'}), same top-1 ${pct(c.agreement)}, ${c.images} images`),
      '  images that changed most:',
      ...report.images.slice(0, 5).map((im) => `    ${im.key}: ${im.a.top1?.label ?? im.a.top1?.index ?? '–'} → ${im.b.top1?.label ?? im.b.top1?.index ?? '–'}, ρ ${im.rankCorrelation ?? '–'}`),
      `  wrote ${COMPARE_FILE} and ${COMPARE_HTML_FILE} to ${sink.location}`,
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    store.destroy();
  }
}
