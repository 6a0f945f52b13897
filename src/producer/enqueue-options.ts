/**
 * What `enqueue` is asked to do, parsed and validated once from raw flag strings. Every error is a
 * ConfigError naming the flag, so the CLI can print it as is. Defaults live in `ENQUEUE_DEFAULTS`
 * (enqueue's own) and `DEFAULT_EXPLAIN_OPTIONS` (what every job carries).
 */
import { createHash } from 'node:crypto';
import { parseIntInRange } from '../shared/config.js';
import { ConfigError } from '../shared/errors.js';
import { parseExplainOptionFlags, type ExplainOptions, type RawExplainOptionFlags } from '../shared/explain-options.js';
import { IMAGE_EXTENSIONS } from '../shared/image-types.js';
import { parseModelOptionFlags, type ModelOptions, type RawModelOptionFlags } from '../shared/model-options.js';
import { modelFiles } from '../shared/model-files.js';
import { modelIdentityOf, resolveModelSetup, type ModelIdentity, type ModelSetup } from '../shared/model-setup.js';
import type { ObjectStore } from '../shared/storage/object-store.js';
import { validateRunId } from '../shared/queue/contract.js';
import { asFolderPrefix, formatS3Uri, parseS3Prefix, type S3Location } from '../shared/storage/uri.js';
import { parseTruthFlags, type TruthFlags } from './truth/load-truth.js';
import type { TruthSpec } from './truth/truth-index.js';

export const ENQUEUE_DEFAULTS = Object.freeze({
  /** Output root inside the source bucket when `--output` is not given: `<root><run-id>/`. */
  outputRoot: 'gradcam-audit/',
  /** Extensions kept when no `--include` is given (compared case-insensitively). */
  imageExtensions: IMAGE_EXTENSIONS,
  /** `--page-size`: keys per ListObjectsV2 page, and so per addBulk chunk. S3's maximum. */
  pageSize: 1000,
  /**
   * `--list-concurrency`: key ranges (cut at the prefix's first-level folders) listed at once, ahead
   * of registration, which stays in key order (src/producer/fan-out-listing.ts). 1 (the default)
   * lists in one sequence: each range costs at least two requests, so lanes only pay off where
   * folders hold many thousands of keys and the listing, not Redis, is what limits enqueue
   * (docs/benchmarks.md: with 50 keys per folder, 8 lanes were slower on s3rver and on an
   * in-memory listing).
   */
  listConcurrency: 1,
  /**
   * Page chunks written to Redis/BullMQ concurrently while the next page is listed. Two keep Redis
   * busy during a chunk's round trips without letting memory grow past three pages.
   */
  chunksInFlight: 2,
  /** Example keys shown by `--dry-run`. */
  examples: 5,
  /**
   * `--max-backlog`: images of a run registered and queued but without a result. A queued image
   * costs about 1.37 KB of Redis (BullMQ job hash and wait-list entry 1.23 KB, the run's pending
   * entry 0.13 KB), so 70,000 is about 96 MB (docs/architecture.md has the arithmetic).
   */
  maxBacklog: 70_000,
  /** How often a producer waiting for room under --max-backlog checks the backlog again. */
  backlogPollMs: 200,
});

export interface EnqueueRequest {
  source: S3Location;
  /** Output prefix (a folder: ends with `/`). */
  output: S3Location;
  runId: string;
  /** True when the run id was derived from the request (not given with `--run-id`). */
  derivedRunId: boolean;
  /** Globs on the key relative to the source prefix; when non-empty they replace the extension filter. */
  include: string[];
  exclude: string[];
  options: ExplainOptions;
  model: string;
  /**
   * The model the run needs (`--weights`, or GRADCAM_AUDIT_WEIGHTS as workers read it, plus the
   * model flags); its identity is resolved by the CLI and recorded in the run and every job.
   */
  modelSource?: { weights: string; options: ModelOptions };
  /** Resolved from `modelSource` before the run is created. */
  modelIdentity?: ModelIdentity;
  dryRun: boolean;
  /** Ground truth for the audit (`--truth`, `--truth-from-path`). */
  truth?: TruthSpec;
  /** High-water mark of the run's backlog: listing pauses while it is reached. */
  maxBacklog: number;
  /** Stop at the high-water mark instead of waiting; the same enqueue run again continues. */
  detach: boolean;
  /** Keys per listing page (ListObjectsV2 MaxKeys), 1-1000. */
  pageSize: number;
  /** Folders listed in parallel (1: one listing sequence). */
  listConcurrency: number;
}

/** Raw flag values as commander hands them over (strings, or booleans for switches). */
export interface EnqueueFlags extends RawExplainOptionFlags, RawModelOptionFlags, TruthFlags {
  weights?: string;
  output?: string;
  runId?: string;
  include?: string;
  exclude?: string;
  model?: string;
  dryRun?: boolean;
  maxBacklog?: string;
  detach?: boolean;
  pageSize?: string;
  listConcurrency?: string;
}

/** The variable workers read their weights from; enqueue reads it too, so one setting names the model for both. */
export const WEIGHTS_ENV = 'GRADCAM_AUDIT_WEIGHTS';

