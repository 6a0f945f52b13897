/**
 * The newcomer's demo: the real pipeline on one machine. It starts (or reuses) Redis and S3, uploads
 * the sample images, runs a real `worker` and `dashboard` as child processes and a real `enqueue`,
 * waits for the run to complete, copies the outputs to a local folder and prints the summary.
 *
 * Stopping (Ctrl-C, SIGTERM, a closed terminal, or the end of `--once`) goes in dependency order:
 * enqueue and worker first (the worker drains while Redis and S3 still answer), then the
 * dashboard, then S3 and Redis. Every child runs in a process group of its own, because a
 * terminal's Ctrl-C goes to the whole foreground group and would otherwise stop Redis in the same
 * instant as the worker that needs it. Children with an IPC channel (worker, dashboard, enqueue,
 * s3rver) also stop when the demo dies without cleaning up; a `redis-server` can only be killed
 * by the demo's exit handler.
 *
 * Exit codes: 0 when `--once` saw the run complete; 1 when something failed; when a signal
 * stopped it, 128 + the signal's number after a clean stop (130 for Ctrl-C, 143 for SIGTERM), the
 * status shells and `npm run` report for a command a signal ended, whichever way it was started.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants as osConstants } from 'node:os';
import { createWriteStream, existsSync, mkdirSync, readdirSync, statSync, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { basename, dirname, extname, join, relative, resolve, sep } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { DEFAULTS, loadConfig } from '../shared/config.js';
import { IMAGE_CONTENT_TYPES } from '../shared/image-types.js';
import { ConfigError, describeError } from '../shared/errors.js';
import type { RunSummary } from '../shared/manifest.js';
import { keySpaceOf, type KeySpace } from '../shared/queue/keys.js';
import { createRedis, waitForRedis } from '../shared/queue/redis.js';
import { RunStore, type RunRecord } from '../shared/queue/run-store.js';
import { S3ObjectStore } from '../shared/storage/s3-store.js';
import { parseS3Uri } from '../shared/storage/uri.js';
import { freePort } from '../dev/free-port.js';
import { startRedisServer, startS3rver } from '../dev/local-services.js';
import { DEMO_MODEL, resolveDemoOptions, type DemoFlags, type DemoOptions } from './options.js';
import { ShutdownPlan, untilAborted } from './shutdown.js';

const say = (line: string): void => void process.stdout.write(`${line}\n`);
const STOP_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/**
 * Start-up steps as they happen, with the seconds since the demo started: the newcomer sees what
 * is going on (a model loading, a dashboard starting) instead of a silent terminal.
 */
export interface StepPrinter {
  (who: string, text: string): void;
  /** Milliseconds since the last printed step. */
  quietMs(): number;
}

export function stepPrinter(startedMs = performance.now(), write: (line: string) => void = say): StepPrinter {
  let last = performance.now();
  const step = (who: string, text: string): void => {
    last = performance.now();
    write(`[${((last - startedMs) / 1000).toFixed(1).padStart(5)}s] ${who.padEnd(9)} ${text}`);
  };
  return Object.assign(step, { quietMs: () => performance.now() - last });
}

/** What is still starting; while anything is and nothing was said for a while, say so. */
function startupTicker(step: StepPrinter, quietMs = 5_000): { pending: Set<string>; stop(): void } {
  const pending = new Set<string>();
  const timer = setInterval(() => {
    if (pending.size > 0 && step.quietMs() >= quietMs) step('…', `still starting: ${[...pending].join(', ')}`);
  }, 500);
  timer.unref();
  return { pending, stop: () => clearInterval(timer) };
}

