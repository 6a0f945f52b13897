/**
 * No Docker engine or cluster runs here, so the deployment files are validated structurally: they
 * parse, and every image target, command, flag, env name, port and label agrees with the code.
 * Flags are checked by the real commander definitions, queue keys by a real BullMQ Queue.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { Queue } from 'bullmq';
import type { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { DEFAULTS, ENV_VARS } from '../../../src/shared/config.js';
import { bullPrefix } from '../../../src/shared/queue/contract.js';
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
  const loaders: Record<string, () => Promise<Command>> = {
    worker: async () => (await import('../../../src/worker/worker-command.js')).workerCommand(),
    dashboard: async () => (await import('../../../src/dashboard/command.js')).dashboardCommand(),
    enqueue: async () => (await import('../../../src/producer/enqueue-command.js')).enqueueCommand(),
  };
  const load = loaders[name ?? ''];
  if (!load) throw new Error(`not a gradcam-audit subcommand: ${name}`);
  const cmd = await load();
  return cmd.parseOptions(rest).unknown.filter((a) => a.startsWith('-'));
}

function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
}

describe('Dockerfile', () => {
  const dockerfile = read('Dockerfile');
  it('has cpu and gpu targets, the GPU one on CUDA 11.2 / cuDNN 8.1 with tfjs-node-gpu', () => {
    const targets = [...dockerfile.matchAll(/^FROM\s+(\S+)\s+AS\s+(\S+)/gim)].map((m) => ({ image: m[1], name: m[2] }));
    const names = targets.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['cpu', 'gpu', 'gpu-onnx']));
    expect(targets.find((t) => t.name === 'gpu')?.image).toMatch(/^nvidia\/cuda:11\.2\.\d+-cudnn8-runtime/);
    expect(dockerfile).toMatch(/@tensorflow\/tfjs-node-gpu@4\.22\.0/);
    expect(dockerfile).toMatch(/TFJS_NODE_CDN_STORAGE/);
    expect(dockerfile).toMatch(/custom-binary\.json/);
    expect(dockerfile).toMatch(/ENTRYPOINT \["node", "dist\/src\/cli\.js"\]/);
    // The entrypoint must exist after `npm run build`.
    expect(JSON.parse(read('tsconfig.build.json')).include).toContain('src/**/*.ts');
  });
});

describe('docker-compose.yml', () => {
  const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Obj> };
  const dockerTargets = [...read('Dockerfile').matchAll(/^FROM\s+\S+\s+AS\s+(\S+)/gim)].map((m) => m[1]);

  it('has redis, minio with bucket creation, dashboard, a one-shot producer and GPU workers', () => {
    expect(Object.keys(compose.services)).toEqual(expect.arrayContaining(['redis', 'minio', 'minio-init', 'dashboard', 'producer', 'worker']));
    expect(String(obj(compose.services['minio-init']).command)).toMatch(/mc mb/);
    expect(obj(compose.services.producer).restart).toBe('no');
    const deploy = obj(obj(compose.services.worker).deploy);
    expect(deploy.replicas).toBeDefined();
    const devices = obj(obj(obj(deploy.resources).reservations)).devices as Obj[];
    expect(devices[0]).toMatchObject({ driver: 'nvidia', capabilities: ['gpu'] });
  });

  it('uses only known env names, existing build targets and valid CLI flags', async () => {
    for (const [name, svc] of Object.entries(compose.services)) {
      const build = svc.build as Obj | undefined;
      if (!build) continue;
      expect(dockerTargets, `${name} build target`).toContain(build.target);
      for (const key of Object.keys(obj(svc.environment))) {
        expect(Object.keys(ENV_VARS), `${name}: unknown env ${key}`).toContain(key);
      }
      const command = (svc.command as string[]).map((a) => a.replace(/\$\{[A-Z_]+:-([^}]*)\}/g, '$1'));
      expect(await unknownFlags(command), `${name} flags`).toEqual([]);
    }
  });

  it('publishes the dashboard port it binds, protects the non-loopback bind, and gives workers time to drain', () => {
    const dash = obj(compose.services.dashboard);
    const cmd = dash.command as string[];
    expect(flagValue(cmd, '--host')).toBe('0.0.0.0');
    const port = flagValue(cmd, '--port');
    expect(port).toBe(String(DASHBOARD_DEFAULTS.port));
    expect((dash.ports as string[]).some((p) => p.endsWith(`:${port}`))).toBe(true);
    expect(Object.keys(obj(dash.environment))).toContain('DASHBOARD_TOKEN');
    const grace = Number(String(obj(compose.services.worker).stop_grace_period).replace(/s$/, ''));
    expect(grace * 1000).toBeGreaterThan(PIPELINE_DEFAULTS.drainTimeoutMs);
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

  it('runs workers on GPUs with a grace period matched to the drain', async () => {
    expect(obj(obj(workerContainer.resources).limits)['nvidia.com/gpu']).toBe(1);
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

  it('scales the worker Deployment on waiting + prioritized jobs, from zero, with an activation threshold', () => {
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
