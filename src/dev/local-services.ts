/**
 * Local stand-ins for Redis and S3, used by the test harness and by `demo`: a `redis-server`
 * child with no persistence, and s3rver in a child Node process over a directory. They are owned
 * by whoever started them, who stops them with `stop()` (or `kill()` when it must exit at once);
 * s3rver also exits when its parent's IPC channel closes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { ConfigError } from '../shared/errors.js';
import { freePort, isPortFree } from './free-port.js';

export interface LocalService {
  url: string;
  /** The service's process id (benchmarks read its CPU time); undefined for a cluster of several. */
  pid?: number;
  /** SIGTERM, then SIGKILL after a grace period; resolves when the process has exited. */
  stop(): Promise<void>;
  /** SIGKILL now, synchronously (for a parent's 'exit' handler). */
  kill(): void;
}

export interface LocalServiceOptions {
  timeoutMs?: number;
  /**
   * Run in a process group of its own, so a terminal's Ctrl-C (sent to the whole foreground
   * group) reaches only the parent, which then stops its services after their clients. Default false.
   */
  detached?: boolean;
}

export const REDIS_INSTALL_HINT =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: `sudo apt-get install redis-server`, macOS: `brew install redis`) or set REDIS_URL to an existing Redis.';

/** Spawn `redis-server` on a free loopback port with persistence off. */
export async function startRedisServer(options: LocalServiceOptions & { binary?: string } = {}): Promise<LocalService> {
  const port = await freePort();
  const binary = options.binary ?? 'redis-server';
  const child = spawn(binary, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached === true,
  });
  const spawnError = new Promise<never>((_, reject) =>
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new ConfigError('redis-server', REDIS_INSTALL_HINT) : err),
    ),
  );
  const url = `redis://127.0.0.1:${port}`;
  await Promise.race([spawnError, waitUntilRedisAnswers(url, options.timeoutMs ?? 10_000, child)]);
  return service(url, child);
}

/** Poll until the redis-server `child` answers PING on `url` (a loading AOF answers only when done). */
export async function waitUntilRedisAnswers(url: string, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} before accepting connections`);
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    probe.on('error', () => undefined);
    try {
      await probe.connect();
      await probe.ping();
      return;
    } catch {
      if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${url} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      probe.disconnect();
    }
  }
}

export interface LocalRedisCluster extends LocalService {
  /** `host:port` of every master, as REDIS_CLUSTER_NODES takes them. */
  nodes: string[];
}

/**
 * A Redis Cluster of `masters` `redis-server` processes (no replicas, no persistence) on free
 * loopback ports, joined with `redis-cli --cluster create`; resolves once every node reports
 * `cluster_state:ok`. `url` is the `redis+cluster://` URL of its nodes.
 */
