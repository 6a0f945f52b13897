/**
 * Scale benchmark: Redis memory of a run from 100k to millions of images, with the real producer,
 * RunStore (part files, exactly-once counting) and finalizer, and workers that complete each job
 * at once (no model: this measures the run's state, not the engine).
 *
 *   npm run bench:scale -- [--keys 100000,1000000] [--max-backlog 70000] [--concurrency 300] [--record]
 *
 * The listing is generated (src/dev/synthetic-listing.ts) and part files, manifest and summary go
 * to an in-memory object store (src/dev/memory-store.ts), so neither a local S3 server nor seeding
 * millions of objects sets the pace. Redis is a fresh local redis-server per size; `used_memory` is
 * sampled every 100 ms. Reported per size: Redis peak and end memory (and above the empty server),
 * keys/s enqueued, jobs/s completed, finalizer seconds, S3 requests per 1,000 images, and whether
 * the manifest holds every key exactly once in key order.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { startRedisServer } from '../src/dev/local-services.js';
import { MemoryObjectStore } from '../src/dev/memory-store.js';
import { syntheticKey, syntheticListing } from '../src/dev/synthetic-listing.js';
import { parseEnqueueRequest } from '../src/producer/enqueue-options.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { parseIntInRange } from '../src/shared/config.js';
import type { RunManifestLine } from '../src/shared/manifest.js';
import { bullPrefix, type AuditJobPayload } from '../src/shared/queue/contract.js';
import { readPart } from '../src/shared/queue/result-parts.js';
import { RunStore } from '../src/shared/queue/run-store.js';
import { finalizeRun } from '../src/shared/run-finalizer.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const SIZES = (flag('--keys') ?? '100000,1000000').split(',').map((s) => parseIntInRange('--keys', s.trim(), 1, 100_000_000));
const MAX_BACKLOG = flag('--max-backlog') ?? '70000';
const CONCURRENCY = parseIntInRange('--concurrency', flag('--concurrency') ?? '300', 1, 5000);
const RECORD = args.includes('--record');
const BUCKET = 'bench-scale';
const MB = 1024 * 1024;

interface Row {
  keys: number;
  peakMb: number;
  endMb: number;
  baseMb: number;
  enqueueKeysPerSec: number;
  jobsPerSec: number;
  finalizeSec: number;
  requestsPer1k: string;
  manifestOk: boolean;
  manifestMb: number;
  wallSec: number;
}

async function usedMemory(redis: Redis): Promise<number> {
  return Number(/used_memory:(\d+)/.exec(await redis.info('memory'))?.[1] ?? 0);
}

async function runSize(keys: number): Promise<Row> {
  const server = await startRedisServer();
  const redis = new Redis(server.url, { maxRetriesPerRequest: null });
  const s3 = new MemoryObjectStore();
  await s3.createBucket(BUCKET);
  const store = syntheticListing(s3, { bucket: BUCKET, prefix: 'big/', count: keys });
  const ks = { prefix: 'scale' };
  const runs = new RunStore(redis, ks, { store });
  const queue = new Queue<AuditJobPayload>('scale', { connection: redis.duplicate(), prefix: bullPrefix(ks) });
  const upload = s3.uploader();
  let finalizeMs = 0;
  const finalize = async (id: string) => {
    const t0 = performance.now();
    const out = await finalizeRun(id, { runs, redis, upload });
    if (out.status === 'written') finalizeMs = performance.now() - t0;
    return out;
  };
  try {
    const baseMb = (await usedMemory(redis)) / MB;
    let peak = 0;
    const sampler = setInterval(() => void usedMemory(redis).then((m) => (peak = Math.max(peak, m))), 100);
    let firstJob = 0;
    let lastJob = 0;
    const worker = new Worker<AuditJobPayload>(
      'scale',
      async (job) => {
        if (firstJob === 0) firstJob = performance.now();
        const line: RunManifestLine = { key: job.data.source.key, status: 'ok', top1: { index: 1, label: 'goldfish', probability: 0.5 }, degenerate: false };
        const o = await runs.recordResult(job.data.runId, line);
        lastJob = performance.now();
        if (o.complete && o.counted) await finalize(job.data.runId);
      },
      { connection: redis.duplicate({ maxRetriesPerRequest: null }), prefix: bullPrefix(ks), concurrency: CONCURRENCY },
    );
    const started = performance.now();
    const request = parseEnqueueRequest(`s3://${BUCKET}/big/`, { runId: 'scale', output: `s3://${BUCKET}/out/`, maxBacklog: MAX_BACKLOG });
    const res = await enqueueRun(request, { store, queue, runs, redis, finalize, backlogPollMs: 50 });
    const enqueueSec = (performance.now() - started) / 1000;
    for (;;) {
      const run = await runs.requireRun('scale');
      if (run.state === 'completed') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const wallSec = (performance.now() - started) / 1000;
    clearInterval(sampler);
    peak = Math.max(peak, await usedMemory(redis));
    await worker.close();
    const endMb = (await usedMemory(redis)) / MB;

    // Correctness: every generated key once, in order.
    let i = 0;
    let ok = true;
    for await (const e of readPart(s3, BUCKET, 'out/manifest.jsonl')) {
      if (e.key !== syntheticKey('big/', i)) ok = false;
      i++;
    }
    ok = ok && i === keys && res.counts.added === keys;
    const r = s3.requests;
    return {
      keys,
      baseMb: round(baseMb),
      peakMb: round(peak / MB),
      endMb: round(endMb),
      enqueueKeysPerSec: Math.round(keys / enqueueSec),
      jobsPerSec: Math.round(keys / Math.max(0.001, (lastJob - firstJob) / 1000)),
      finalizeSec: round(finalizeMs / 1000),
      requestsPer1k: `PUT ${round((r.put * 1000) / keys)}, GET ${round((r.get * 1000) / keys)}, LIST ${round((r.list * 1000) / keys)}, DELETE ${round((r.delete * 1000) / keys)}`,
      manifestOk: ok,
      manifestMb: round(s3.bytes(BUCKET, 'out/manifest.jsonl') / MB),
      wallSec: round(wallSec),
    };
  } finally {
    await queue.close();
    redis.disconnect();
    await server.stop();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const keys of SIZES) {
    const row = await runSize(keys);
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  const first = rows[0] as Row;
  const header = '| images | Redis peak MB (empty server) | Redis end MB | enqueue keys/s | jobs/s completed | finalizer s | manifest MB | S3 requests per 1,000 images | manifest exactly once, sorted | wall s |';
  const lines = rows.map(
    (r) => `| ${r.keys.toLocaleString('en')} | ${r.peakMb} (${r.baseMb}) | ${r.endMb} | ${r.enqueueKeysPerSec.toLocaleString('en')} | ${r.jobsPerSec.toLocaleString('en')} | ${r.finalizeSec} | ${r.manifestMb} | ${r.requestsPer1k} | ${r.manifestOk ? 'yes' : 'NO'} | ${r.wallSec} |`,
  );
  const ratio = rows.length > 1 ? `peak ${(rows.at(-1) as Row).keys.toLocaleString('en')} / ${first.keys.toLocaleString('en')}: ${round(((rows.at(-1) as Row).peakMb - first.baseMb) / (first.peakMb - first.baseMb))}x above the empty server` : '';
  console.log([header, '|---|---|---|---|---|---|---|---|---|---|', ...lines, ratio].join('\n'));
  if (RECORD) {
    const doc = 'docs/benchmarks.md';
    const env = `${cpus().length} CPUs, load ${loadavg()[0]?.toFixed(1)}, --max-backlog ${MAX_BACKLOG}, worker concurrency ${CONCURRENCY}`;
    const block = `\n### bench:scale (${new Date().toISOString().slice(0, 10)}, ${env})\n\n\`npm run bench:scale -- --keys ${SIZES.join(',')}\`\n\n${header}\n|---|---|---|---|---|---|---|---|---|---|\n${lines.join('\n')}\n\n${ratio}\n`;
    if (!readFileSync(doc, 'utf8').includes(block)) appendFileSync(doc, block);
  }
  if (rows.some((r) => !r.manifestOk)) process.exitCode = 1;
}

await main();
