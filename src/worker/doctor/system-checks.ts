/**
 * What this machine offers, independent of the model: Node, ONNX Runtime and its execution
 * providers, the GPUs the driver reports, the TF.js backends, and the Redis and S3 the environment
 * points at. Each check takes its facts through parameters so tests can state them.
 */
import { createRequire } from 'node:module';
import { availableParallelism, totalmem } from 'node:os';
import { cgroupCpuLimit, coresWithin } from '../../shared/cores.js';
import { ListBucketsCommand } from '@aws-sdk/client-s3';
import { pino } from 'pino';
import { redact, type AppConfig } from '../../shared/config.js';
import { describeError } from '../../shared/errors.js';
import type { Logger } from '../../shared/logger.js';
import type { KeySpace } from '../../shared/queue/keys.js';
import { createClusterNodeRedis, createRedis, isClusterUrl, waitForRedis, type RedisConnection } from '../../shared/queue/redis.js';
import { CLUSTER_SLOTS, keySlot, shardCount, shardPrefix } from '../../shared/queue/shards.js';
import { S3ObjectStore } from '../../shared/storage/s3-store.js';
import { parseS3Uri } from '../../shared/storage/uri.js';
import type { ProviderEnvironment, ProviderSelection } from '../engine/onnx/providers.js';
import { selectProviders } from '../engine/onnx/providers.js';
import type { CheckResult } from './report.js';

/** Node majors this project is documented and tested on. */
export const SUPPORTED_NODE_MAJORS = [22, 24] as const;

export function nodeCheck(version = process.versions.node): CheckResult {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  // libuv's threadpool bounds how many images sharp decodes and encodes at once; the installed
  // command sets UV_THREADPOOL_SIZE from the core count (bin/threadpool.js), libuv's default is 4.
  const threadpool = process.env.UV_THREADPOOL_SIZE === undefined ? null : Number(process.env.UV_THREADPOOL_SIZE);
  // The defaults that follow the cores (engine threads, libuv threads, --processes auto) see the
  // container's CPU limit too; say so when it is what bounds them.
  const cpuLimit = cgroupCpuLimit();
  const cores = coresWithin(availableParallelism(), cpuLimit);
  const limited = cores < availableParallelism() ? ` (of ${availableParallelism()}: cgroup CPU limit ${cpuLimit})` : '';
  const where = `Node ${version}, ${process.platform} ${process.arch}, ${cores} cores${limited}, ${(totalmem() / 2 ** 30).toFixed(1)} GiB, ${threadpool ?? '4 (libuv default)'} libuv threads`;
  const details = { version, platform: process.platform, arch: process.arch, cores, cpuLimit, memoryBytes: totalmem(), threadpool };
  if (major > 24 || (SUPPORTED_NODE_MAJORS as readonly number[]).includes(major)) return { name: 'node', status: 'ok', summary: where, details };
  if (major === 20 && minor >= 19) {
    return { name: 'node', status: 'warn', summary: `${where}: Node 20 reached end of life in April 2026 and the AWS SDK's releases after January 2027 need Node 22; use Node 24 or 22 LTS`, details };
  }
  return { name: 'node', status: 'fail', summary: `${where}: needs Node 24 or 22 LTS (20.19 at least)`, details };
}

/** onnxruntime-node's version, and which execution providers `auto` takes here and why. */
export async function onnxCheck(env: ProviderEnvironment, deviceId = 0): Promise<{ check: CheckResult; selection: ProviderSelection | null }> {
  let version: string;
  try {
    version = (createRequire(import.meta.url)('onnxruntime-node/package.json') as { version: string }).version;
    await import('onnxruntime-node');
  } catch (err) {
    return { check: { name: 'onnx', status: 'fail', summary: `onnxruntime-node does not load: ${describeError(err)}` }, selection: null };
  }
  const selection = await selectProviders('auto', env, deviceId);
  const others = selection.verdicts.filter((v) => !v.usable).map((v) => `${v.provider}: ${v.reason}`);
  return {
    check: {
      name: 'onnx',
      status: 'ok',
      summary: `onnxruntime-node ${version}, providers ${selection.providers.join(' > ')}${others.length ? ` (${others.join('; ')})` : ''}`,
      details: { version, providers: selection.providers, verdicts: selection.verdicts },
    },
    selection,
  };
}

