/**
 * `bench:enqueue -- --costs`: where a key's time goes when the listing costs nothing. The real
 * enqueue, wired as the CLI wires it (`connectProducer`, `enqueueRun`), lists a generated prefix
 * (src/dev/synthetic-listing.ts) into a redis-server started for this bench alone, so Redis's own
 * CPU counters are the enqueue's. Per variant and repetition, alternating so that load changes hit
 * every variant alike:
 *
 * - keys/s, and CPU per key on each side: the producer process (`process.cpuUsage`) and Redis
 *   (`INFO cpu`), which a loaded machine inflates far less than wall time;
 * - how busy the producer's event loop was (the rest is waiting for Redis);
 * - Redis memory per queued key (`used_memory` after minus before);
 * - from those, each side's ceiling (1 s / CPU per key) and what 20,000 keys/s needs.
 *
 * Variants: this checkout; this checkout with Redis's `hash-max-listpack-value` at 1024 (BullMQ's
 * job hashes then stay listpacks: less memory and work per job, a server setting); and with
 * `--against REV`, the same enqueue from another revision's sources (`git archive` into .cache),
 * for before/after ratios measured in one run.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { Redis } from 'ioredis';
import { startRedisServer } from '../src/dev/local-services.js';
import { MemoryObjectStore } from '../src/dev/memory-store.js';
import { syntheticListing } from '../src/dev/synthetic-listing.js';
import { loadConfig } from '../src/shared/config.js';
import type { ObjectStore } from '../src/shared/storage/object-store.js';
import type * as Connections from '../src/producer/connections.js';
import type * as EnqueueOptions from '../src/producer/enqueue-options.js';
import type * as Enqueue from '../src/producer/enqueue.js';

/** The parts of a source tree this bench drives; the same functions in any revision. */
interface Tree {
  name: string;
  connectProducer: typeof Connections.connectProducer;
  parseEnqueueRequest: typeof EnqueueOptions.parseEnqueueRequest;
  enqueueRun: typeof Enqueue.enqueueRun;
}

interface Variant {
  name: string;
  tree: Tree;
  /** Redis settings for this variant (CONFIG SET before, the previous values back after). */
  redisConfig?: Record<string, string>;
}

interface Sample {
  keysPerSecond: number;
  nodeUsPerKey: number;
  busy: number;
  redisUsPerKey: number;
  redisBytesPerKey: number;
}

export interface CostsOptions {
  keys: number;
  repeat: number;
  /** Another revision (commit, branch) to run beside this checkout. */
  against?: string;
  record: boolean;
  /** The command line, for the record. */
  command: string;
}

const BUCKET = 'bench-costs';
const TARGET = 20_000;
const WARMUP_KEYS = 3000;