export function parseEnqueueRequest(sourceUri: string, flags: EnqueueFlags, env: Record<string, string | undefined> = process.env): EnqueueRequest {
  // No dot segments in either prefix: outputs must stay under --output, and the equal/inside
  // checks between source and output (which keep a run from auditing its own outputs) compare
  // prefixes as strings, which is only sound without them.
  const source = parseS3Prefix(sourceUri, 'SOURCE');
  const options = parseExplainOptionFlags(flags);
  const include = parseGlobList('--include', flags.include);
  const exclude = parseGlobList('--exclude', flags.exclude);
  const model = flags.model === undefined ? '' : parseModelLabel(flags.model);
  const explicitOutput = flags.output === undefined ? undefined : parseOutput(flags.output);
  const truth = parseTruthFlags(flags);
  const maxBacklog = flags.maxBacklog === undefined ? ENQUEUE_DEFAULTS.maxBacklog : parseIntInRange('--max-backlog', flags.maxBacklog, 1, 100_000_000);
  const detach = flags.detach === true;
  const pageSize = flags.pageSize === undefined ? ENQUEUE_DEFAULTS.pageSize : parseIntInRange('--page-size', flags.pageSize, 1, 1000);
  const listConcurrency = flags.listConcurrency === undefined ? ENQUEUE_DEFAULTS.listConcurrency : parseIntInRange('--list-concurrency', flags.listConcurrency, 1, 64);
  const modelSource = parseModelSource(flags, env);

  const runId =
    flags.runId !== undefined
      ? validateRunId(flags.runId, '--run-id')
      : deriveRunId({ source, output: explicitOutput, include, exclude, options, model, truth, modelSource });
  const output = explicitOutput ?? { bucket: source.bucket, key: `${ENQUEUE_DEFAULTS.outputRoot}${runId}/` };
  return {
    source,
    output,
    runId,
    derivedRunId: flags.runId === undefined,
    include,
    exclude,
    options,
    model,
    dryRun: flags.dryRun === true,
    ...(truth ? { truth } : {}),
    ...(modelSource ? { modelSource } : {}),
    maxBacklog,
    detach,
    pageSize,
    listConcurrency,
  };
}

/**
 * Resolve the run's model (card, preprocessing default, weights fingerprint) exactly as a worker
 * does, and set `request.modelIdentity`. Returns the setup, or null when the request names no model.
 */
export async function resolveRunModel(request: EnqueueRequest, store: Pick<ObjectStore, 'get' | 'getStream' | 'head'>): Promise<ModelSetup | null> {
  if (!request.modelSource) return null;
  const files = modelFiles({ store });
  const setup = await resolveModelSetup(request.modelSource.weights, request.modelSource.options, files);
  request.modelIdentity = await modelIdentityOf(setup, files);
  return setup;
}

/** The model flags only make sense with a model to apply them to. */
function parseModelSource(flags: EnqueueFlags, env: Record<string, string | undefined>): EnqueueRequest['modelSource'] {
  const weights = flags.weights ?? (env[WEIGHTS_ENV] || undefined);
  // --layer is also an explain option of the run (workers check it as before): it may come alone.
  const options: ModelOptions = parseModelOptionFlags(flags);
  if (weights === undefined) {
    const given = (['preprocess', 'centerCrop', 'labels', 'architecture'] as const).filter((k) => options[k] !== undefined);
    if (given.length > 0) throw new ConfigError('--weights', `--${given[0] === 'centerCrop' ? 'center-crop' : given[0]} describes a model: name the model with --weights (or ${WEIGHTS_ENV}) as the workers do`);
    return undefined;
  }
  if (weights.trim() === '') throw new ConfigError('--weights', 'expected a model: path, s3:// URI or http(s) URL');
  return { weights, options };
}

/**
 * The same enqueue command must land in the same run, or re-running it would enqueue every image
 * again under a new id. So the default run id is a digest of everything that defines the run,
 * with a readable slug of the source in front. `--run-id` starts a separate audit on purpose.
 */
export function deriveRunId(parts: {
  source: S3Location;
  output?: S3Location;
  include: string[];
  exclude: string[];
  options: ExplainOptions;
  model: string;
  truth?: TruthSpec;
  modelSource?: EnqueueRequest['modelSource'];
}): string {
  const canonical = JSON.stringify([
    formatS3Uri(parts.source),
    parts.output ? formatS3Uri(parts.output) : null,
    parts.include,
    parts.exclude,
    sortedOptions(parts.options),
    parts.model,
    // Only present with truth, so runs without it keep the ids they always had.
    ...(parts.truth ? [parts.truth] : []),
    // Likewise only with a named model: another model is another audit.
    ...(parts.modelSource ? [{ model: parts.modelSource.weights, ...parts.modelSource.options }] : []),
  ]);
  const digest = createHash('sha256').update(canonical).digest('hex').slice(0, 10);
  const slug = `${parts.source.bucket}-${parts.source.key}`
    .replace(/[^A-Za-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40)
    .replace(/-+$/, '');
  return `${slug || 'run'}-${digest}`;
}

function sortedOptions(options: ExplainOptions): Array<[string, unknown]> {
  return Object.entries(options)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}

export function parseGlobList(flag: string, value: string | undefined): string[] {
  if (value === undefined) return [];
  const globs = value.split(',').map((g) => g.trim());
  if (globs.some((g) => g === '')) throw new ConfigError(flag, `expected comma-separated globs such as "**/*.jpg,cats/**", got "${value}"`);
  return globs;
}

function parseOutput(value: string): S3Location {
  const loc = parseS3Prefix(value, '--output');
  return { bucket: loc.bucket, key: asFolderPrefix(loc.key) };
}

function parseModelLabel(value: string): string {
  const v = value.trim();
  if (v === '' || v.length > 200 || /[\u0000-\u001f]/.test(v)) {
    throw new ConfigError('--model', `expected a label of 1-200 printable characters, got "${value}"`);
  }
  return v;
}