/** The GPUs the driver reports, and whether the engine uses one (`--require-gpu` makes it a must). */
export function gpuCheck(gpus: string[], engineAccelerator: 'cpu' | 'gpu' | null, requireGpu: boolean): CheckResult {
  const seen = gpus.length ? gpus.map((g, i) => `${i}: ${g}`).join(', ') : 'none';
  const details = { gpus, engineAccelerator, requireGpu };
  if (engineAccelerator === 'gpu') return { name: 'gpu', status: 'ok', summary: `${seen}; the engine computes on the GPU`, details };
  if (requireGpu) return { name: 'gpu', status: 'fail', summary: `GPU required (--require-gpu / GRADCAM_AUDIT_REQUIRE_GPU) but the engine would compute on the CPU; GPUs seen: ${seen}`, details };
  if (gpus.length > 0) return { name: 'gpu', status: 'warn', summary: `${seen} seen, but the engine computes on the CPU (see onnx and tfjs for why)`, details };
  return { name: 'gpu', status: 'skip', summary: 'no NVIDIA GPU visible; the engine computes on the CPU', details };
}

/** Which TF.js backend `auto` picks here, and why the ones before it in the order do not load. */
export async function tfjsCheck(probe: () => Promise<{ chosen: string; device: string; unavailable: Array<{ backend: string; reason: string }> }>): Promise<CheckResult> {
  try {
    const r = await probe();
    const why = r.unavailable.map((u) => `${u.backend}: ${shortReason(u.reason)}`);
    return { name: 'tfjs', status: 'ok', summary: `backend ${r.chosen} (${r.device})${why.length ? `; not loaded: ${why.join('; ')}` : ''}`, details: r };
  } catch (err) {
    return { name: 'tfjs', status: 'warn', summary: `no TF.js backend loads: ${describeError(err)}` };
  }
}

/**
 * Redis at the configured URL: reachable, its version, and the eviction policy BullMQ needs
 * (`noeviction`; anything else may drop queued jobs under memory pressure).
 */
export async function redisCheck(url: string, options: { keySpace?: KeySpace; timeoutMs?: number } = {}): Promise<CheckResult> {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const redis = createRedis(url, { role: 'client', name: 'gca-doctor', maxReconnectDelayMs: 500 });
  redis.on('error', () => undefined);
  const where = redactUrl(url);
  try {
    await waitForRedis(redis, url, timeoutMs);
    if (isClusterUrl(url)) return await clusterCheck(redis, url, where, options.keySpace, timeoutMs);
    const info = await redis.info('server');
    const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
    const policy = await maxmemoryPolicyOf(redis);
    const details = { url: where, version, maxmemoryPolicy: policy };
    if (policy !== 'noeviction') {
      return { name: 'redis', status: 'warn', summary: `${where}: Redis ${version}, maxmemory-policy ${policy}; BullMQ needs noeviction or queued jobs can be evicted`, details };
    }
    return { name: 'redis', status: 'ok', summary: `${where}: Redis ${version}, maxmemory-policy noeviction`, details };
  } catch (err) {
    return { name: 'redis', status: 'fail', summary: `${where}: ${describeError(err)} (set ${isClusterUrl(url) ? 'REDIS_CLUSTER_NODES' : 'REDIS_URL'})`, details: { url: where } };
  } finally {
    redis.disconnect();
  }
}

/**
 * S3 with the configured endpoint and credentials: the credentials resolve, and either the given
 * prefix can be listed or, without one, the account can list its buckets. The secret is never
 * shown; the access key id only masked.
 */