export async function enqueueCosts(options: CostsOptions): Promise<void> {
  const here: Tree = { name: 'this checkout', ...(await loadTree('../src')) };
  const variants: Variant[] = [];
  if (options.against) variants.push({ name: options.against, tree: { name: options.against, ...(await loadTree(checkout(options.against))) } });
  variants.push({ name: here.name, tree: here });
  variants.push({ name: `${here.name}, hash-max-listpack-value 1024`, tree: here, redisConfig: { 'hash-max-listpack-value': '1024' } });

  const server = await startRedisServer();
  const admin = new Redis(server.url);
  const samples = new Map<string, Sample[]>(variants.map((v) => [v.name, []]));
  try {
    const memory = new MemoryObjectStore();
    await memory.createBucket(BUCKET);
    const store = syntheticListing(memory, { bucket: BUCKET, prefix: 'photos/', count: options.keys });
    // One short untimed enqueue per variant first: the first run of each tree's code pays for its
    // loading and JIT warm-up, which is not a per-key cost.
    const warmup = syntheticListing(memory, { bucket: BUCKET, prefix: 'photos/', count: WARMUP_KEYS });
    for (const [i, variant] of variants.entries()) await measure(variant, admin, server.url, warmup, WARMUP_KEYS, `warmup${i}`);
    for (let rep = 0; rep < options.repeat; rep++) {
      for (const [i, variant] of variants.entries()) {
        const sample = await measure(variant, admin, server.url, store, options.keys, `costs${rep}v${i}`);
        samples.get(variant.name)?.push(sample);
        process.stdout.write(`${JSON.stringify({ variant: variant.name, rep, ...sample })}\n`);
      }
    }
  } finally {
    admin.disconnect();
    await server.stop();
  }

  const rows = variants.map((v) => ({ name: v.name, s: median(samples.get(v.name) ?? []) }));
  const table = [
    '| variant | keys/s | producer CPU µs/key | producer event loop busy | Redis CPU µs/key | Redis bytes per queued key | producer ceiling keys/s | Redis ceiling keys/s |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(({ name, s }) => `| ${name} | **${fmt(s.keysPerSecond)}** | ${s.nodeUsPerKey.toFixed(1)} | ${Math.round(s.busy * 100)} % | ${s.redisUsPerKey.toFixed(1)} | ${fmt(s.redisBytesPerKey)} | ${fmt(1e6 / s.nodeUsPerKey)} | ${fmt(1e6 / s.redisUsPerKey)} |`),
  ];
  const mine = rows.find((r) => r.name === here.name)?.s as Sample;
  const lines: string[] = [];
  const base = options.against ? rows.find((r) => r.name === options.against)?.s : undefined;
  if (base) {
    lines.push(
      `This checkout / ${options.against}: keys/s ${ratio(mine.keysPerSecond, base.keysPerSecond)}, producer CPU per key ${ratio(mine.nodeUsPerKey, base.nodeUsPerKey)}, Redis CPU per key ${ratio(mine.redisUsPerKey, base.redisUsPerKey)} (medians of ${options.repeat}).`,
    );
  }
  // One enqueue is one producer thread; its keys go to the queue's shards, one Redis core each.
  lines.push(
    `${fmt(TARGET)} keys/s at these costs needs ${(TARGET * mine.nodeUsPerKey / 1e6).toFixed(2)} cores of producer CPU (one enqueue is one thread) and ${(TARGET * mine.redisUsPerKey / 1e6).toFixed(2)} Redis cores (queue shards on separate masters), ${((TARGET * (mine.nodeUsPerKey + mine.redisUsPerKey)) / 1e6).toFixed(2)} cores in all.`,
  );
  const env = `${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, ${cpus().length} × ${cpus()[0]?.model.trim() ?? '?'}, load avg ${loadavg().map((l) => l.toFixed(1)).join(' ')}, Node ${process.versions.node}, ${fmt(options.keys)} keys per enqueue, medians of ${options.repeat}`;
  const text = [`\`${options.command}\``, '', `${env}:`, '', ...table, '', ...lines].join('\n');
  process.stdout.write(`${text}\n`);
  if (options.record) record(text);
}

