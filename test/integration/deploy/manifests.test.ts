/**
 * No Docker engine or cluster runs here, so the deployment files are validated structurally: they
 * parse, and every image target, command, flag, env name, port and label agrees with the code.
 * Flags are checked by the real commander definitions, queue keys by a real BullMQ Queue.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { Queue } from 'bullmq';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { COMMAND_LOADERS } from '../../../src/commands.js';
import { DEFAULTS, ENV_VARS, loadConfig } from '../../../src/shared/config.js';
import { bullPrefix } from '../../../src/shared/queue/contract.js';
import { keySpaceOf } from '../../../src/shared/queue/keys.js';
import { shardCount } from '../../../src/shared/queue/shards.js';
import { DASHBOARD_DEFAULTS } from '../../../src/dashboard/options.js';
import { hostPolicyFor, parseAllowedHost } from '../../../src/dashboard/host-policy.js';
import { PIPELINE_DEFAULTS } from '../../../src/worker/pipeline/options.js';
import { services } from '../../helpers/services.js';

const ROOT = new URL('../../../', import.meta.url);
const read = (rel: string): string => readFileSync(new URL(rel, ROOT), 'utf8');

type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => v as Obj;

/** Parse a subcommand's argv with the real CLI definition; return the options it did not know. */
async function unknownFlags(args: string[]): Promise<string[]> {
  const [name, ...rest] = args;
  const load = COMMAND_LOADERS[name ?? ''];
  if (!load) throw new Error(`not a gradcam-audit subcommand: ${name}`);
  const cmd = await load();
  return cmd.parseOptions(rest).unknown.filter((a) => a.startsWith('-'));
}

function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

/** The Dockerfile's stages: base image, and the ENV, USER, COPY, RUN and CMD of each. */
interface Stage {
  name: string;
  from: string;
  env: Record<string, string>;
  user?: string;
  copies: string[];
  runs: string[];
  cmd?: string[];
}

function parseDockerfile(text: string): { args: Record<string, string>; stages: Stage[] } {
  // Join continuation lines, drop comments.
  const lines = text.replace(/\\\n/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const line of lines) {
    const [instr = '', ...rest] = line.split(/\s+/);
    const body = rest.join(' ');
    const stage = stages.at(-1);
    switch (instr.toUpperCase()) {
      case 'ARG': {
        const m = /^(\w+)=(.*)$/.exec(body);
        if (m && !stage) args[m[1] as string] = (m[2] as string).replace(/^"|"$/g, '');
        break;
      }
      case 'FROM': {
        const m = /^(\S+)\s+AS\s+(\S+)$/i.exec(body);
        if (!m) throw new Error(`unnamed stage: ${line}`);
        const from = (m[1] as string).replace(/^\$\{(\w+)\}$/, (_, a: string) => args[a] ?? '');
        const parent = stages.find((x) => x.name === from);
        stages.push({ name: m[2] as string, from: parent ? parent.from : from, env: {}, copies: [], runs: [] });
        break;
      }
      case 'ENV':
        for (const m of body.matchAll(/(\w+)=(\S+)/g)) (stage as Stage).env[m[1] as string] = m[2] as string;
        break;
      case 'USER':
        (stage as Stage).user = body;
        break;
      case 'COPY':
        if (!body.startsWith('--from')) (stage as Stage).copies.push(...body.split(/\s+/).slice(0, -1));
        break;
      case 'RUN':
        (stage as Stage).runs.push(body);
        break;
      case 'CMD':
        (stage as Stage).cmd = JSON.parse(body) as string[];
        break;
    }
  }
  return { args, stages };
}

const dockerfile = parseDockerfile(read('Dockerfile'));
const stage = (name: string): Stage => {
  const s = dockerfile.stages.find((x) => x.name === name);
  if (!s) throw new Error(`no Dockerfile stage ${name}`);
  return s;
};
const RUNTIME_TARGETS = ['cpu', 'gpu', 'gpu-tfjs'] as const;
/** The user (uid) and cache directory every runtime image uses, for the deploy files to match. */
const IMAGE_UID = '1000';
const IMAGE_CACHE = '/cache';