export async function s3Check(config: AppConfig['s3'], source: string | undefined, timeoutMs = 10_000): Promise<CheckResult> {
  const store = S3ObjectStore.fromConfig({ ...config, maxAttempts: 1 });
  const endpoint = config.endpoint ?? `AWS S3 (${config.region})`;
  try {
    let keyId: string;
    try {
      const credentials = await store.client.config.credentials();
      keyId = maskKeyId(credentials.accessKeyId);
    } catch (err) {
      return {
        name: 's3',
        status: 'fail',
        summary: `${endpoint}: no AWS credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or use an IAM role): ${describeError(err)}`,
        details: { endpoint },
      };
    }
    const signal = AbortSignal.timeout(timeoutMs);
    if (source) {
      const { bucket, key } = parseS3Uri(source, '--source');
      let seen = 0;
      for await (const page of store.listPages(bucket, key, { pageSize: 1, signal })) {
        seen += page.length;
        break;
      }
      return { name: 's3', status: 'ok', summary: `${endpoint} as ${keyId}: can list ${source} (${seen ? 'objects found' : 'empty'})`, details: { endpoint, accessKeyId: keyId, source } };
    }
    try {
      const out = await store.client.send(new ListBucketsCommand({}), { abortSignal: signal });
      return { name: 's3', status: 'ok', summary: `${endpoint} as ${keyId}: ${out.Buckets?.length ?? 0} buckets visible (pass --source s3://BUCKET/PREFIX to check one)`, details: { endpoint, accessKeyId: keyId } };
    } catch (err) {
      const name = (err as { name?: string }).name ?? '';
      if (name === 'AccessDenied' || (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 403) {
        return { name: 's3', status: 'warn', summary: `${endpoint} as ${keyId}: credentials accepted, but listing buckets is denied; pass --source s3://BUCKET/PREFIX to check the bucket you audit`, details: { endpoint, accessKeyId: keyId } };
      }
      throw err;
    }
  } catch (err) {
    return { name: 's3', status: 'fail', summary: `${endpoint}: ${describeError(err)}`, details: { endpoint } };
  } finally {
    store.destroy();
  }
}

/** "Cannot find package 'x' imported from …" says less than "x is not installed". */
function shortReason(reason: string): string {
  const missing = /Cannot find (?:package|module) '([^']+)'/.exec(reason)?.[1];
  return missing ? `${missing} is not installed (optional: its install script downloads libtensorflow)` : reason;
}

export function maskKeyId(id: string): string {
  return id.length <= 8 ? `${id.slice(0, 2)}…` : `${id.slice(0, 4)}…${id.slice(-4)}`;
}

/** The server's `maxmemory-policy`; managed services often disable CONFIG, which is said rather than failed. */
async function maxmemoryPolicyOf(redis: RedisConnection): Promise<string> {
  try {
    return ((await redis.call('CONFIG', 'GET', 'maxmemory-policy')) as string[])[1] ?? 'unknown';
  } catch {
    return 'unknown (CONFIG GET is disabled)';
  }
}

/** One master of a cluster as the doctor saw it over its own connection. */
interface MasterFacts {
  node: string;
  /** Slots it serves, per CLUSTER SLOTS. */
  slots: number;
  reachable: boolean;
  error?: string;
  state?: string;
  version?: string;
  maxmemoryPolicy?: string;
}

/**
 * A Redis Cluster: every master the slot map names answers on its own connection, each says
 * `cluster_state:ok`, the masters' ranges cover all 16,384 slots, every master evicts nothing
 * (`noeviction`), and where each queue shard's hash tag lands (N shards on fewer masters than
 * they could use put the queue's load on fewer cores than intended: shards.ts places them for
 * equal contiguous slot ranges).
 */
