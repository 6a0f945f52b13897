/**
 * The newcomer's demo: the real pipeline on one machine. It starts (or reuses) Redis and S3, uploads
 * the sample images, runs a real `worker` and `dashboard` as child processes and a real `enqueue`,
 * waits for the run to complete, copies the outputs to a local folder and prints the summary.
 * Ctrl-C stops the children (they drain) and the embedded services, in reverse order.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync, mkdirSync, readdirSync, statSync, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { loadConfig } from '../shared/config.js';
import { IMAGE_CONTENT_TYPES } from '../shared/image-types.js';
import { ConfigError, describeError } from '../shared/errors.js';
import type { RunSummary } from '../shared/manifest.js';
import { createRedis, waitForRedis } from '../shared/queue/redis.js';
import { RunStore, type RunRecord } from '../shared/queue/run-store.js';
import { S3ObjectStore } from '../shared/storage/s3-store.js';
import { parseS3Uri } from '../shared/storage/uri.js';
import { freePort } from '../dev/free-port.js';
import { startRedisServer, startS3rver } from '../dev/local-services.js';
import { DEMO_MODEL, resolveDemoOptions, type DemoFlags, type DemoOptions } from './options.js';

const say = (line: string): void => void process.stdout.write(`${line}\n`);

export async function runDemo(flags: DemoFlags): Promise<void> {
  const options = resolveDemoOptions(flags);
  // The SDK's notice that Node 20 support ends in 2027 would print once per child; docs cover it.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  checkWeights(options);
  const dataDir = resolve(options.dataDir);
  mkdirSync(join(dataDir, 'logs'), { recursive: true });

  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const stop of stops.splice(0).reverse()) await stop().catch(() => undefined);
  };
  let interrupted = false;
  const onSignal = (): void => {
    if (interrupted) return;
    interrupted = true;
    say('\nstopping: worker drains its batches, then the dashboard and services stop…');
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  try {
    await startServices(options, dataDir, stops);
    const config = loadConfig(process.env);
    const store = S3ObjectStore.fromConfig(config.s3);
    stops.push(async () => store.client.destroy());
    await store.createBucket(options.bucket);
    const uploaded = await uploadSamples(store, options.bucket, options.samples);
    say(`samples: ${uploaded} images uploaded to s3://${options.bucket}/samples/`);

    const logs = join(dataDir, 'logs');
    const worker = startChild('worker', workerArgs(options), logs);
    stops.push(() => worker.stop());
    const port = await dashboardPort(options.port);
    const dashboard = startChild('dashboard', ['dashboard', '--host', '127.0.0.1', '--port', String(port)], logs);
    stops.push(() => dashboard.stop());
    await waitForHttp(`http://127.0.0.1:${port}/healthz`, dashboard, 60_000);

    const runId = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    const enqueue = await runChild('enqueue', ['enqueue', `s3://${options.bucket}/samples/`, '--run-id', runId, '--json', '--top-k', '5'], logs);
    const run = JSON.parse(enqueue) as RunRecord;
    say(`dashboard: http://127.0.0.1:${port}/  (run page: http://127.0.0.1:${port}/#/runs/${run.id})`);
    say(`run ${run.id}: ${run.total} images queued; outputs go to ${run.output}`);
    say(`logs: ${logs}${sep}{worker,dashboard,enqueue}.log`);

    const final = await waitForRun(config.redisUrl, config.keyPrefix, run.id, [worker, dashboard], () => interrupted);
    if (!final) return;
    const localOut = join(dataDir, 'outputs', run.id);
    const copied = await copyOutputs(store, final.output, localOut);
    const summary = JSON.parse((await store.get(parseS3Uri(final.output).bucket, `${parseS3Uri(final.output).key}summary.json`)).body.toString('utf8')) as RunSummary;
    printSummary(summary, localOut, copied);

    if (!options.once) {
      say(`\nthe dashboard stays up at http://127.0.0.1:${port}/ ; press Ctrl-C to stop`);
      while (!interrupted) await new Promise((r) => setTimeout(r, 250));
    }
  } catch (err) {
    process.exitCode = 1;
    process.stderr.write(`demo failed: ${describeError(err)}\n`);
  } finally {
    await stopAll();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

function checkWeights(options: DemoOptions): void {
  if (/^(s3|https?):\/\//.test(options.weights) || existsSync(options.weights)) return;
  if (options.weights === DEMO_MODEL) {
    throw new ConfigError('--weights', `the demo model is missing at ${options.weights}; restore models/demo from git or run npm run train:demo-model`);
  }
  throw new ConfigError(
    '--weights',
    `no file at ${options.weights}. For real VGG16, download vgg16_weights_tf_dim_ordering_tf_kernels.h5 (553 MB) from https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels.h5`,
  );
}

/** Reuse REDIS_URL / AWS_ENDPOINT_URL_S3 when set; otherwise start embedded servers. */
async function startServices(options: DemoOptions, dataDir: string, stops: Array<() => Promise<void>>): Promise<void> {
  if (process.env.REDIS_URL) {
    say('redis: using REDIS_URL');
  } else {
    const redis = await startRedisServer();
    stops.push(redis.stop);
    process.env.REDIS_URL = redis.url;
    say(`redis: started redis-server at ${redis.url} (no persistence)`);
  }
  if (process.env.AWS_ENDPOINT_URL_S3 || process.env.AWS_ENDPOINT_URL) {
    say(`s3: using ${process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL}`);
  } else {
    const dir = join(dataDir, 's3');
    mkdirSync(dir, { recursive: true });
    const s3 = await startS3rver(dir, [options.bucket]);
    stops.push(s3.stop);
    // s3rver checks signatures against its fixed development credentials.
    Object.assign(process.env, { AWS_ENDPOINT_URL_S3: s3.url, AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: process.env.AWS_REGION ?? 'us-east-1' });
    say(`s3: started embedded S3 (s3rver) at ${s3.url} over ${dir}`);
  }
}

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

