/**
 * One typed, validated configuration built from the environment (and, through overrides, from
 * flags). Defaults live in `DEFAULTS` only. Every error names the variable and what it expects.
 * S3 follows the AWS SDK's own conventions so that existing deployments need nothing new.
 */
import { ConfigError } from './errors.js';
import { clusterUrlFromNodes, isClusterUrl, parseClusterUrl, redact } from './redis-target.js';

/** Credentials out of URLs before they reach a message or a log line (one rule: redis-target.ts). */
export { redact };

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface S3Config {
  /** Custom endpoint (MinIO, s3rver, …). From `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`. */
  endpoint: string | undefined;
  /** From `AWS_REGION`, else `AWS_DEFAULT_REGION`. Default `us-east-1`. */
  region: string;
  /** `S3_FORCE_PATH_STYLE`; default true exactly when a custom endpoint is set. */
  forcePathStyle: boolean;
  /** SDK attempts for throttling/5xx (`AWS_MAX_ATTEMPTS`). Default 5. */
  maxAttempts: number;
}

export interface AppConfig {
  /**
   * `REDIS_URL`, or the `redis+cluster://` URL built from `REDIS_CLUSTER_NODES` (shared/redis-target.ts).
   * Default `redis://127.0.0.1:6379`.
   */
  redisUrl: string;
  /** `GRADCAM_AUDIT_PREFIX`: namespace for every Redis key and the BullMQ prefix. Default `gca`. */
  keyPrefix: string;
  /** `GRADCAM_AUDIT_QUEUE`: BullMQ queue name. Default `gradcam-audit`. */
  queueName: string;
  s3: S3Config;
  /** `LOG_LEVEL`. Default `info`. */
  logLevel: LogLevel;
  /**
   * `GRADCAM_AUDIT_PIXEL_BUDGET_MP`: decoded pixels all images in flight may hold together, in
   * megapixels (worker and explain; worker/core/pixel-budget.ts). Default 256 MP, sized for the
   * Kubernetes worker's 12 GiB limit (deploy/k8s/worker-deployment.yaml): about 0.8 GB of RGB, and
   * about 3 GB with libvips' working buffers and the overlays, beside the model.
   */
  pixelBudget: number;
  /**
   * `GRADCAM_AUDIT_REDIS_WAIT_MS`: how long a command waits for Redis to first answer before it
   * exits with the connection error. Default 10 s: long enough for a Redis pod that starts beside
   * the worker, short enough that a wrong REDIS_URL is reported promptly.
   */
  redisWaitMs: number;
  /**
   * `GRADCAM_AUDIT_QUEUE_SHARDS`: BullMQ queues the audit queue is split into, each under its own
   * hash tag (shared/queue/shards.ts), so a Redis Cluster spreads the queue over its masters.
   * Default 1; every producer, worker and dashboard of a deployment must use the same number.
   */
  queueShards: number;
}

export const DEFAULTS = Object.freeze({
  redisUrl: 'redis://127.0.0.1:6379',
  keyPrefix: 'gca',
  queueName: 'gradcam-audit',
  region: 'us-east-1',
  maxAttempts: 5,
  logLevel: 'info' as LogLevel,
  pixelBudgetMegapixels: 256,
  redisWaitMs: 10_000,
  queueShards: 1,
});

export type Env = Record<string, string | undefined>;

/** Build the configuration. `overrides` carry flag values, which win over the environment. */
export function loadConfig(env: Env = process.env, overrides: Partial<AppConfig> = {}): AppConfig {
  const endpoint = optionalUrl(env, 'AWS_ENDPOINT_URL_S3') ?? optionalUrl(env, 'AWS_ENDPOINT_URL');
  const config: AppConfig = {
    redisUrl: redisTarget(env),
    keyPrefix: identifier(env, 'GRADCAM_AUDIT_PREFIX') ?? DEFAULTS.keyPrefix,
    queueName: identifier(env, 'GRADCAM_AUDIT_QUEUE') ?? DEFAULTS.queueName,
    s3: {
      endpoint,
      region: nonEmpty(env, 'AWS_REGION') ?? nonEmpty(env, 'AWS_DEFAULT_REGION') ?? DEFAULTS.region,
      forcePathStyle: bool(env, 'S3_FORCE_PATH_STYLE') ?? endpoint !== undefined,
      maxAttempts: int(env, 'AWS_MAX_ATTEMPTS', 1, 20) ?? DEFAULTS.maxAttempts,
    },
    logLevel: enumValue(env, 'LOG_LEVEL', LOG_LEVELS) ?? DEFAULTS.logLevel,
    // At least one 24 MP decode (the shrink-on-load size) fits; larger requests run alone anyway.
    pixelBudget: (int(env, 'GRADCAM_AUDIT_PIXEL_BUDGET_MP', 1, 1_000_000) ?? DEFAULTS.pixelBudgetMegapixels) * 1_000_000,
    redisWaitMs: int(env, 'GRADCAM_AUDIT_REDIS_WAIT_MS', 100, 600_000) ?? DEFAULTS.redisWaitMs,
    queueShards: int(env, 'GRADCAM_AUDIT_QUEUE_SHARDS', 1, 256) ?? DEFAULTS.queueShards,
  };
  return { ...config, ...overrides, s3: { ...config.s3, ...overrides.s3 } };
}