describe('Dockerfile', () => {
  it('has cpu, gpu (ONNX Runtime CUDA, from public sources) and gpu-tfjs (tfjs-node-gpu) targets', () => {
    expect(dockerfile.stages.map((s) => s.name)).toEqual(expect.arrayContaining([...RUNTIME_TARGETS]));
    const gpu = stage('gpu');
    // onnxruntime-node 1.30's CUDA provider: CUDA 12 with cuDNN 9 (the `cudnn` runtime images).
    expect(gpu.from).toMatch(/^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu/);
    expect(gpu.runs.join('\n')).toMatch(/ONNXRUNTIME_NODE_INSTALL=cuda12 node script\/install\.js/);
    expect(gpu.runs.join('\n')).toMatch(/libonnxruntime_providers_cuda\.so/);
    expect(gpu.cmd).toEqual(expect.arrayContaining(['worker', '--engine', 'onnx', '--onnx-providers', 'auto']));
    const tfjs = stage('gpu-tfjs');
    expect(tfjs.from).toMatch(/^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime/);
    expect(tfjs.runs.join('\n')).toMatch(/@tensorflow\/tfjs-node-gpu@4\.22\.0/);
    expect(tfjs.runs.join('\n')).toMatch(/TFJS_NODE_CDN_STORAGE/);
    expect(tfjs.runs.join('\n')).toMatch(/custom-binary\.json/);
    // Every runtime image starts through the installed command (it sizes libuv's threadpool to the
    // cores before anything runs), which takes the compiled CLI since the images hold dist/, not src/.
    const entrypoints = read('Dockerfile').match(/^ENTRYPOINT .*$/gm) ?? [];
    expect(entrypoints).toEqual(Array(3).fill('ENTRYPOINT ["node", "bin/gradcam-audit.js"]'));
    // Three runtime images, and the build stage: the build compiles against bin/cores.d.ts (the
    // compiled src/shared/cores.js reaches bin/cores.js through dist/bin/cores.js, a re-export).
    expect(read('Dockerfile').match(/^COPY bin \.\/bin$/gm)).toHaveLength(4);
    expect(read('Dockerfile')).toMatch(/AS build\n(?:.*\n)*?COPY bin \.\/bin\nRUN npm run build/);
    expect(read('Dockerfile').match(/^COPY src /gm)).toHaveLength(1);
    // The compiled CLI must exist after `npm run build`.
    expect(JSON.parse(read('tsconfig.build.json')).include).toContain('src/**/*.ts');
  });

  it('builds on a Node LTS that package.json supports', () => {
    const node = /^node:(\d+)[-.]/.exec(stage('cpu').from);
    expect(node, stage('cpu').from).not.toBeNull();
    const major = Number(node?.[1]);
    expect([22, 24]).toContain(major);
    const engines = (JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node;
    expect(engines).toMatch(new RegExp(`(^|\\|\\|\\s*)(\\^|>=)${major}\\b|>=\\s*2[02]`));
  });

  it('runs every runtime image as uid 1000 with a cache under /cache it owns, and metrics reachable from outside', () => {
    for (const name of RUNTIME_TARGETS) {
      const s = stage(name);
      expect(s.user, `${name} USER`).toBe(`${IMAGE_UID}:${IMAGE_UID}`);
      expect(s.env.XDG_CACHE_HOME, `${name} XDG_CACHE_HOME`).toBe(IMAGE_CACHE);
      expect(s.runs.join('\n'), `${name} creates ${IMAGE_CACHE} for uid ${IMAGE_UID}`).toMatch(new RegExp(`mkdir -p ${IMAGE_CACHE} && chown ${IMAGE_UID}:${IMAGE_UID} ${IMAGE_CACHE}`));
      expect(s.env.GRADCAM_AUDIT_METRICS_HOST, `${name} metrics host`).toBe('0.0.0.0');
      // Project variables are ones the code reads; the rest belong to CUDA, ORT or Node.
      for (const key of Object.keys(s.env)) {
        if (key.startsWith('GRADCAM_AUDIT_') || key.startsWith('AWS_')) expect(Object.keys(ENV_VARS), `${name}: unknown env ${key}`).toContain(key);
      }
      for (const src of s.copies) expect(existsSync(new URL(src, ROOT)), `${name} copies ${src}`).toBe(true);
    }
    // A GPU image must not quietly compute on the CPU.
    expect(stage('gpu').env.GRADCAM_AUDIT_REQUIRE_GPU).toBe('true');
    expect(stage('gpu-tfjs').env.GRADCAM_AUDIT_REQUIRE_GPU).toBe('true');
    // The gpu images have no `node` user of their own: they create uid 1000.
    for (const name of ['gpu', 'gpu-tfjs']) expect(stage(name).runs.join('\n')).toMatch(/useradd --uid 1000 --gid 1000/);
  });

  it('has valid default commands and a build context without node_modules', async () => {
    for (const name of RUNTIME_TARGETS) {
      const cmd = stage(name).cmd;
      if (cmd) expect(await unknownFlags(cmd), `${name} CMD`).toEqual([]);
    }
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', 'demo-data', '.git']));
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Obj>; volumes: Obj };
  const workers = Object.entries(compose.services).filter(([, svc]) => (svc.command as string[] | undefined)?.[0] === 'worker');

  it('has redis, minio with bucket creation, dashboard, a one-shot producer, and GPU (ONNX, tfjs) and CPU workers by profile', () => {
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining(['redis', 'minio', 'minio-init', 'dashboard', 'producer', 'worker', 'worker-tfjs-gpu', 'worker-cpu']));
    expect(String(obj(compose.services['minio-init']).command)).toMatch(/mc mb/);
    expect(obj(compose.services.producer).restart).toBe('no');
    const target = (name: string) => obj(obj(compose.services[name]).build).target;
    // The default GPU worker is the ONNX Runtime CUDA image, on the CUDA provider.
    expect(target('worker')).toBe('gpu');
    expect(obj(compose.services.worker).command).toEqual(expect.arrayContaining(['--engine', 'onnx', '--onnx-providers', 'auto']));
    expect(target('worker-tfjs-gpu')).toBe('gpu-tfjs');
    expect(target('worker-cpu')).toBe('cpu');
    const devices = (name: string) => obj(obj(obj(obj(compose.services[name]).deploy).resources).reservations).devices as Obj[] | undefined;
    expect(devices('worker')?.[0]).toMatchObject({ driver: 'nvidia', capabilities: ['gpu'] });
    expect(devices('worker-tfjs-gpu')?.[0]).toMatchObject({ driver: 'nvidia', capabilities: ['gpu'] });
    expect(obj(compose.services['worker-cpu']).deploy).not.toHaveProperty('resources');
    // Each variant is opt-in, so `docker compose up` never needs a GPU it may not have.
    expect(workers.map(([, svc]) => (svc.profiles as string[])[0]).sort()).toEqual(['cpu', 'gpu', 'gpu-tfjs']);
    for (const [name, svc] of workers) expect(obj(svc.deploy).replicas, `${name} replicas`).toBeDefined();
  });

  it('uses only known env names, existing build targets and valid CLI flags', async () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      const build = svc.build as Obj | undefined;
      if (!build) continue;
      expect(dockerfile.stages.map((s) => s.name), `${name} build target`).toContain(build.target);
      for (const key of Object.keys(obj(svc.environment))) {
        expect(Object.keys(ENV_VARS), `${name}: unknown env ${key}`).toContain(key);
      }
      const command = (svc.command as string[]).map((a) => a.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1'));
      expect(await unknownFlags(command), `${name} flags`).toEqual([]);
    }
  });

  it('workers serve metrics beyond loopback, keep their cache on a volume at the image cache path, and get time to drain', () => {
    for (const [name, svc] of workers) {
      const cmd = svc.command as string[];
      const port = flagValue(cmd, '--metrics-port');
      expect(port, `${name} metrics port`).toBeDefined();
      const host = flagValue(cmd, '--metrics-host') ?? stage(String(obj(svc.build).target)).env.GRADCAM_AUDIT_METRICS_HOST;
      expect(host, `${name} metrics host`).toBe('0.0.0.0');
      expect(svc.expose as string[], `${name} exposes metrics`).toContain(port);
      const volumes = (svc.volumes as string[]).map((v) => v.split(':'));
      const cache = volumes.find(([, path]) => path === stage(String(obj(svc.build).target)).env.XDG_CACHE_HOME);
      expect(cache, `${name} cache volume`).toBeDefined();
      expect(Object.keys(compose.volumes)).toContain(cache?.[0]);
      const grace = Number(String(svc.stop_grace_period).replace(/s$/, ''));
      expect(grace * 1000, `${name} stop_grace_period`).toBeGreaterThan(PIPELINE_DEFAULTS.drainTimeoutMs);
    }
  });

  it('publishes the dashboard port it binds and protects the non-loopback bind', () => {
    const dash = obj(compose.services.dashboard);
    const cmd = dash.command as string[];
    expect(flagValue(cmd, '--host')).toBe('0.0.0.0');
    const port = flagValue(cmd, '--port');
    expect(port).toBe(String(DASHBOARD_DEFAULTS.port));
    expect((dash.ports as string[]).some((p) => p.endsWith(`:${port}`))).toBe(true);
    expect(Object.keys(obj(dash.environment))).toContain('DASHBOARD_TOKEN');
  });
});