export async function runDemo(flags: DemoFlags): Promise<void> {
  const options = resolveDemoOptions(flags);
  checkWeights(options);
  const dataDir = resolve(options.dataDir);
  mkdirSync(join(dataDir, 'logs'), { recursive: true });
  const step = stepPrinter();
  const ticker = startupTicker(step);

  const plan = new ShutdownPlan(['worker', 'dashboard', 'services']);
  const interrupt = new AbortController();
  let stoppedBy: NodeJS.Signals | undefined;
  const onSignal = (received: NodeJS.Signals): void => {
    if (interrupt.signal.aborted) return;
    stoppedBy = received;
    say('\nstopping: the worker drains its batches, then the dashboard, then S3 and Redis stop…');
    interrupt.abort();
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  // Should the demo exit without stopping its children (an uncaught error), take them along.
  const killAll = (): void => plan.killAll();
  process.on('exit', killAll);
  const signal = interrupt.signal;

  try {
    say('gradcam-audit demo: the real pipeline on this machine (Ctrl-C stops everything)');
    const services = await untilAborted(startServices(options, dataDir, plan, step), signal);
    const config = loadConfig(process.env);
    const store = S3ObjectStore.fromConfig(config.s3);
    plan.add('services', { name: 'S3 client', stop: async () => store.destroy() });
    await untilAborted(store.createBucket(options.bucket), signal);
    const prefix = `samples/${basename(resolve(options.samples))}/`;
    const uploaded = await untilAborted(uploadSamples(store, options.bucket, options.samples, prefix), signal);
    step('samples', `${uploaded} images uploaded to s3://${options.bucket}/${prefix}`);
    if (options.samplesNote) step('', `(${options.samplesNote})`);

    const logs = join(dataDir, 'logs');
    step('worker', `starting (${options.engine} engine, log: ${join(logs, 'worker.log')})`);
    ticker.pending.add('worker (Node, then the model)');
    // The worker's own start-up log lines are echoed as steps until it takes jobs; its warnings
    // and errors always are.
    let workerReady = false;
    const worker = startChild('worker', workerArgs(options), logs, plan, 'worker', (line) => {
      if (line.level >= 40) step('worker', `${line.level >= 50 ? 'error' : 'warning'}: ${line.msg}`);
      else if (!workerReady) step('worker', describeWorkerStep(line));
      if (line.msg === 'worker ready') {
        workerReady = true;
        ticker.pending.delete('worker (Node, then the model)');
      }
    });
    const port = await dashboardPort(options.port);
    step('dashboard', 'starting');
    ticker.pending.add('dashboard');
    const dashboard = startChild('dashboard', ['dashboard', '--host', '127.0.0.1', '--port', String(port)], logs, plan, 'dashboard');
    await untilAborted(waitForHttp(`http://127.0.0.1:${port}/healthz`, dashboard, 60_000, signal), signal);
    ticker.pending.delete('dashboard');
    step('dashboard', `http://127.0.0.1:${port}/`);

    const runId = `demo-${new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
    const source = `s3://${options.bucket}/${prefix}`;
    step('enqueue', `listing ${source}`);
    ticker.pending.add('enqueue');
    const enqueue = await untilAborted(runChild('enqueue', ['enqueue', source, '--run-id', runId, '--json', '--top-k', '5'], logs, plan), signal);
    const run = JSON.parse(enqueue) as RunRecord;
    ticker.pending.delete('enqueue');
    step('enqueue', `run ${run.id}: ${run.total} images queued; outputs go to ${run.output}`);
    say('');
    say(`run page: http://127.0.0.1:${port}/#/runs/${run.id}`);
    say(`logs:     ${logs}${sep}{worker,dashboard,enqueue}.log`);
    printCliPointers(services, options.bucket, run.id);
    say('');

    const final = await untilAborted(waitForRun(config.redisUrl, keySpaceOf(config), run.id, [worker, dashboard], signal), signal);
    const localOut = join(dataDir, 'outputs', run.id);
    const copied = await untilAborted(copyOutputs(store, final.output, localOut), signal);
    const summary = JSON.parse((await store.get(parseS3Uri(final.output).bucket, `${parseS3Uri(final.output).key}summary.json`)).body.toString('utf8')) as RunSummary;
    printSummary(summary, localOut, copied);

    if (!options.once) {
      say(`\nthe dashboard stays up at http://127.0.0.1:${port}/ ; press Ctrl-C to stop`);
      await once(signal, 'abort');
    }
  } catch (err) {
    if (!signal.aborted) {
      process.exitCode = 1;
      process.stderr.write(`demo failed: ${describeError(err)}\n`);
    }
  } finally {
    ticker.stop();
    await plan.stopAll((phase, ms) => say(`${phase} stopped (${ms} ms)`));
    for (const s of STOP_SIGNALS) process.off(s, onSignal);
    process.off('exit', killAll);
    if (stoppedBy !== undefined) process.exitCode = 128 + osConstants.signals[stoppedBy];
  }
}

/** A worker start-up log line as one readable step. */
export function describeWorkerStep(line: LogLine): string {
  const f = line.fields;
  switch (line.msg) {
    case 'loading model':
      return `loading model ${String(f.weights)}`;
    case 'engine ready':
      return `engine ready: ${String(f.engine)}/${String(f.backend)} on ${String(f.device)}, layer ${String(f.layer)}`;
    case 'worker ready':
      return `ready: taking jobs (batch ${String(f.batchSize)})`;
    case 'compiled ONNX graph':
      return `compiled the ONNX graph in ${String(f.compileMs)} ms (cached for the next start)`;
    default:
      return line.msg;
  }
}

/**
 * The settings that point the CLI (another terminal, a script) at the services the demo uses. The
 * embedded S3 server only accepts its fixed development credentials, so they are shown; credentials
 * that came from the user's environment are not.
 */
function printCliPointers(services: ServiceSettings, bucket: string, runId: string): void {
  const cli = cliInvocation();
  say('');
  say('to use the CLI on these services from another terminal while the demo runs:');
  say(`  export REDIS_URL=${services.redisUrl}`);
  if (services.s3.embedded) {
    say(`  export AWS_ENDPOINT_URL_S3=${services.s3.endpoint} AWS_REGION=${services.s3.region} AWS_ACCESS_KEY_ID=${services.s3.accessKeyId} AWS_SECRET_ACCESS_KEY=${services.s3.secretAccessKey}`);
  } else {
    say(`  export AWS_ENDPOINT_URL_S3=${services.s3.endpoint ?? '(unset: AWS S3)'}   # and your AWS_* credentials, as for this demo`);
  }
  say(`  ${cli} status ${runId}          # progress, img/s, ETA`);
  say(`  ${cli} enqueue s3://${bucket}/<folder>/   # audit more images you upload there (same worker)`);
}

/** How the user started this CLI, for copy-pasteable commands. */
function cliInvocation(): string {
  const script = process.argv[1] ?? '';
  const rel = relative(process.cwd(), script);
  if (rel.endsWith(join('bin', 'gradcam-audit.js')) && !rel.startsWith('..')) return `node ${rel}`;
  return 'gradcam-audit';
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

interface ServiceSettings {
  redisUrl: string;
  s3: { embedded: boolean; endpoint?: string; region: string; accessKeyId?: string; secretAccessKey?: string };
}

/** s3rver checks request signatures against these fixed development credentials. */
const S3RVER_CREDENTIALS = Object.freeze({ accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' });

/** Reuse REDIS_URL / AWS_ENDPOINT_URL_S3 when set; otherwise start embedded servers. */
async function startServices(options: DemoOptions, dataDir: string, plan: ShutdownPlan, step: StepPrinter): Promise<ServiceSettings> {
  if (process.env.REDIS_URL) {
    step('redis', 'using REDIS_URL');
  } else {
    const redis = await startRedisServer({ detached: true });
    plan.add('services', { name: 'redis-server', stop: redis.stop, kill: redis.kill });
    process.env.REDIS_URL = redis.url;
    step('redis', `started redis-server at ${redis.url} (no persistence)`);
  }
  const region = process.env.AWS_REGION ?? 'us-east-1';
  const configured = process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  if (configured) {
    step('s3', `using ${configured}`);
    return { redisUrl: process.env.REDIS_URL, s3: { embedded: false, endpoint: configured, region } };
  }
  const dir = join(dataDir, 's3');
  mkdirSync(dir, { recursive: true });
  const s3 = await startS3rver(dir, [options.bucket], { detached: true });
  plan.add('services', { name: 's3rver', stop: s3.stop, kill: s3.kill });
  Object.assign(process.env, { AWS_ENDPOINT_URL_S3: s3.url, AWS_ACCESS_KEY_ID: S3RVER_CREDENTIALS.accessKeyId, AWS_SECRET_ACCESS_KEY: S3RVER_CREDENTIALS.secretAccessKey, AWS_REGION: region });
  step('s3', `started embedded S3 (s3rver) at ${s3.url} over ${dir}`);
  return { redisUrl: process.env.REDIS_URL, s3: { embedded: true, endpoint: s3.url, region, ...S3RVER_CREDENTIALS } };
}

function* walk(dir: string): Generator<string> {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) yield* walk(path);
    else yield path;
  }
}

async function uploadSamples(store: S3ObjectStore, bucket: string, samples: string, prefix: string): Promise<number> {
  if (!existsSync(samples)) throw new ConfigError('--samples', `no folder at ${samples}`);
  const { readFile } = await import('node:fs/promises');
  let n = 0;
  for (const path of walk(samples)) {
    const type = IMAGE_CONTENT_TYPES[extname(path).toLowerCase()];
    if (!type) continue;
    const key = `${prefix}${relative(samples, path).split(sep).join('/')}`;
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
}

/** How long each child may take to stop after SIGTERM before it is killed. */
const STOP_GRACE_MS: Record<string, number> = { worker: 15_000 };
const DEFAULT_STOP_GRACE_MS = 5000;

/**
 * Spawn the CLI as a child in a process group of its own, logging to `<name>.log`, and register
 * its stop in `phase`. The IPC channel makes the child stop by itself should the demo vanish.
 */
/** A child's JSON log line (pino), as far as the demo reads it. */
export interface LogLine {
  level: number;
  msg: string;
  fields: Record<string, unknown>;
}

function startChild(name: string, args: string[], logDir: string, plan: ShutdownPlan, phase: string, onLogLine?: (line: LogLine) => void): Child {
  const cli = cliCommand();
  const logPath = join(logDir, `${name}.log`);
  const log = createWriteStream(logPath, { flags: 'a' });
  const child = spawn(cli.command, [...cli.args, ...args], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true, env: { ...process.env, FORCE_COLOR: '0' } });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  if (onLogLine && child.stderr) {
    // Logs are JSON lines on stderr (not a TTY here); anything else goes only to the log file.
    createInterface({ input: child.stderr }).on('line', (text) => {
      if (!text.startsWith('{')) return;
      try {
        const { level, msg, ...fields } = JSON.parse(text) as { level?: number; msg?: string };
        if (typeof level === 'number' && typeof msg === 'string') onLogLine({ level, msg, fields });
      } catch {
        // a partial or non-JSON line: the log file has it
      }
    });
  }
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  plan.add(phase, {
    name,
    async stop() {
      if (running()) {
        const exited = once(child, 'exit');
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS[name] ?? DEFAULT_STOP_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      log.end();
    },
    kill() {
      if (running()) child.kill('SIGKILL');
    },
  });
  return { name, process: child, log, logPath };
}

async function runChild(name: string, args: string[], logDir: string, plan: ShutdownPlan): Promise<string> {
  const child = startChild(name, args, logDir, plan, 'worker');
  let stdout = '';
  child.process.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  // 'close', not 'exit': stdout may still hold data when the process has exited.
  const [code] = (await once(child.process, 'close')) as [number | null];
  if (code !== 0) throw new Error(`${name} exited with code ${code}; see ${child.logPath}`);
  return stdout;
}

async function waitForHttp(url: string, owner: Child, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && !signal.aborted) {
    if (owner.process.exitCode !== null || owner.process.signalCode !== null) {
      throw new Error(`${owner.name} exited with ${owner.process.exitCode ?? owner.process.signalCode}; see ${owner.logPath}`);
    }
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

/** Poll the run record until it completes; fail fast if a child dies; give up when `signal` aborts. */
async function waitForRun(redisUrl: string, keySpace: KeySpace, runId: string, children: Child[], signal: AbortSignal): Promise<RunRecord> {
  const redis = createRedis(redisUrl, { role: 'client', name: 'gca-demo' });
  redis.on('error', () => undefined);
  try {
    await waitForRedis(redis, redisUrl, DEFAULTS.redisWaitMs);
    const runs = new RunStore(redis, keySpace);
    let last = '';
    for (;;) {
      if (signal.aborted) throw new Error('interrupted');
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
  say(`run ${s.runId} completed: ${s.counts.ok} ok, ${s.counts.failed} failed of ${s.counts.total}`);
  say(`throughput: ${s.throughputImagesPerSecond.toFixed(2)} img/s over ${s.processingSeconds.toFixed(1)} s of processing (${s.wallTimeSeconds.toFixed(1)} s from enqueue)`);
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