export async function startRedisCluster(options: LocalServiceOptions & { masters?: number } = {}): Promise<LocalRedisCluster> {
  const masters = options.masters ?? 3;
  const timeoutMs = options.timeoutMs ?? 20_000;
  const dir = await mkdtemp(join(tmpdir(), 'gca-redis-cluster-'));
  const children: ChildProcess[] = [];
  const ports: number[] = [];
  const stopAll = async (): Promise<void> => {
    await Promise.all(children.map((c) => stopChild(c)));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (let i = 0; i < masters; i++) {
      const port = await clusterPort(ports);
      ports.push(port);
      // Each node needs its own config file; the cluster bus listens on port + 10000.
      const child = spawn(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--cluster-node-timeout', '3000', '--dir', dir, '--save', '', '--appendonly', 'no'],
        { stdio: ['ignore', 'ignore', 'pipe'], detached: options.detached === true },
      );
      children.push(child);
      const spawnError = new Promise<never>((_, reject) =>
        child.once('error', (err: NodeJS.ErrnoException) => reject(err.code === 'ENOENT' ? new ConfigError('redis-server', REDIS_INSTALL_HINT) : err)),
      );
      await Promise.race([spawnError, waitUntilRedisAnswers(`redis://127.0.0.1:${port}`, timeoutMs, child)]);
    }
    const nodes = ports.map((p) => `127.0.0.1:${p}`);
    await runRedisCli(['--cluster', 'create', ...nodes, '--cluster-replicas', '0', '--cluster-yes'], timeoutMs);
    await waitForClusterOk(ports, timeoutMs);
    return {
      url: `redis+cluster://${nodes.join(',')}`,
      nodes,
      stop: stopAll,
      kill() {
        for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      },
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

/** A free port whose cluster bus port (port + 10000) is free too. */
async function clusterPort(taken: readonly number[]): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = await freePort();
    if (port + 10000 <= 65535 && !taken.includes(port) && (await isPortFree(port + 10000))) return port;
  }
  throw new Error('no free port pair (port, port + 10000) for a cluster node');
}

async function runRedisCli(args: string[], timeoutMs: number): Promise<void> {
  const child = spawn('redis-cli', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (out = (out + d.toString()).slice(-4000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    const [code] = (await Promise.race([
      once(child, 'exit'),
      once(child, 'error').then(([err]) => {
        throw (err as NodeJS.ErrnoException).code === 'ENOENT' ? new ConfigError('redis-cli', 'redis-cli was not found on PATH; it comes with redis-server (Debian/Ubuntu: `sudo apt-get install redis-tools`)') : err;
      }),
    ])) as [number | null];
    if (code !== 0) throw new Error(`redis-cli ${args.join(' ')} exited with ${code}: ${out}`);
  } finally {
    clearTimeout(timer);
  }
}

async function waitForClusterOk(ports: readonly number[], timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const clients = ports.map((p) => new Redis(p, '127.0.0.1', { maxRetriesPerRequest: 1, lazyConnect: true }));
  try {
    for (;;) {
      const infos = await Promise.all(clients.map((c) => c.call('CLUSTER', 'INFO').catch(() => '') as Promise<string>));
      if (infos.every((i) => i.includes('cluster_state:ok'))) return;
      if (Date.now() > deadline) throw new Error(`the Redis Cluster on ports ${ports.join(', ')} did not reach cluster_state:ok within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    for (const c of clients) c.disconnect();
  }
}

/** Start s3rver over `directory` in a child process with the OpenSSL legacy provider. */
export async function startS3rver(directory: string, buckets: string[] = [], options: LocalServiceOptions = {}): Promise<LocalService> {
  const port = await freePort();
  const ts = fileURLToPath(new URL('./s3rver-main.ts', import.meta.url));
  const js = fileURLToPath(new URL('./s3rver-main.js', import.meta.url));
  const entry = existsSync(js) ? js : ts;
  const execArgs = entry.endsWith('.ts') ? ['--import', 'tsx'] : [];
  const child = spawn(process.execPath, ['--openssl-legacy-provider', ...execArgs, entry, directory, String(port), ...buckets], {
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    detached: options.detached === true,
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const ready = (async (): Promise<number> => {
    for await (const line of lines) {
      try {
        return (JSON.parse(line) as { port: number }).port;
      } catch {
        // not our line
      }
    }
    throw new Error(`s3rver exited before it was ready: ${stderr}`);
  })();
  const timeout = new Promise<never>((_, reject) => {
    const t = setTimeout(() => reject(new Error(`s3rver did not start within ${options.timeoutMs ?? 20_000} ms: ${stderr}`)), options.timeoutMs ?? 20_000);
    t.unref();
  });
  const actualPort = await Promise.race([ready, timeout]);
  child.stdout?.resume();
  return service(`http://127.0.0.1:${actualPort}`, child);
}

function service(url: string, child: ChildProcess): LocalService {
  return {
    url,
    ...(child.pid === undefined ? {} : { pid: child.pid }),
    stop: () => stopChild(child),
    kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