async function clusterCheck(redis: RedisConnection, url: string, where: string, ks: KeySpace | undefined, timeoutMs: number): Promise<CheckResult> {
  type SlotRange = [number, number, [string, number, ...unknown[]], ...unknown[]];
  const ranges = (await redis.call('CLUSTER', 'SLOTS')) as SlotRange[];
  const owners = ranges.map(([from, to, [host, port]]) => ({ from, to, node: `${host}:${port}` }));
  const slotsOf = new Map<string, number>();
  for (const r of owners) slotsOf.set(r.node, (slotsOf.get(r.node) ?? 0) + r.to - r.from + 1);
  const masters: MasterFacts[] = await Promise.all(
    [...slotsOf].sort(([a], [b]) => (a < b ? -1 : 1)).map(async ([node, slots]) => {
      const [host, port] = [node.slice(0, node.lastIndexOf(':')), Number(node.slice(node.lastIndexOf(':') + 1))];
      // Its own connection, not the cluster client's: that one may answer through another node.
      const one = createClusterNodeRedis(url, { host, port }, { connectTimeoutMs: timeoutMs });
      one.on('error', () => undefined);
      try {
        await one.connect();
        const [info, server] = await Promise.all([one.call('CLUSTER', 'INFO') as Promise<string>, one.info('server')]);
        const policy = await maxmemoryPolicyOf(one);
        return { node, slots, reachable: true, state: /cluster_state:(\w+)/.exec(info)?.[1] ?? 'unknown', version: /redis_version:(\S+)/.exec(server)?.[1] ?? 'unknown', maxmemoryPolicy: policy };
      } catch (err) {
        return { node, slots, reachable: false, error: describeError(err) };
      } finally {
        one.disconnect();
      }
    }),
  );
  const covered = [...slotsOf.values()].reduce((a, n) => a + n, 0);
  const ownerOf = (slot: number): string => owners.find((r) => slot >= r.from && slot <= r.to)?.node ?? 'no master';
  const shardList = ks ? Array.from({ length: shardCount(ks) }, (_, i) => shardPrefix(ks, i)) : [];
  const shards = shardList.map((prefix) => ({ prefix, slot: keySlot(prefix), master: ownerOf(keySlot(prefix)) }));
  const details = { url: where, masters, slotsCovered: covered, shards };

  const problems: string[] = [];
  for (const m of masters) {
    if (!m.reachable) problems.push(`master ${m.node} unreachable (${m.error})`);
    else if (m.state !== 'ok') problems.push(`master ${m.node} reports cluster_state:${m.state}`);
  }
  if (covered < CLUSTER_SLOTS) problems.push(`only ${covered} of ${CLUSTER_SLOTS} slots are served`);
  for (const s of shards) if (s.master === 'no master') problems.push(`queue shard ${s.prefix} (slot ${s.slot}) has no master`);
  const placement = shards.map((s) => `${s.prefix}→${s.master}`).join(', ');
  if (problems.length > 0) {
    return { name: 'redis', status: 'fail', summary: `${where}: ${problems.join('; ')}${placement ? `; queue shards ${placement}` : ''}`, details };
  }
  const warnings: string[] = [];
  const evicting = masters.filter((m) => m.maxmemoryPolicy !== 'noeviction');
  if (evicting.length > 0) warnings.push(`maxmemory-policy ${evicting.map((m) => `${m.maxmemoryPolicy} on ${m.node}`).join(', ')}; BullMQ needs noeviction on every master or queued jobs can be evicted`);
  const used = new Set(shards.map((s) => s.master)).size;
  const possible = Math.min(shards.length, masters.length);
  if (used < possible) warnings.push(`the ${shards.length} queue shards sit on ${used} of ${masters.length} masters (slot ranges not equal and contiguous?): the queue's load is not spread`);
  const versions = [...new Set(masters.map((m) => m.version))].join('/');
  const head = `${where}: Redis Cluster ${versions}, ${masters.length} masters reachable, cluster_state ok, ${CLUSTER_SLOTS} slots served`;
  const shardText = placement ? `; queue shards ${placement}` : '';
  if (warnings.length > 0) return { name: 'redis', status: 'warn', summary: `${head}; ${warnings.join('; ')}${shardText}`, details };
  return { name: 'redis', status: 'ok', summary: `${head}, maxmemory-policy noeviction on all${shardText}`, details };
}

/** A Redis URL without its password (a `redis+cluster://` URL, which URL cannot parse, included). */
export function redactUrl(url: string): string {
  return redact(url).replace(/\/$/, '');
}

/** A logger that keeps the TF.js backend chooser's reasons for the backends it skipped (debug lines). */
export function reasonCollector(): { logger: Logger; unavailable: Array<{ backend: string; reason: string }> } {
  const unavailable: Array<{ backend: string; reason: string }> = [];
  const logger = pino(
    { level: 'debug' },
    {
      write(line: string) {
        const o = JSON.parse(line) as { backend?: unknown; reason?: unknown };
        if (typeof o.backend === 'string' && typeof o.reason === 'string') unavailable.push({ backend: o.backend, reason: o.reason });
      },
    },
  );
  return { logger, unavailable };
}