// ---- validators: each returns undefined when unset and throws a ConfigError when malformed ----

function raw(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === '' ? undefined : value.trim();
}

function nonEmpty(env: Env, name: string): string | undefined {
  return raw(env, name);
}

function optionalUrl(env: Env, name: string): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, `expected an http(s) URL such as http://127.0.0.1:9000, got "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(name, `expected an http:// or https:// URL, got protocol "${url.protocol}"`);
  }
  return value.replace(/\/+$/, '');
}

/** REDIS_CLUSTER_NODES wins over REDIS_URL's host (whose credentials and TLS it keeps). */
function redisTarget(env: Env): string {
  const url = redisUrl(env, 'REDIS_URL');
  const nodes = raw(env, 'REDIS_CLUSTER_NODES');
  return nodes === undefined ? (url ?? DEFAULTS.redisUrl) : clusterUrlFromNodes(nodes, url);
}

function redisUrl(env: Env, name: string): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  if (isClusterUrl(value)) {
    parseClusterUrl(value, name);
    return value;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(name, `expected a Redis URL such as redis://127.0.0.1:6379, got "${redact(value)}"`);
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new ConfigError(name, `expected a redis://, rediss:// or redis+cluster:// URL, got protocol "${url.protocol}"`);
  }
  return value;
}

function identifier(env: Env, name: string): string | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  // BullMQ uses ':' as its key separator, so names must not contain one.
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(value)) {
    throw new ConfigError(name, `expected 1-64 characters from [A-Za-z0-9_.-] (no ':'), got "${value}"`);
  }
  return value;
}

function bool(env: Env, name: string): boolean | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  const lower = value.toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(lower)) return true;
  if (['0', 'false', 'no', 'off'].includes(lower)) return false;
  throw new ConfigError(name, `expected true or false, got "${value}"`);
}

function int(env: Env, name: string, min: number, max: number): number | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  return parseIntInRange(name, value, min, max);
}

function enumValue<T extends string>(env: Env, name: string, allowed: readonly T[]): T | undefined {
  const value = raw(env, name);
  if (value === undefined) return undefined;
  return parseEnum(name, value, allowed);
}

/** Shared by env parsing and CLI flag parsing, so flags and variables fail the same way. */
export function parseIntInRange(name: string, value: string, min: number, max: number): number {
  if (!/^-?\d+$/.test(value.trim())) throw new ConfigError(name, `expected an integer from ${min} to ${max}, got "${value}"`);
  const n = Number(value);
  if (n < min || n > max) throw new ConfigError(name, `expected an integer from ${min} to ${max}, got ${n}`);
  return n;
}

export function parseNumberInRange(name: string, value: string, min: number, max: number): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new ConfigError(name, `expected a number from ${min} to ${max}, got "${value}"`);
  if (n < min || n > max) throw new ConfigError(name, `expected a number from ${min} to ${max}, got ${n}`);
  return n;
}

export function parseEnum<T extends string>(name: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(name, `expected one of ${allowed.join(', ')}, got "${value}"`);
}

/**
 * Every environment variable the project reads, with its meaning and default: the README's
 * configuration table and the deployment tests (compose, Kubernetes) are checked against it.
 */