describe('Kubernetes manifests and KEDA', () => {
  const docs: Obj[] = readdirSync(new URL('deploy/k8s/', ROOT))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(read(`deploy/k8s/${f}`)).map((d) => d.toJS() as Obj));
  const find = (kind: string, name: string): Obj => {
    const d = docs.find((x) => x.kind === kind && obj(x.metadata).name === name);
    if (!d) throw new Error(`no ${kind} ${name}`);
    return d;
  };
  const worker = find('Deployment', 'gradcam-audit-worker');
  const workerPod = obj(obj(obj(worker.spec).template).spec);
  const workerContainer = (workerPod.containers as Obj[])[0] as Obj;
  const workerArgs = workerContainer.args as string[];

  let queue: Queue;
  beforeAll(() => {
    const url = new URL(services().redisUrl);
    queue = new Queue(DEFAULTS.queueName, { prefix: bullPrefix({ prefix: DEFAULTS.keyPrefix }), connection: { host: url.hostname, port: Number(url.port) } });
  });
  afterAll(async () => {
    await queue.close();
  });

  it('runs workers on GPUs with the ONNX Runtime CUDA image and a grace period matched to the drain', async () => {
    expect(obj(obj(workerContainer.resources).limits)['nvidia.com/gpu']).toBe(1);
    // The image tag names the Dockerfile target: `gpu` is the ONNX Runtime CUDA image.
    const tag = String(workerContainer.image).split(':').at(-1);
    expect(tag).toBe('gpu');
    expect(stage(tag as string).cmd).toEqual(expect.arrayContaining(['--engine', 'onnx']));
    expect(flagValue(workerArgs, '--engine')).toBe('onnx');
    expect(flagValue(workerArgs, '--onnx-providers')).toBe('auto');
    expect(await unknownFlags(workerArgs)).toEqual([]);
    const drainMs = Number(flagValue(workerArgs, '--drain-timeout-ms') ?? PIPELINE_DEFAULTS.drainTimeoutMs);
    const grace = workerPod.terminationGracePeriodSeconds as number;
    expect(grace * 1000).toBeGreaterThan(drainMs);
    expect(grace * 1000).toBeLessThanOrEqual(drainMs + 15_000);
    const metricsPort = Number(flagValue(workerArgs, '--metrics-port'));
    expect((workerContainer.ports as Obj[])[0]).toMatchObject({ containerPort: metricsPort });
    expect(obj(obj(obj(worker.spec).template).metadata).annotations).toMatchObject({ 'prometheus.io/port': String(metricsPort) });
    expect(flagValue(workerArgs, '--metrics-host')).toBe('0.0.0.0');
  });

  it('runs as the image user, with the cache volume where the image keeps its cache and writable by that user', () => {
    const security = obj(workerPod.securityContext);
    expect(String(security.runAsUser)).toBe(IMAGE_UID);
    expect(String(security.fsGroup)).toBe(IMAGE_UID);
    expect(security.runAsNonRoot).toBe(true);
    const env = Object.fromEntries(((workerContainer.env as Obj[] | undefined) ?? []).map((e) => [e.name, e.value]));
    const cacheHome = (env.XDG_CACHE_HOME as string | undefined) ?? stage('gpu').env.XDG_CACHE_HOME;
    expect(cacheHome).toBe(stage('gpu').env.XDG_CACHE_HOME);
    const mount = (workerContainer.volumeMounts as Obj[]).find((m) => m.name === 'cache');
    expect(mount?.mountPath).toBe(cacheHome);
    expect((workerPod.volumes as Obj[]).map((v) => v.name)).toContain('cache');
  });

  it('selectors match pod labels, and every container reads the Secret with known keys', () => {
    const secret = find('Secret', 'gradcam-audit');
    for (const key of Object.keys(obj(secret.stringData))) expect(Object.keys(ENV_VARS), `secret key ${key}`).toContain(key);
    for (const d of docs.filter((x) => x.kind === 'Deployment')) {
      const spec = obj(d.spec);
      expect(obj(obj(obj(spec.template).metadata).labels)).toMatchObject(obj(obj(spec.selector).matchLabels));
      const c = (obj(obj(spec.template).spec).containers as Obj[])[0] as Obj;
      expect((c.envFrom as Obj[]).map((e) => obj(e.secretRef).name)).toContain('gradcam-audit');
      for (const e of (c.env as Obj[] | undefined) ?? []) expect(Object.keys(ENV_VARS)).toContain(e.name);
    }
  });

  it('exposes the dashboard through a Service on the port it binds, with credentials for 0.0.0.0', async () => {
    const dep = find('Deployment', 'gradcam-audit-dashboard');
    const c = (obj(obj(obj(dep.spec).template).spec).containers as Obj[])[0] as Obj;
    const args = c.args as string[];
    expect(await unknownFlags(args)).toEqual([]);
    expect(flagValue(args, '--host')).toBe('0.0.0.0');
    const port = Number(flagValue(args, '--port'));
    expect((c.ports as Obj[])[0]).toMatchObject({ containerPort: port });
    const svc = find('Service', 'gradcam-audit-dashboard');
    expect(obj(svc.spec).selector).toEqual(obj(obj(obj(dep.spec).selector).matchLabels));
    expect((obj(svc.spec).ports as Obj[])[0]).toMatchObject({ port });
    expect(Object.keys(obj(find('Secret', 'gradcam-audit').stringData))).toContain('DASHBOARD_TOKEN');
  });

  it('scales the worker Deployment on waiting, prioritized, delayed and active jobs, from zero, with an activation threshold', () => {
    const so = find('ScaledObject', 'gradcam-audit-worker');
    const spec = obj(so.spec);
    expect(obj(spec.scaleTargetRef).name).toBe('gradcam-audit-worker');
    expect(spec.minReplicaCount).toBe(0);
    const triggers = spec.triggers as Obj[];
    const redis = obj(triggers.find((t) => t.type === 'redis')?.metadata);
    // The list KEDA reads is exactly BullMQ's wait list for our prefix and queue.
    expect(redis.listName).toBe(queue.keys.wait);
    expect(redis.activationListLength).toBeDefined();
    const api = obj(triggers.find((t) => t.type === 'metrics-api')?.metadata);
    const url = new URL(String(api.url));
    expect(url.hostname.split('.')[0]).toBe('gradcam-audit-dashboard');
    expect(Number(url.port)).toBe(DASHBOARD_DEFAULTS.port);
    expect(url.pathname).toBe('/api/queue');
    // Active jobs keep a worker up: a run's last job holds one while the run finalizes.
    expect(api.valueLocation).toBe('demand');
    // The dashboard answers that host name (it refuses unknown Host headers against DNS rebinding).
    const dash = find('Deployment', 'gradcam-audit-dashboard');
    const args = ((obj(obj(obj(dash.spec).template).spec).containers as Obj[])[0] as Obj).args as string[];
    const allowed = args.flatMap((a, i) => (a === '--allowed-host' ? [parseAllowedHost(args[i + 1] as string)] : []));
    expect(hostPolicyFor(flagValue(args, '--host') as string, allowed).allows(url.host)).toBe(true);
    expect(api.activationTargetValue).toBeDefined();
    // Prioritized jobs live in a sorted set, not the wait list: the dashboard endpoint counts them.
    expect(queue.keys.prioritized).toBe(`${DEFAULTS.keyPrefix}:${DEFAULTS.queueName}:prioritized`);
  });
});

