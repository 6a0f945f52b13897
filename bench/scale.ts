/**
 * Scale benchmark: Redis memory of a run from 100k to millions of images, with the real producer,
 * RunStore (part files, exactly-once counting) and finalizer, and workers that complete each job
 * at once (no model: this measures the run's state, not the engine).
 *
 *   npm run bench:scale -- [--keys 100000,1000000] [--max-backlog 70000] [--concurrency 300]
 *                          [--redis single,cluster] [--shards 3] [--record]
 *
 * The listing is generated (src/dev/synthetic-listing.ts) and part files, manifest and summary go
 * to an in-memory object store (src/dev/memory-store.ts), so neither a local S3 server nor seeding
 * millions of objects sets the pace. Redis is a fresh local redis-server per size, or with `--redis
 * cluster` a fresh three-master Redis Cluster (startRedisCluster) with the queue in `--shards`
 * shards, one BullMQ Worker per shard; a cluster's memory is the sum over its masters (of each
 * master's own peak, for the peak), and each master's own figures are listed too. Reported per Redis and size,
 * side by side: Redis `used_memory_peak` and `used_memory` at the end (and of the empty server),
 * keys/s enqueued (paced by the workers once the backlog is full), jobs/s completed, the
 * finalizer's seconds and memory (run by the bench once every result is counted, alone), part
 * files, S3 requests per 1,000 images, and whether the manifest holds every key once in key order.
 * Exits 1 when a manifest is wrong or the Redis peak of the largest size is more than 20 % away from
 * the smallest's.
 */
import { appendFileSync, readFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Worker } from 'bullmq';
import type { Cluster } from 'ioredis';
import { startRedisCluster, startRedisServer } from '../src/dev/local-services.js';
import { MemoryObjectStore } from '../src/dev/memory-store.js';
import { syntheticKey, syntheticListing } from '../src/dev/synthetic-listing.js';
import { parseEnqueueRequest } from '../src/producer/enqueue-options.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { parseIntInRange } from '../src/shared/config.js';
import type { RunManifestLine } from '../src/shared/manifest.js';
import type { StreamUploader } from '../src/shared/queue/result-parts.js';
import { bullPrefix, type AuditJobPayload } from '../src/shared/queue/contract.js';
import { keySpaceOf } from '../src/shared/queue/keys.js';
import { createRedis, waitForRedis, type RedisConnection } from '../src/shared/queue/redis.js';
import { RunStore } from '../src/shared/queue/run-store.js';
import { QueueShards } from '../src/shared/queue/shards.js';
import { finalizeRun, type FinalizeOutcome } from '../src/shared/run-finalizer.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const SIZES = (flag('--keys') ?? '100000,1000000').split(',').map((s) => parseIntInRange('--keys', s.trim(), 1, 100_000_000));
const MAX_BACKLOG = flag('--max-backlog') ?? '70000';
const CONCURRENCY = parseIntInRange('--concurrency', flag('--concurrency') ?? '300', 1, 5000);
const RECORD = args.includes('--record');
const MODES = (flag('--redis') ?? 'single').split(',').map((s) => s.trim());
for (const m of MODES) if (m !== 'single' && m !== 'cluster') throw new Error(`--redis: expected single and/or cluster, got "${m}"`);
const SHARDS = parseIntInRange('--shards', flag('--shards') ?? '3', 1, 64);
const BUCKET = 'bench-scale';
const MB = 1024 * 1024;
const STALL_MS = 60_000;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

interface Row {
  redis: string;
  keys: number;
  peakMb: number;
  endMb: number;
  baseMb: number;
  enqueueKeysPerSec: number;
  jobsPerSec: number;
  finalizeSec: number;
  finalizeMemMb: number;
  parts: number;
  requestsPer1k: string;
  manifestOk: boolean;
  manifestMb: number;
  wallSec: number;
  /** Each master's own used_memory peak / at the end, MB ("-" on one server: the totals are its own). */
  perMasterMb: string;
}

async function redisMemory(redis: RedisConnection): Promise<{ used: number; peak: number; perMaster: Array<{ node: string; used: number; peak: number }> }> {
  const nodes = 'nodes' in redis ? (redis as Cluster).nodes('master') : [redis];
  const infos = await Promise.all(nodes.map((n) => n.info('memory')));
  const field = (info: string, name: string): number => Number(new RegExp(`^${name}:(\\d+)`, 'm').exec(info)?.[1] ?? 0);
  const perMaster = nodes
    .map((n, i) => ({ node: `${n.options.host ?? '?'}:${n.options.port ?? '?'}`, used: field(infos[i] as string, 'used_memory'), peak: field(infos[i] as string, 'used_memory_peak') }))
    .sort((a, b) => (a.node < b.node ? -1 : 1));
  return { used: perMaster.reduce((a, m) => a + m.used, 0), peak: perMaster.reduce((a, m) => a + m.peak, 0), perMaster };
}