async function measure(variant: Variant, admin: Redis, url: string, store: ObjectStore, keys: number, prefix: string): Promise<Sample> {
  const { tree } = variant;
  const previous: Record<string, string> = {};
  for (const [k, v] of Object.entries(variant.redisConfig ?? {})) {
    previous[k] = ((await admin.config('GET', k)) as string[])[1] as string;
    await admin.config('SET', k, v);
  }
  const config = loadConfig({}, { redisUrl: url, keyPrefix: prefix, queueShards: 1 });
  const conn = await tree.connectProducer(config, `bench-${prefix}`);
  try {
    const request = tree.parseEnqueueRequest(`s3://${BUCKET}/photos/`, { runId: prefix, maxBacklog: String(keys) }, {});
    const before = await redisCounters(admin);
    const cpu0 = process.cpuUsage();
    const loop0 = performance.eventLoopUtilization();
    const result = await tree.enqueueRun(request, {
      store,
      queue: conn.queue,
      runs: conn.runs,
      redis: conn.redis,
      // No workers: the run cannot complete, so nothing is finalized.
      finalize: () => Promise.reject(new Error('nothing to finalize in this bench')),
    });
    const cpu = process.cpuUsage(cpu0);
    const busy = performance.eventLoopUtilization(loop0).utilization;
    const after = await redisCounters(admin);
    const waiting = (await conn.queue.getJobCounts('waiting')).waiting;
    if (waiting !== keys || result.counts.added !== keys) throw new Error(`${variant.name}: ${result.counts.added} keys added, ${waiting} jobs waiting, expected ${keys}`);
    return {
      keysPerSecond: result.keysPerSecond,
      nodeUsPerKey: (cpu.user + cpu.system) / keys,
      busy,
      redisUsPerKey: ((after.cpuSeconds - before.cpuSeconds) * 1e6) / keys,
      redisBytesPerKey: (after.usedMemory - before.usedMemory) / keys,
    };
  } finally {
    await conn.close();
    for (const [k, v] of Object.entries(previous)) await admin.config('SET', k, v);
    await admin.flushall();
  }
}

async function redisCounters(redis: Redis): Promise<{ cpuSeconds: number; usedMemory: number }> {
  const info = await redis.info();
  const field = (name: string): number => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)?.[1] ?? Number.NaN);
  return { cpuSeconds: field('used_cpu_user') + field('used_cpu_sys'), usedMemory: field('used_memory') };
}

/** A source tree's producer modules (relative to this file, or an absolute directory). */
async function loadTree(src: string): Promise<Omit<Tree, 'name'>> {
  const url = (p: string): string => (src.startsWith('/') ? pathToFileURL(`${src}/${p}`).href : new URL(`${src}/${p}`, import.meta.url).href);
  const [connections, options, enqueue] = await Promise.all([
    import(url('producer/connections.ts')) as Promise<typeof Connections>,
    import(url('producer/enqueue-options.ts')) as Promise<typeof EnqueueOptions>,
    import(url('producer/enqueue.ts')) as Promise<typeof Enqueue>,
  ]);
  return { connectProducer: connections.connectProducer, parseEnqueueRequest: options.parseEnqueueRequest, enqueueRun: enqueue.enqueueRun };
}

/** `src/` of revision `rev`, extracted once under .cache; its imports resolve to this checkout's node_modules. */
function checkout(rev: string): string {
  const commit = execFileSync('git', ['rev-parse', '--verify', `${rev}^{commit}`], { encoding: 'utf8' }).trim();
  const dir = resolve(`.cache/bench-enqueue-src/${commit}`);
  if (!existsSync(`${dir}/src`)) {
    mkdirSync(dir, { recursive: true });
    execFileSync('sh', ['-c', `git archive ${commit} src | tar -x -C "${dir}"`]);
  }
  return `${dir}/src`;
}

function median(xs: Sample[]): Sample {
  const mid = <K extends keyof Sample>(k: K): number => {
    const s = xs.map((x) => x[k]).sort((a, b) => a - b);
    return s.length % 2 ? (s[(s.length - 1) / 2] as number) : ((s[s.length / 2 - 1] as number) + (s[s.length / 2] as number)) / 2;
  };
  return { keysPerSecond: mid('keysPerSecond'), nodeUsPerKey: mid('nodeUsPerKey'), busy: mid('busy'), redisUsPerKey: mid('redisUsPerKey'), redisBytesPerKey: mid('redisBytesPerKey') };
}

function ratio(a: number, b: number): string {
  return `${(a / b).toFixed(2)}x`;
}

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en');
}

function record(text: string): void {
  const file = 'docs/benchmarks.md';
  const title = "## Enqueue: where a key's time goes (`npm run bench:enqueue -- --costs`)";
  const doc = readFileSync(file, 'utf8');
  writeFileSync(file, doc.includes(title) ? doc.replace(title, `${title}\n\n${text}\n`) : `${doc.trimEnd()}\n\n${title}\n\n${text}\n`);
}
