/**
 * `enqueue` as a process: wires config, S3, Redis and BullMQ into the enqueue library, shows
 * progress on a TTY, prints one summary line (or JSON) on stdout, and closes every connection so
 * the process exits.
 */
import { s3RunAnalyser } from '../shared/audit/s3-analysis.js';
import { loadConfig } from '../shared/config.js';
import { describePreprocessing } from '../shared/preprocessing.js';
import { InterruptedError } from '../shared/errors.js';
import { createLogger } from '../shared/logger.js';
import { finalizeRun, s3StreamUploader } from '../shared/run-finalizer.js';
import { connectProducer, openStore } from './connections.js';
import { parseEnqueueRequest, resolveRunModel, type EnqueueFlags } from './enqueue-options.js';
import { enqueueRun, type EnqueueResult } from './enqueue.js';
import { createProgressLine, fmt } from './progress-line.js';

export interface EnqueueCliFlags extends EnqueueFlags {
  json?: boolean;
}

export async function runEnqueueCli(source: string, flags: EnqueueCliFlags): Promise<void> {
  // Validate every flag before touching the network: mistakes fail in milliseconds.
  const request = parseEnqueueRequest(source, flags);
  const config = loadConfig();
  const logger = createLogger({ level: config.logLevel, base: { component: 'enqueue', runId: request.runId } });
  const store = openStore(config);
  const progress = createProgressLine(process.stderr, request.dryRun ? 'dry run' : `enqueue ${request.runId}`);
  try {
    const setup = await resolveRunModel(request, store);
    if (setup) logger.info({ model: request.modelIdentity, card: setup.card?.uri ?? null }, 'the run needs this model; workers serving another leave its jobs');
    let result: EnqueueResult;
    if (request.dryRun) {
      // A dry run needs no Redis: it only lists.
      result = await enqueueRun(request, { store, logger, onProgress: (p) => progress.update(p) });
    } else {
      const conn = await connectProducer(config, `gca-enqueue-${process.pid}`, { store });
      // Ctrl-C or a pod's SIGTERM stops the listing between pages, so the enqueue ends its
      // re-listing lease and waits for its chunks in flight before the process goes (best effort:
      // the lease's expiry is what guarantees a killed producer costs Redis nothing). A second
      // signal exits at once.
      const stop = new AbortController();
      const onSignal = (signal: NodeJS.Signals): void => {
        if (stop.signal.aborted) process.exit(signal === 'SIGINT' ? 130 : 143);
        logger.warn({ signal }, 'stopping after the current page; send the signal again to exit at once');
        stop.abort(new InterruptedError(`enqueue of run ${request.runId} stopped by ${signal}; run the same command again to continue`));
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        const upload = s3StreamUploader(store.client);
        const finalizerDeps = { runs: conn.runs, redis: conn.redis, upload, logger, analyse: s3RunAnalyser(store, upload, logger) };
        result = await enqueueRun(request, {
          store,
          queue: conn.queue,
          runs: conn.runs,
          redis: conn.redis,
          finalize: (id) => finalizeRun(id, finalizerDeps),
          spill: { upload },
          logger,
          onProgress: (p) => progress.update(p),
          signal: stop.signal,
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await conn.close();
      }
    }
    progress.clear();
    process.stdout.write(flags.json ? `${JSON.stringify(jsonView(result), null, 2)}\n` : summaryLine(result));
  } finally {
    progress.clear();
    store.destroy();
    await new Promise<void>((resolve) => logger.flush(() => resolve()));
  }
}

/** `--json`: the run record plus what this invocation did; for a dry run, the counts. */
function jsonView(r: EnqueueResult): unknown {
  const enqueue = { counts: r.counts, elapsedMs: r.elapsedMs, keysPerSecond: r.keysPerSecond, created: r.created, finalized: r.finalized, paused: r.paused === true };
  if (r.dryRun) return { dryRun: true, runId: r.runId, source: r.source, output: r.output, counts: r.counts, examples: r.examples };
  return { ...r.run, enqueue };
}

export function summaryLine(r: EnqueueResult): string {
  const c = r.counts;
  const skipped = Object.entries(c.skipped)
    .filter(([, n]) => n > 0)
    .map(([why, n]) => `${fmt(n)} ${why}`)
    .join(', ');
  const skippedText = skipped ? ` (skipped ${skipped})` : '';
  const secs = (r.elapsedMs / 1000).toFixed(1);
  const t = c.truth;
  const truthText = t ? `\n  ground truth: ${fmt(t.matched)} images have it, ${fmt(t.missing)} do not${t.unused !== null && t.unused > 0 ? `; ${fmt(t.unused)} truth entries match no listed image` : ''}` : '';
  if (r.dryRun) {
    const ex = r.examples.length > 0 ? `\n  e.g. ${r.examples.join('\n       ')}` : '';
    return `dry run: ${fmt(c.matched)} of ${fmt(c.listed)} objects under ${r.source} would be audited as run ${r.runId} into ${r.output}${skippedText}${ex}${truthText}\n`;
  }
  if (c.matched === 0) {
    const why = c.listed === 0 ? `nothing is stored under ${r.source} (check the prefix)` : `none of the ${fmt(c.listed)} objects under ${r.source} is an image${skippedText}`;
    return `run ${r.runId}: no images to audit: ${why}. The run is complete and empty; manifest.jsonl and summary.json are in ${r.output}\n`;
  }
  const again = c.known > 0 ? `, ${fmt(c.known)} already in the run` : '';
  const m = r.run?.modelIdentity;
  const modelText = m ? `\n  model: ${m.weights}${m.name ? ` (${m.name}${m.version ? ` ${m.version}` : ''})` : ''}, ${describePreprocessing({ mode: m.preprocess, centerCrop: m.centerCrop })}${m.architecture ? `, Keras layout ${m.architecture}` : ''}, ${m.fingerprint}; only workers serving it take these jobs` : '';
  const state = r.paused
    ? ` Listing paused at --max-backlog (${fmt(r.run?.total ?? 0)} images so far); run the same command again to continue.`
    : r.run?.state === 'completed'
      ? ' The run is complete.'
      : ` Follow it with: gradcam-audit status ${r.runId} --watch`;
  return `run ${r.runId}: ${fmt(c.added)} images queued${again} of ${fmt(c.listed)} listed${skippedText} in ${secs} s (${fmt(r.keysPerSecond)} keys/s); outputs go to ${r.output}.${state}${truthText}${modelText}\n`;
}