/**
 * The manifest upload, checked while it streams and not stored: every generated key once, in key
 * order. Keeping a 1M-line manifest in the in-memory store would blur the finalizer's own memory.
 */
function checkingUploader(s3: MemoryObjectStore, manifestKey: string, keys: number): { upload: StreamUploader; result: { lines: number; bytes: number; ok: boolean } } {
  const result = { lines: 0, bytes: 0, ok: true };
  const inner = s3.uploader();
  const upload: StreamUploader = async (bucket, key, body, contentType) => {
    if (key !== manifestKey) return inner(bucket, key, body, contentType);
    let rest = '';
    for await (const chunk of body as AsyncIterable<Buffer>) {
      result.bytes += chunk.length;
      const lines = (rest + chunk.toString('utf8')).split('\n');
      rest = lines.pop() ?? '';
      for (const l of lines) {
        const line = JSON.parse(l) as RunManifestLine;
        if (line.key !== syntheticKey('big/', result.lines) || line.status !== 'ok') result.ok = false;
        result.lines++;
      }
    }
    if (rest !== '') result.ok = false;
    result.ok &&= result.lines === keys;
  };
  return { upload, result };
}

async function runSize(mode: string, keys: number): Promise<Row> {
  const server = mode === 'cluster' ? await startRedisCluster() : await startRedisServer();
  // `queue` role: no per-command retry limit, as BullMQ's workers need.
  const redis = createRedis(server.url, { role: 'queue' });
  await waitForRedis(redis, server.url, 10_000);
  const connections = [createRedis(server.url, { role: 'queue' }), createRedis(server.url, { role: 'worker' })] as const;
  const s3 = new MemoryObjectStore();
  await s3.createBucket(BUCKET);
  const store = syntheticListing(s3, { bucket: BUCKET, prefix: 'big/', count: keys });
  const ks = keySpaceOf({ keyPrefix: 'scale', redisUrl: server.url, queueShards: mode === 'cluster' ? SHARDS : 1 });
  const runs = new RunStore(redis, ks, { store });
  const queue = new QueueShards<AuditJobPayload>('scale', ks, connections[0]);
  const checked = checkingUploader(s3, 'out/manifest.jsonl', keys);
  // Workers and enqueue only note that the run is complete; the bench then runs the real finalizer
  // itself, so its time and memory are measured with nothing else running (in production the
  // process that records the last result runs it, as `complete` says).
  let completeSeen = false;
  const noteComplete = async (): Promise<FinalizeOutcome> => {
    completeSeen = true;
    return { status: 'claimed-elsewhere' };
  };
  let workers: Array<Worker<AuditJobPayload>> = [];
  try {
    const baseMb = (await redisMemory(redis)).used / MB;
    let firstJob = 0;
    let lastJob = 0;
    // One Worker per shard sharing the concurrency, as the pipeline worker does.
    workers = queue.queues.map(
      (_, shard) =>
        new Worker<AuditJobPayload>(
          'scale',
          async (job) => {
            if (firstJob === 0) firstJob = performance.now();
            const line: RunManifestLine = { key: job.data.source.key, status: 'ok', top1: { index: 1, label: 'goldfish', probability: 0.5 }, degenerate: false };
            const o = await runs.recordResult(job.data.runId, line);
            lastJob = performance.now();
            if (o.complete && o.counted) await noteComplete();
          },
          { connection: connections[1], prefix: bullPrefix(ks, shard), concurrency: Math.ceil(CONCURRENCY / queue.queues.length) },
        ),
    );
    const started = performance.now();
    const request = parseEnqueueRequest(`s3://${BUCKET}/big/`, { runId: 'scale', output: `s3://${BUCKET}/out/`, maxBacklog: MAX_BACKLOG });
    const res = await enqueueRun(request, { store, queue, runs, redis, finalize: noteComplete, backlogPollMs: 50 });
    const enqueueSec = (performance.now() - started) / 1000;
    // Wait for every result; no result counted for STALL_MS means something is stuck, not slow.
    for (let seen = -1, since = performance.now(); !completeSeen; ) {
      const run = await runs.requireRun('scale');
      if (run.enqueueComplete && run.done + run.failed >= run.total) break;
      const progress = run.done + run.failed;
      if (progress !== seen) [seen, since] = [progress, performance.now()];
      else if (performance.now() - since > STALL_MS) throw new Error(`no result counted for ${STALL_MS / 1000} s at ${keys} keys: ${JSON.stringify(run)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await Promise.all(workers.map((w) => w.close()));
    const parts = s3.requests.put;

    // The finalizer alone: heap + array buffers above a post-GC baseline, less what it stored in
    // the (in-memory) S3, sampled every 20 ms.
    gc();
    const mem = (): number => {
      const m = process.memoryUsage();
      return m.heapUsed + m.arrayBuffers - s3.bytesPut;
    };
    const memBase = mem();
    let memPeak = memBase;
    const sampler = setInterval(() => (memPeak = Math.max(memPeak, mem())), 20);
    const t0 = performance.now();
    const out = await finalizeRun('scale', { runs, redis, upload: checked.upload });
    const finalizeMs = performance.now() - t0;
    clearInterval(sampler);
    memPeak = Math.max(memPeak, mem());
    if (out.status !== 'written') throw new Error(`finalizer did not write the manifest at ${keys} keys: ${out.status}`);
    const wallSec = (performance.now() - started) / 1000;
    const { used: end, peak, perMaster } = await redisMemory(redis);

    const r = s3.requests;
    return {
      redis: mode === 'cluster' ? `cluster, 3 masters, ${SHARDS} shards` : 'single',
      keys,
      baseMb: round(baseMb),
      peakMb: round(peak / MB),
      endMb: round(end / MB),
      enqueueKeysPerSec: Math.round(keys / enqueueSec),
      jobsPerSec: Math.round(keys / Math.max(0.001, (lastJob - firstJob) / 1000)),
      finalizeSec: round(finalizeMs / 1000),
      finalizeMemMb: round((memPeak - memBase) / MB),
      parts,
      requestsPer1k: `PUT ${round((r.put * 1000) / keys)}, GET ${round((r.get * 1000) / keys)}, LIST ${round((r.list * 1000) / keys)}, DELETE ${round((r.delete * 1000) / keys)}`,
      manifestOk: checked.result.ok && res.counts.added === keys,
      manifestMb: round(checked.result.bytes / MB),
      wallSec: round(wallSec),
      perMasterMb: perMaster.length > 1 ? perMaster.map((m) => `${round(m.peak / MB)} / ${round(m.used / MB)}`).join('; ') : '-',
    };
  } finally {
    await Promise.all(workers.map((w) => w.close()));
    await queue.close();
    // BullMQ leaves connections it was handed open.
    for (const c of connections) c.disconnect();
    redis.disconnect();
    await server.stop();
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  for (const mode of MODES) {
    for (const keys of SIZES) {
      const row = await runSize(mode, keys);
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
  // Flatness is judged within the first Redis mode's sizes.
  const flat = rows.filter((r) => r.redis === (rows[0] as Row).redis);
  const first = flat[0] as Row;
  const last = flat.at(-1) as Row;
  const header =
    '| Redis | images | Redis used_memory peak MB (empty server) | Redis at the end MB | enqueue keys/s | jobs/s completed | finalizer s | finalizer memory MB | part files | manifest MB | S3 requests per 1,000 images | manifest: each key once, sorted | wall s | per master: peak / end MB |';
  const rule = `|${'---|'.repeat(14)}`;
  const lines = rows.map(
    (r) =>
      `| ${r.redis} | ${r.keys.toLocaleString('en')} | ${r.peakMb} (${r.baseMb}) | ${r.endMb} | ${r.enqueueKeysPerSec.toLocaleString('en')} | ${r.jobsPerSec.toLocaleString('en')} | ${r.finalizeSec} | ${r.finalizeMemMb} | ${r.parts.toLocaleString('en')} | ${r.manifestMb} | ${r.requestsPer1k} | ${r.manifestOk ? 'yes' : 'NO'} | ${r.wallSec} | ${r.perMasterMb} |`,
  );
  const growth = flat.length > 1 ? round(last.peakMb / first.peakMb) : 1;
  const verdict = flat.length > 1 ? `Redis peak at ${last.keys.toLocaleString('en')} / at ${first.keys.toLocaleString('en')} images: ${growth}x (${Math.abs(growth - 1) <= 0.2 ? 'flat, within 20 %' : 'NOT flat: more than 20 % apart'})` : '';
  console.log([header, rule, ...lines, '', verdict].join('\n'));
  if (RECORD) {
    const doc = 'docs/benchmarks.md';
    const env = `${cpus().length} CPUs, load ${loadavg()[0]?.toFixed(1)}, Node ${process.versions.node}, --max-backlog ${MAX_BACKLOG}, worker concurrency ${CONCURRENCY}`;
    const block = `\n### bench:scale, ${new Date().toISOString().slice(0, 10)} (${env})\n\n\`npm run bench:scale -- ${args.join(' ')}\`\n\n${header}\n${rule}\n${lines.join('\n')}\n\n${verdict}\n`;
    if (!readFileSync(doc, 'utf8').includes(block)) appendFileSync(doc, block);
  }
  if (flat.length > 1 && Math.abs(growth - 1) > 0.2) process.exitCode = 1;
  if (rows.some((r) => !r.manifestOk)) process.exitCode = 1;
}

await main();