export const ENV_VARS: Readonly<Record<string, { component: string; description: string; default?: string }>> = Object.freeze({
  REDIS_URL: {
    component: 'all',
    description: 'Redis connection URL: redis:// or rediss:// for one server, redis+cluster://[user:password@]host:port,host:port (rediss+cluster:// with TLS) for a Redis Cluster',
    default: DEFAULTS.redisUrl,
  },
  REDIS_CLUSTER_NODES: {
    component: 'all',
    description: "Redis Cluster seed nodes, host:port,host:port; set, it wins over REDIS_URL's host (REDIS_URL's password and TLS still apply)",
  },
  GRADCAM_AUDIT_PREFIX: { component: 'all', description: "Namespace of every Redis key and of BullMQ's keys", default: DEFAULTS.keyPrefix },
  GRADCAM_AUDIT_QUEUE: { component: 'all', description: 'BullMQ queue name', default: DEFAULTS.queueName },
  AWS_ENDPOINT_URL_S3: { component: 'all', description: 'S3-compatible endpoint (MinIO, s3rver); unset for AWS S3' },
  AWS_ENDPOINT_URL: { component: 'all', description: 'Fallback endpoint when AWS_ENDPOINT_URL_S3 is unset' },
  AWS_REGION: { component: 'all', description: 'S3 region (AWS_DEFAULT_REGION is read as a fallback)', default: DEFAULTS.region },
  AWS_DEFAULT_REGION: { component: 'all', description: 'Fallback region' },
  S3_FORCE_PATH_STYLE: { component: 'all', description: 'Path-style S3 URLs; default true exactly when a custom endpoint is set' },
  AWS_MAX_ATTEMPTS: { component: 'all', description: 'S3 attempts per request for throttling/5xx (SDK retry strategy)', default: String(DEFAULTS.maxAttempts) },
  AWS_ACCESS_KEY_ID: { component: 'all', description: 'Static credentials (otherwise the SDK default chain: profile, SSO, IRSA, instance role)' },
  AWS_SECRET_ACCESS_KEY: { component: 'all', description: 'Static credentials, with AWS_ACCESS_KEY_ID' },
  AWS_SESSION_TOKEN: { component: 'all', description: 'Temporary credentials, with the two above' },
  AWS_PROFILE: { component: 'all', description: 'Named profile for the SDK default chain' },
  LOG_LEVEL: { component: 'all', description: 'fatal, error, warn, info, debug, trace or silent', default: DEFAULTS.logLevel },
  GRADCAM_AUDIT_WEIGHTS: { component: 'worker, enqueue', description: 'Default for worker --weights, and for enqueue --weights (the model a run needs)' },
  GRADCAM_AUDIT_PIXEL_BUDGET_MP: {
    component: 'worker, explain',
    description: 'Decoded megapixels all images in flight may hold together; an image waits until its pixels fit (sized for the 12 GiB Kubernetes limit)',
    default: String(DEFAULTS.pixelBudgetMegapixels),
  },
  GRADCAM_AUDIT_REDIS_WAIT_MS: {
    component: 'all',
    description: 'Milliseconds a command waits for Redis to first answer before exiting with the connection error',
    default: String(DEFAULTS.redisWaitMs),
  },
  GRADCAM_AUDIT_QUEUE_SHARDS: {
    component: 'all',
    description: 'BullMQ queues the audit queue is split into, each with its own hash tag, so a Redis Cluster spreads it over its masters (one per master is a good start); producer, workers and dashboard must agree',
    default: String(DEFAULTS.queueShards),
  },
  GRADCAM_AUDIT_METRICS_PORT: { component: 'worker', description: 'Default for worker --metrics-port' },
  GRADCAM_AUDIT_METRICS_HOST: { component: 'worker', description: 'Default for worker --metrics-host (the container images set 0.0.0.0)', default: '127.0.0.1' },
  GRADCAM_AUDIT_REQUIRE_GPU: { component: 'worker', description: 'true: like worker --require-gpu, exit instead of computing on the CPU (the GPU images set it)', default: 'false' },
  DASHBOARD_TOKEN: { component: 'dashboard', description: 'Bearer token (at least 16 characters); required for a non-loopback bind unless basic auth is set' },
  DASHBOARD_USER: { component: 'dashboard', description: 'Basic-auth user, with DASHBOARD_PASSWORD' },
  DASHBOARD_PASSWORD: { component: 'dashboard', description: 'Basic-auth password (at least 8 characters)' },
  DASHBOARD_ALLOWED_HOSTS: { component: 'dashboard', description: 'Comma-separated host names (name or name:port) answered besides the bound ones, like --allowed-host' },
  DASHBOARD_TRUST_PROXY: { component: 'dashboard', description: 'Proxies whose X-Forwarded-* headers are believed (addresses/CIDRs, loopback, or a hop count), like --trust-proxy' },
  DASHBOARD_QUEUE_ADMIN: { component: 'dashboard', description: "true enables bull-board's job adding/editing and queue actions, like --queue-admin", default: 'false' },
  XDG_CACHE_HOME: { component: 'worker', description: 'Cache root for downloaded weights and compiled ONNX graphs (the container images use /cache)', default: '~/.cache' },
  AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: { component: 'all', description: "The CLI sets it to true, so the AWS SDK's Node 20 end-of-support notice never prints; set false to see it (`doctor` reports the Node version's support status)", default: 'true' },
});
