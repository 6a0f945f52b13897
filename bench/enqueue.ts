/**
 * Enqueue benchmark: listing → filter → run registry → BullMQ, keys/s and heap, against a real
 * Redis and a real S3 server (REDIS_URL / AWS_ENDPOINT_URL_S3 when set, else a local redis-server
 * and s3rver started here).
 *
 *   npm run bench:enqueue -- [--keys 100000] [--passes 1] [--repeat 1] [--chunks-in-flight 2] [--gc-every 5] [--list-only] [--cached-listing] [--record]
 *   npm run bench:enqueue -- --compare --keys 5000 --passes 20 [--list-concurrency 8] [--record]
 *   npm run bench:enqueue -- --costs --keys 20000 [--repeat 3] [--against REV] [--record]
 *
 * Seeding uses the real S3 API (parallel PUTs of tiny bodies). With a local s3rver the seeded
 * directory is kept in .cache/bench-enqueue-s3 so later runs skip seeding. Heap is sampled after a
 * forced GC at every listing page, so the numbers show retained memory, not garbage timing.
 * `--record` appends a result row to docs/benchmarks.md. `--costs` measures CPU per key on each side
 * with a generated listing and a redis-server of its own (bench/enqueue-costs.ts).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { startRedisServer, startS3rver, type LocalService } from '../src/dev/local-services.js';
import { parseEnqueueRequest } from '../src/producer/enqueue-options.js';
import { enqueueRun } from '../src/producer/enqueue.js';
import { parseIntInRange } from '../src/shared/config.js';
import { bullPrefix, type AuditJobPayload } from '../src/shared/queue/contract.js';
import { RunStore } from '../src/shared/queue/run-store.js';
import { finalizeRun, s3StreamUploader } from '../src/shared/run-finalizer.js';
import type { ObjectStore } from '../src/shared/storage/object-store.js';
import { S3ObjectStore } from '../src/shared/storage/s3-store.js';
import { MemoryObjectStore } from '../src/dev/memory-store.js';
import { cachedListing, replayedListing } from './replayed-listing.js';
import { enqueueCosts } from './enqueue-costs.js';

const args = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const KEYS = parseIntInRange('--keys', flag('--keys') ?? '100000', 1, 10_000_000);
const REPEAT = parseIntInRange('--repeat', flag('--repeat') ?? '1', 1, 10);
const RECORD = args.includes('--record');
/** Only list + filter (a dry run): separates S3 listing speed from the Redis/BullMQ side. */
const LIST_ONLY = args.includes('--list-only');
/**
 * Replay the seeded listing this many times with renamed keys (bench/replayed-listing.ts): every
 * page is still a real S3 response, but `--keys 20000 --passes 5` enqueues 100,000 keys without
 * seeding 100,000 objects first.
 */
const CHUNKS = parseIntInRange('--chunks-in-flight', flag('--chunks-in-flight') ?? '2', 1, 16);
const GC_EVERY = parseIntInRange('--gc-every', flag('--gc-every') ?? '5', 1, 1000);
/** Serve the listing from memory (listed once before timing): enqueue's own cost, without S3. */
const CACHED = args.includes('--cached-listing');
const PASSES = parseIntInRange('--passes', flag('--passes') ?? '1', 1, 1000);
/**
 * Side by side in one run: the s3rver listing and an in-memory copy of it (replayed `--passes`
 * times under renamed folders), each listed in one sequence and fanned out over the folders
 * (`--list-concurrency`, default 8). Prints (and with --record adds) one table.
 */
const COMPARE = args.includes('--compare');
const LIST_CONCURRENCY = flag('--list-concurrency') ?? '8';
/** Producer and Redis CPU per key, side by side per variant (bench/enqueue-costs.ts). */
const COSTS = args.includes('--costs');
const BUCKET = 'bench-enqueue';
const SEED_DIR = '.cache/bench-enqueue-s3';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const MiB = 1024 * 1024;

