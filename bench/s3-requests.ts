/**
 * S3 object requests benchmark (not a test): the CPU this process spends per GET, PUT and HEAD
 * through `S3Client.send` against the direct path (src/shared/storage/s3-object-requests.ts), side
 * by side in one run against s3rver in a child process (its CPU is not counted), and per image as
 * the worker does them: idempotency HEAD (a miss), source GET, three output PUTs.
 *
 *   npm run bench:s3 -- [--requests 400] [--concurrency 8] [--rounds 3] [--object-bytes 30000]
 *
 * Rounds interleave the two paths, so load drift on a shared machine hits both alike.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { startS3rver } from '../src/dev/local-services.js';
import { S3ObjectStore, type S3StoreOptions } from '../src/shared/storage/s3-store.js';
import { cpuMs, flag } from './measure.js';

const requests = flag('--requests', 400);
const concurrency = flag('--concurrency', 8);
const rounds = flag('--rounds', 3);
const objectBytes = flag('--object-bytes', 30_000);

type Path = NonNullable<S3StoreOptions['objectRequests']>;
const PATHS: Path[] = ['sdk', 'direct'];
const OPERATIONS = ['put', 'get', 'head (hit)', 'head (miss)', 'per image: head miss + get + 3 puts'] as const;
type Operation = (typeof OPERATIONS)[number];

const dir = mkdtempSync(join(os.tmpdir(), 'gca-bench-s3-'));
const s3 = await startS3rver(dir);
const bucket = 'bench-s3';
const stores = Object.fromEntries(
  PATHS.map((p) => [
    p,
    S3ObjectStore.fromConfig({ endpoint: s3.url, region: 'us-east-1', forcePathStyle: true, maxAttempts: 3, maxSockets: concurrency * 4, objectRequests: p, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } }),
  ]),
) as Record<Path, S3ObjectStore>;
try {
  await stores.sdk.createBucket(bucket);
  const body = Buffer.alloc(objectBytes, 7);
  const metadata = { 'source-etag': '0123456789abcdef0123456789abcdef', 'options-hash': 'fedcba9876543210' };
  const put = (store: S3ObjectStore, key: string) => store.put(bucket, key, body, { contentType: 'image/png', metadata });
  const ops: Record<Operation, (store: S3ObjectStore, i: number, path: Path) => Promise<unknown>> = {
    put: (store, i, path) => put(store, `${path}/obj-${i}`),
    get: (store, i, path) => store.get(bucket, `${path}/obj-${i}`),
    'head (hit)': (store, i, path) => store.head(bucket, `${path}/obj-${i}`),
    'head (miss)': (store, i, path) => store.head(bucket, `${path}/missing-${i}`),
    'per image: head miss + get + 3 puts': async (store, i, path) => {
      await store.head(bucket, `${path}/out/missing-${i}`);
      await store.get(bucket, `${path}/obj-${i}`);
      for (const kind of ['overlay', 'heatmap', 'prediction']) await put(store, `${path}/out/${kind}-${i}`);
    },
  };
  const cpu: Record<Path, Record<Operation, number[]>> = Object.fromEntries(PATHS.map((p) => [p, Object.fromEntries(OPERATIONS.map((o) => [o, []]))])) as never;
  const wall: Record<Path, Record<Operation, number[]>> = Object.fromEntries(PATHS.map((p) => [p, Object.fromEntries(OPERATIONS.map((o) => [o, []]))])) as never;
  for (let round = 0; round < rounds; round++) {
    for (const op of OPERATIONS) {
      for (const path of round % 2 === 0 ? PATHS : [...PATHS].reverse()) {
        const store = stores[path];
        await Promise.all(Array.from({ length: concurrency }, (_, i) => ops[op](store, i, path))); // warm sockets
        const c0 = cpuMs();
        const t0 = performance.now();
        for (let i = 0; i < requests; i += concurrency) await Promise.all(Array.from({ length: Math.min(concurrency, requests - i) }, (_, j) => ops[op](store, i + j, path)));
        cpu[path][op].push((cpuMs() - c0) / requests);
        wall[path][op].push((performance.now() - t0) / requests);
      }
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const cpus = os.cpus();
  const lines = [
    `machine: ${cpus[0]?.model ?? 'unknown CPU'} x${cpus.length}, Node ${process.version}; load average at the end ${os.loadavg().map((v) => v.toFixed(2)).join(' ')}`,
    `${requests} requests per operation and path, ${concurrency} at a time, ${objectBytes}-byte objects, median of ${rounds} interleaved rounds; s3rver in a child process`,
    '',
    '| operation | CPU ms/request: SDK | direct | SDK / direct | wall ms/request: SDK | direct |',
    '|---|---|---|---|---|---|',
    ...OPERATIONS.map((op) => {
      const [s, d] = [median(cpu.sdk[op]), median(cpu.direct[op])];
      return `| ${op} | ${s.toFixed(2)} | ${d.toFixed(2)} | ${(s / d).toFixed(1)}x | ${median(wall.sdk[op]).toFixed(2)} | ${median(wall.direct[op]).toFixed(2)} |`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
} finally {
  for (const store of Object.values(stores)) store.destroy();
  await s3.stop();
  rmSync(dir, { recursive: true, force: true });
}