async function uploadSamples(store: S3ObjectStore, bucket: string, samples: string): Promise<number> {
  if (!existsSync(samples)) throw new ConfigError('--samples', `no folder at ${samples}`);
  const { readFile } = await import('node:fs/promises');
  let n = 0;
  for (const path of walk(samples)) {
    const type = IMAGE_CONTENT_TYPES[extname(path).toLowerCase()];
    if (!type) continue;
    const key = `samples/${relative(samples, path).split(sep).join('/')}`;
    await store.put(bucket, key, await readFile(path), { contentType: type });
    n++;
  }
  if (n === 0) throw new ConfigError('--samples', `no images (jpg, png, webp, gif, tiff) under ${samples}`);
  return n;
}

function workerArgs(o: DemoOptions): string[] {
  const args = ['worker', '--weights', o.weights, '--batch-size', String(o.batchSize), '--max-batch-delay-ms', '50', '--engine', o.engine, '--drain-timeout-ms', '10000'];
  if (o.labels) args.push('--labels', o.labels);
  return args;
}

async function dashboardPort(requested: number): Promise<number> {
  if (requested === 0) return freePort();
  const { createServer } = await import('node:net');
  const free = await new Promise<boolean>((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(requested, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
  if (free) return requested;
  const port = await freePort();
  say(`port ${requested} is taken; the dashboard uses ${port} instead`);
  return port;
}

/** The command line that started this process (tsx in development, node dist/ when built). */
function cliCommand(): { command: string; args: string[] } {
  return { command: process.execPath, args: [...process.execArgv, process.argv[1] as string] };
}

interface Child {
  name: string;
  process: ChildProcess;
  log: WriteStream;
  logPath: string;
  stop(): Promise<void>;
}

function startChild(name: string, args: string[], logDir: string): Child {
  const cli = cliCommand();
  const logPath = join(logDir, `${name}.log`);
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(cli.command, [...cli.args, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0' } });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  // The parent handles Ctrl-C for the whole demo; a TTY's SIGINT also reaches the children's
  // process group, and each child then drains on its own, which is what we want too.
  return {
    name,
    process: child,
    log,
    logPath,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
        await exited;
        clearTimeout(timer);
      }
      log.end();
    },
  };
}

async function runChild(name: string, args: string[], logDir: string): Promise<string> {
  const child = startChild(name, args, logDir);
  let stdout = '';
  child.process.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  const [code] = (await once(child.process, 'exit')) as [number | null];
  child.log.end();
  if (code !== 0) throw new Error(`${name} exited with code ${code}; see ${child.logPath}`);
  return stdout;
}

async function waitForHttp(url: string, owner: Child, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (owner.process.exitCode !== null) throw new Error(`${owner.name} exited with code ${owner.process.exitCode}; see ${owner.logPath}`);
    try {
      const res = await fetch(url);
      if (res.status < 500) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${owner.name} did not answer on ${url} within ${timeoutMs} ms; see ${owner.logPath}`);
}

/** Poll the run record until it completes; fail fast if a child dies. Null when interrupted. */
async function waitForRun(redisUrl: string, prefix: string, runId: string, children: Child[], interrupted: () => boolean): Promise<RunRecord | null> {
  const redis = createRedis(redisUrl, { role: 'client', name: 'gca-demo' });
  redis.on('error', () => undefined);
  try {
    await waitForRedis(redis, redisUrl);
    const runs = new RunStore(redis, { prefix });
    let last = '';
    for (;;) {
      if (interrupted()) return null;
      for (const c of children) {
        if (c.process.exitCode !== null) throw new Error(`${c.name} exited with code ${c.process.exitCode} during the run; see ${c.logPath}`);
      }
      const run = await runs.requireRun(runId);
      const line = `progress: ${run.done} ok, ${run.failed} failed of ${run.total} (${run.state})`;
      if (line !== last) {
        say(line);
        last = line;
      }
      if (run.state === 'completed') return run;
      await new Promise((r) => setTimeout(r, 500));
    }
  } finally {
    redis.disconnect();
  }
}

async function copyOutputs(store: S3ObjectStore, outputUri: string, localDir: string): Promise<number> {
  const { bucket, key: prefix } = parseS3Uri(outputUri);
  let n = 0;
  for await (const page of store.listPages(bucket, prefix)) {
    for (const o of page) {
      const rel = o.key.slice(prefix.length);
      // Output keys are escaped (no dot segments), but stay defensive about the local path.
      const target = resolve(localDir, rel);
      if (!target.startsWith(resolve(localDir) + sep)) continue;
      mkdirSync(dirname(target), { recursive: true });
      await writeFile(target, (await store.get(bucket, o.key)).body);
      n++;
    }
  }
  return n;
}

function printSummary(s: RunSummary, localOut: string, copied: number): void {
  say('');
  say(`run ${s.runId} completed: ${s.counts.ok} ok, ${s.counts.failed} failed of ${s.counts.total} in ${s.wallTimeSeconds.toFixed(1)} s (${s.throughputImagesPerSecond.toFixed(2)} img/s)`);
  say(`degenerate maps: ${s.degenerateMaps}`);
  if (s.classHistogram.length > 0) {
    say('top-1 classes:');
    for (const c of s.classHistogram.slice(0, 10)) say(`  ${String(c.count).padStart(4)}  ${c.label ?? `class ${c.index}`}`);
  }
  const p = s.provenance;
  say(`model: ${p.modelName ?? '?'} (${(p.weightsHash ?? '').slice(0, 12)}), layer ${p.layer ?? '?'}, ${p.method ?? ''} on ${p.engine ?? '?'}/${p.backend ?? '?'}`);
  say(`outputs: ${s.output}  (${copied} files copied to ${localOut})`);
  say(`manifest: ${join(localOut, 'manifest.jsonl')}`);
}