async function main(): Promise<void> {
  if (COSTS) {
    await enqueueCosts({ keys: KEYS, repeat: REPEAT, against: flag('--against'), record: RECORD, command: `npm run bench:enqueue -- ${args.join(' ')}` });
    return;
  }
  const stops: LocalService[] = [];
  const redisUrl = process.env.REDIS_URL ?? (await start(stops, startRedisServer())).url;
  let endpoint = process.env.AWS_ENDPOINT_URL_S3;
  if (!endpoint) {
    mkdirSync(SEED_DIR, { recursive: true });
    endpoint = (await start(stops, startS3rver(SEED_DIR))).url;
  }
  const store = S3ObjectStore.fromConfig({
    endpoint,
    region: process.env.AWS_REGION ?? 'us-east-1',
    forcePathStyle: true,
    maxAttempts: 5,
    credentials: process.env.AWS_ACCESS_KEY_ID ? undefined : { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
  });
  const redis = new Redis(redisUrl, { maxRetriesPerRequest: null });
  try {
    await store.createBucket(BUCKET);
    const prefix = `keys-${KEYS}/`;
    await seed(store, prefix);

    if (COMPARE) {
      await compare(store, redis, prefix);
      return;
    }
    const source = CACHED ? await cachedListing(store, BUCKET, prefix, 1000) : store;
    const rows: string[] = [];
    for (let rep = 0; rep < REPEAT; rep++) {
      const ks = { prefix: `bench-${process.pid}-${rep}` };
      const queueName = 'bench-enqueue';
      const queueConnection = redis.duplicate();
      const queue = new Queue<AuditJobPayload>(queueName, { connection: queueConnection, prefix: bullPrefix(ks) });
      const runs = new RunStore(redis, ks, { store });
      const request = parseEnqueueRequest(`s3://${BUCKET}/${prefix}`, { runId: `bench-${rep}`, dryRun: LIST_ONLY, maxBacklog: String(KEYS * PASSES) } /* no workers here: nothing would drain the backlog */);

      gc();
      const baseline = process.memoryUsage().heapUsed;
      const samples: Array<{ matched: number; heap: number }> = [];
      let pageNo = 0;
      const result = await enqueueRun(request, {
        store: PASSES > 1 ? replayedListing(source, PASSES) : source,
        queue,
        runs,
        redis,
        finalize: (id) => finalizeRun(id, { runs, redis, upload: s3StreamUploader(store.client) }),
        chunksInFlight: CHUNKS,
        onProgress: (p) => {
          // A full GC costs ~50 ms here: sample every GC_EVERY pages so it barely skews keys/s.
          if (++pageNo % GC_EVERY !== 1 && GC_EVERY > 1) return;
          gc();
          samples.push({ matched: p.matched, heap: process.memoryUsage().heapUsed - baseline });
        },
      });
      const expected = KEYS * PASSES;
      const waiting = LIST_ONLY ? expected : await queue.getWaitingCount();
      const quarter = (f: number): number => samples[Math.min(samples.length - 1, Math.floor(samples.length * f))]?.heap ?? 0;
      const peak = Math.max(...samples.map((s) => s.heap));
      const seconds = result.elapsedMs / 1000;
      const line = {
        mode: `${LIST_ONLY ? 'list-only' : `enqueue, ${CHUNKS} chunk(s) in flight`}${CACHED ? ', listing from memory' : ''}`,
        keys: result.counts.matched,
        queued: waiting,
        seconds: round(seconds),
        keysPerSecond: Math.round(result.counts.matched / seconds),
        retainedHeapMiB: { at25: round(quarter(0.25) / MiB), at50: round(quarter(0.5) / MiB), at75: round(quarter(0.75) / MiB), end: round(quarter(1) / MiB), peak: round(peak / MiB) },
      };
      process.stdout.write(`${JSON.stringify(line)}\n`);
      if (waiting !== expected || (!LIST_ONLY && result.counts.added !== expected)) throw new Error(`expected ${expected} queued jobs, got ${waiting} (added ${result.counts.added})`);
      rows.push(
        `| ${new Date().toISOString().slice(0, 10)} | ${line.keys}${PASSES > 1 ? ` (${PASSES} passes over ${KEYS} real keys)` : ''} | ${line.seconds} | **${line.keysPerSecond}** | ${line.retainedHeapMiB.at25} / ${line.retainedHeapMiB.at50} / ${line.retainedHeapMiB.at75} / ${line.retainedHeapMiB.end} | ${line.retainedHeapMiB.peak} | ${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, load avg ${loadavg()[0]?.toFixed(1)}, Node ${process.versions.node}, ${process.env.AWS_ENDPOINT_URL_S3 ? 'external S3' : 's3rver'} |`,
      );
      // Drop this repetition's keys wholesale (SCAN + UNLINK is far faster than obliterating 100k jobs).
      await queue.close();
      queueConnection.disconnect(); // BullMQ leaves connections it was handed open
      await unlinkPrefix(redis, `${ks.prefix}:*`);
    }
    if (RECORD && !LIST_ONLY && !CACHED) record(rows);
  } finally {
    redis.disconnect();
    store.destroy();
    for (const s of stops.reverse()) await s.stop();
  }
}

/** One enqueue of `prefix` from `store` into a fresh key space; keys/s, then its keys dropped. */
async function timedEnqueue(store: ObjectStore, redis: Redis, prefix: string, listConcurrency: string, tag: string): Promise<{ keys: number; seconds: number; keysPerSecond: number }> {
  const ks = { prefix: `bench-${process.pid}-${tag}` };
  const queueConnection = redis.duplicate();
  const queue = new Queue<AuditJobPayload>('bench-enqueue', { connection: queueConnection, prefix: bullPrefix(ks) });
  const runs = new RunStore(redis, ks, { store });
  try {
    const request = parseEnqueueRequest(`s3://${BUCKET}/${prefix}`, { runId: `bench-${tag}`, maxBacklog: '100000000', listConcurrency });
    const result = await enqueueRun(request, { store, queue, runs, redis, finalize: (id) => finalizeRun(id, { runs, redis, upload: async () => undefined }), chunksInFlight: CHUNKS });
    const waiting = await queue.getWaitingCount();
    if (waiting !== result.counts.matched || result.counts.added !== result.counts.matched) throw new Error(`${tag}: ${result.counts.matched} keys listed but ${waiting} jobs queued`);
    const seconds = result.elapsedMs / 1000;
    return { keys: result.counts.matched, seconds: round(seconds), keysPerSecond: Math.round(result.counts.matched / seconds) };
  } finally {
    await queue.close();
    queueConnection.disconnect();
    await unlinkPrefix(redis, `${ks.prefix}:*`);
  }
}

/** The four listings side by side (see COMPARE). */
async function compare(s3: S3ObjectStore, redis: Redis, prefix: string): Promise<void> {
  // The real listing, read once, replayed into memory PASSES times: `d7/` becomes `d7-p0003/`, so
  // the copy has PASSES times the folders and keys and the same shape.
  const memory = new MemoryObjectStore();
  await memory.createBucket(BUCKET);
  const t0 = performance.now();
  for await (const page of s3.listPages(BUCKET, prefix)) {
    for (const o of page) {
      const rest = o.key.slice(prefix.length);
      const slash = rest.indexOf('/');
      for (let pass = 0; pass < PASSES; pass++) {
        const key = `${prefix}${rest.slice(0, slash)}-p${String(pass).padStart(4, '0')}${rest.slice(slash)}`;
        await memory.put(BUCKET, key, '', { contentType: 'image/jpeg' });
      }
    }
  }
  process.stderr.write(`replayed ${KEYS} keys x ${PASSES} into memory in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
  const modes: Array<[string, ObjectStore, string]> = [
    ['s3rver, one sequence', s3, '1'],
    [`s3rver, ${LIST_CONCURRENCY} lanes`, s3, LIST_CONCURRENCY],
    ['in memory, one sequence', memory, '1'],
    [`in memory, ${LIST_CONCURRENCY} lanes`, memory, LIST_CONCURRENCY],
  ];
  const rows: string[] = [];
  for (const [i, [name, store, lanes]] of modes.entries()) {
    const r = await timedEnqueue(store, redis, prefix, lanes, `c${i}`);
    process.stdout.write(`${JSON.stringify({ listing: name, ...r })}\n`);
    rows.push(`| ${name} | ${r.keys.toLocaleString('en')} | ${r.seconds} | **${r.keysPerSecond.toLocaleString('en')}** |`);
  }
  const env = `${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, load avg ${loadavg()[0]?.toFixed(1)}, Node ${process.versions.node}, ${CHUNKS} chunk(s) in flight`;
  const table = [`${env}:`, '', '| listing | keys | seconds | keys/s |', '|---|---|---|---|', ...rows].join('\n');
  process.stdout.write(`${table}\n`);
  if (RECORD) {
    const file = 'docs/benchmarks.md';
    const title = '## Enqueue with the listing fanned out over folders (`npm run bench:enqueue -- --compare`)';
    const text = readFileSync(file, 'utf8');
    const block = `\n\`npm run bench:enqueue -- ${args.join(' ')}\`\n\n${table}\n`;
    writeFileSync(file, text.includes(title) ? text.replace(title, `${title}\n${block}`) : `${text.trimEnd()}\n\n${title}\n${block}`);
  }
}

async function unlinkPrefix(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

async function start(stops: LocalService[], p: Promise<LocalService>): Promise<LocalService> {
  const s = await p;
  stops.push(s);
  return s;
}

/** PUT `KEYS` tiny objects (64 in flight), unless a marker says an earlier run already did. */
async function seed(store: S3ObjectStore, prefix: string): Promise<void> {
  const marker = `${SEED_DIR}/.seeded-${KEYS}`;
  if (!process.env.AWS_ENDPOINT_URL_S3 && existsSync(marker) && readFileSync(marker, 'utf8') === prefix) return;
  const t0 = Date.now();
  let next = 0;
  const body = Buffer.from('not really a jpeg');
  const worker = async (): Promise<void> => {
    for (let i = next++; i < KEYS; i = next++) {
      // Nested folders and spread names, as camera dumps look; all pass the default filter.
      await store.put(BUCKET, `${prefix}d${i % 100}/img-${String(i).padStart(7, '0')}.jpg`, body, { contentType: 'image/jpeg' });
    }
  };
  await Promise.all(Array.from({ length: 64 }, worker));
  process.stderr.write(`seeded ${KEYS} keys in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  if (!process.env.AWS_ENDPOINT_URL_S3) writeFileSync(marker, prefix);
}

/** Add rows to the enqueue table in docs/benchmarks.md (creating the section once), in place. */
function record(rows: string[]): void {
  const file = 'docs/benchmarks.md';
  mkdirSync('docs', { recursive: true });
  const title = '## Enqueue: listing → queued';
  const section =
    `${title} (\`npm run bench:enqueue -- --keys N --record\`)\n\n` +
    'Retained heap is measured after a forced GC at each listing page, relative to the start; a streaming enqueue keeps it flat at any key count.\n\n' +
    '| date | keys | seconds | keys/s | retained heap MiB at 25/50/75/100 % | peak MiB | machine |\n|---|---|---|---|---|---|---|\n';
  const text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n';
  const lines = text.split('\n');
  const at = lines.findIndex((l) => l.startsWith(title));
  if (at < 0) {
    writeFileSync(file, `${text.endsWith('\n') ? text : `${text}\n`}\n${section}${rows.join('\n')}\n`);
    return;
  }
  // Other sections may follow ours: insert after the last row of our table.
  let end = at + 1;
  while (end < lines.length && !(lines[end]?.startsWith('|') ?? false)) end++;
  while (end < lines.length && (lines[end]?.startsWith('|') ?? false)) end++;
  lines.splice(end, 0, ...rows);
  writeFileSync(file, lines.join('\n'));
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}

await main();
