/**
 * Shared pieces of the pipeline fault tests: a tiny model written to disk so `gradcam-audit worker`
 * children start in seconds, a restartable Redis with an append-only file (a restart must keep the
 * queue, as a production Redis with persistence would), starting workers and enqueues as real CLI
 * processes, and the checks every fault test ends with: the run completed, every key is in
 * manifest.jsonl exactly once, and every ok image has its three outputs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { expect } from 'vitest';
import { writeTfjsLayers } from '../../../scripts/weights/write-tfjs-layers.js';
import { freePort } from '../../../src/dev/free-port.js';
import { waitUntilRedisAnswers } from '../../../src/dev/local-services.js';
import type { RunManifestLine } from '../../../src/shared/manifest.js';
import type { RunRecord, RunStore } from '../../../src/shared/queue/run-store.js';
import { MANIFEST_FILE } from '../../../src/shared/run-finalizer.js';
import type { ObjectStore } from '../../../src/shared/storage/object-store.js';
import { parseS3Uri } from '../../../src/shared/storage/uri.js';
import type { CliProcess, Cluster } from '../../helpers/cluster.js';
import { uniqueName, type TestRedis } from '../../helpers/services.js';
import { tinySpec } from './helpers.js';

/** Write the tiny seeded VGG-shaped net (32x32 input) as TF.js Layers files; returns model.json. */
export async function writeTinyModel(): Promise<{ modelJson: string; dir: string; remove(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'gca-faults-model-'));
  const modelJson = await writeTfjsLayers(dir, tinySpec());
  return { modelJson, dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** Environment that points a CLI child at the test's Redis namespace and queue. */
export function namespaceEnv(t: Pick<TestRedis, 'prefix' | 'queueName' | 'url'>, extra: Record<string, string> = {}): Record<string, string> {
  return { REDIS_URL: t.url, GRADCAM_AUDIT_PREFIX: t.prefix, GRADCAM_AUDIT_QUEUE: t.queueName, ...extra };
}

export interface WorkerLaunch {
  id: string;
  modelJson: string;
  env: Record<string, string>;
  /** Extra flags, e.g. a short lock for the kill test. */
  args?: string[];
}

/** Start `gradcam-audit worker` and resolve once it takes jobs. */
export async function startCliWorker(cluster: Cluster, w: WorkerLaunch): Promise<CliProcess> {
  const p = cluster.start(w.id, ['worker', '--weights', w.modelJson, '--worker-id', w.id, ...(w.args ?? [])], w.env);
  await p.waitForLog((l) => l.msg === 'worker ready', 90_000);
  return p;
}

export interface CliEnqueueResult {
  id: string;
  total: number;
  enqueue: { counts: { listed: number; matched: number; added: number; known: number }; keysPerSecond: number; created: boolean };
}

/** Run `gradcam-audit enqueue SOURCE --json ...` to completion and parse what it printed. */
export async function enqueueCli(cluster: Cluster, source: string, env: Record<string, string>, flags: string[] = []): Promise<CliEnqueueResult> {
  const r = await cluster.run(['enqueue', source, '--json', ...flags], env, 60_000);
  if (r.code !== 0) throw new Error(`enqueue exited ${r.code}: ${r.stderr.slice(-2000)}`);
  return JSON.parse(r.stdout) as CliEnqueueResult;
}

/** Poll the run record until the run is completed (finalized), or fail with the last record or `onPoll`'s error. */
export async function waitForCompletedRun(runs: RunStore, runId: string, timeoutMs: number, onPoll?: (run: RunRecord) => void | Promise<void>): Promise<RunRecord> {
  const deadline = Date.now() + timeoutMs;
  let last: RunRecord | null = null;
  for (;;) {
    let current: RunRecord | null = null;
    try {
      current = await runs.requireRun(runId);
    } catch (err) {
      // A Redis restart in progress: keep polling until the deadline.
      if (Date.now() > deadline) throw err;
    }
    if (current) {
      last = current;
      await onPoll?.(current); // its errors end the wait
      if (current.state === 'completed') return current;
    }
    if (Date.now() > deadline) throw new Error(`run ${runId} not completed within ${timeoutMs} ms; last record: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Read and parse `<output>/manifest.jsonl`. */
export async function readRunManifest(store: ObjectStore, outputUri: string): Promise<RunManifestLine[]> {
  const out = parseS3Uri(outputUri);
  const body = (await store.get(out.bucket, `${out.key}${MANIFEST_FILE}`)).body.toString('utf8');
  return body
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as RunManifestLine);
}

/**
 * The invariant every fault must leave intact: each source key appears in manifest.jsonl exactly
 * once, and each ok line's overlay, heatmap and prediction objects exist. Returns the lines by key.
 */
export async function expectExactlyOnce(store: ObjectStore, outputUri: string, keys: readonly string[]): Promise<Map<string, RunManifestLine>> {
  const lines = await readRunManifest(store, outputUri);
  const seen = lines.map((l) => l.key);
  expect(seen.length, 'manifest.jsonl lines').toBe(keys.length);
  expect(new Set(seen).size, 'distinct keys in manifest.jsonl').toBe(seen.length);
  expect([...seen].sort()).toEqual([...keys].sort());
  for (const line of lines.filter((l) => l.status === 'ok')) {
    expect(line.outputs, `outputs of ${line.key}`).toBeDefined();
    const uris = line.outputs ? [line.outputs.overlay, line.outputs.heatmap, line.outputs.prediction] : [];
    const heads = await Promise.all(uris.map((u) => store.head(parseS3Uri(u).bucket, parseS3Uri(u).key)));
    heads.forEach((h, i) => expect(h, `${uris[i]} exists`).not.toBeNull());
  }
  return new Map(lines.map((l) => [l.key, l]));
}

/** Every object under a prefix with its ETag and LastModified, for "nothing was written again" checks. */
export async function snapshotObjects(store: ObjectStore, bucket: string, prefix: string): Promise<Map<string, string>> {
  const snap = new Map<string, string>();
  for await (const page of store.listPages(bucket, prefix)) {
    for (const o of page) snap.set(o.key, `${o.etag}@${o.lastModified?.toISOString() ?? ''}`);
  }
  return snap;
}

export interface RestartableRedis {
  url: string;
  port: number;
  /** The current server process (a new one after each restart). */
  readonly pid: number | undefined;
  /** SIGKILL the server (a crash: no shutdown save), then start it again on the same port. */
  restart(downMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * A `redis-server` owned by one test, on a fixed port, with `appendfsync always`: a crash loses no
 * acknowledged write, so after a restart the queue, locks and run records are what they were, and
 * the workers only have to reconnect.
 */
export async function startRestartableRedis(): Promise<RestartableRedis> {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'gca-faults-redis-'));
  const url = `redis://127.0.0.1:${port}`;
  let child: ChildProcess | null = null;

  const launch = async (): Promise<void> => {
    const c = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    c.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    child = c;
    try {
      await waitUntilRedisAnswers(url, 15_000, c);
    } catch (err) {
      throw new Error(`${(err as Error).message} (port ${port}): ${stderr}`, { cause: err });
    }
  };
  const kill = async (): Promise<void> => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const exited = once(c, 'exit');
    c.kill('SIGKILL');
    await exited;
  };

  await launch();
  return {
    url,
    port,
    get pid() {
      return child?.pid;
    },
    async restart(downMs = 1_000) {
      await kill();
      await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    async stop() {
      await kill();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A TestRedis-shaped handle on a server the test owns (the whole server is the test's). */
export function ownedTestRedis(url: string): TestRedis {
  const redis = new Redis(url, { maxRetriesPerRequest: null });
  // The test restarts this server; connection errors in between are expected.
  redis.on('error', () => undefined);
  return {
    url,
    redis,
    prefix: uniqueName('p'),
    queueName: uniqueName('q'),
    async cleanup() {
      redis.disconnect();
    },
  };
}