describe('Kubernetes on a Redis Cluster (deploy/k8s/redis-cluster)', () => {
  const base: Obj[] = readdirSync(new URL('deploy/k8s/', ROOT))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(read(`deploy/k8s/${f}`)).map((d) => d.toJS() as Obj));
  const docs: Obj[] = readdirSync(new URL('deploy/k8s/redis-cluster/', ROOT))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(read(`deploy/k8s/redis-cluster/${f}`)).map((d) => d.toJS() as Obj));
  const find = (from: Obj[], kind: string, name: string): Obj => {
    const d = from.find((x) => x.kind === kind && obj(x.metadata).name === name);
    if (!d) throw new Error(`no ${kind} ${name}`);
    return d;
  };
  const env = obj(find(docs, 'Secret', 'gradcam-audit').stringData) as Record<string, string>;
  // What every pod reading that Secret will run with (the key layout the code derives from it).
  const config = loadConfig(env);
  const ks = keySpaceOf(config);

  const queues: Queue[] = [];
  afterAll(async () => {
    await Promise.all(queues.map((q) => q.close()));
  });

  it('configures a cluster through the Secret every pod reads: known keys, cluster nodes, queue shards', () => {
    for (const key of Object.keys(env)) expect(Object.keys(ENV_VARS), `secret key ${key}`).toContain(key);
    expect(config.redisUrl).toMatch(/^redis\+cluster:\/\/:change-me@redis-cluster-0\./);
    expect(ks.cluster).toBe(true);
    expect(shardCount(ks)).toBeGreaterThan(1);
    // The same Secret name the Deployments read, so they run on the cluster unchanged.
    for (const d of base.filter((x) => x.kind === 'Deployment')) {
      const c = (obj(obj(obj(d.spec).template).spec).containers as Obj[])[0] as Obj;
      expect((c.envFrom as Obj[]).map((e) => obj(e.secretRef).name)).toContain(obj(find(docs, 'Secret', 'gradcam-audit').metadata).name);
    }
  });

  it('scales on every shard\'s wait list, exactly as BullMQ names it, on the cluster the pods use, and on the dashboard\'s total', () => {
    const so = find(docs, 'ScaledObject', 'gradcam-audit-worker');
    const spec = obj(so.spec);
    const baseSpec = obj(find(base, 'ScaledObject', 'gradcam-audit-worker').spec);
    for (const k of ['scaleTargetRef', 'minReplicaCount', 'maxReplicaCount', 'pollingInterval', 'cooldownPeriod']) expect(spec[k], k).toEqual(baseSpec[k]);
    const triggers = spec.triggers as Obj[];
    const lists = triggers.filter((t) => t.type === 'redis-cluster').map((t) => obj(t.metadata));
    const wait = Array.from({ length: shardCount(ks) }, (_, i) => {
      const q = new Queue(config.queueName, { prefix: bullPrefix(ks, i), connection: { host: '127.0.0.1', port: 1, lazyConnect: true } });
      queues.push(q);
      return q.keys.wait;
    });
    expect(lists.map((l) => l.listName)).toEqual(wait);
    const nodes = env.REDIS_CLUSTER_NODES?.split(',') ?? [];
    const baseRedis = obj((baseSpec.triggers as Obj[]).find((t) => t.type === 'redis')?.metadata);
    for (const l of lists) {
      expect(String(l.addresses).split(',').map((a) => a.trim())).toEqual(nodes);
      // A run's images spread evenly over the shards: each list's target is its share of the single queue's.
      expect(Number(l.listLength)).toBe(Math.floor(Number(baseRedis.listLength) / shardCount(ks)));
      expect(l.activationListLength).toBeDefined();
    }
    for (const t of triggers.filter((x) => x.type === 'redis-cluster')) {
      const auth = find(docs, 'TriggerAuthentication', obj(t.authenticationRef).name as string);
      for (const ref of obj(auth.spec).secretTargetRef as Obj[]) expect(Object.keys(obj(find(docs, 'Secret', ref.name as string).stringData))).toContain(ref.key);
    }
    expect(triggers.find((t) => t.type === 'metrics-api')).toEqual((baseSpec.triggers as Obj[]).find((t) => t.type === 'metrics-api'));
  });
});
