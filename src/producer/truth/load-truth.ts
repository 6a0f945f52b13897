/**
 * `--truth FILE|s3://...` and `--truth-from-path N` → a validated truth lookup, built completely
 * before `enqueue` lists a single key, so a bad row stops the command before any job is queued.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ConfigError, NotFoundError } from '../../shared/errors.js';
import type { ObjectStore } from '../../shared/storage/object-store.js';
import { parseS3Uri } from '../../shared/storage/uri.js';
import { PathTruth, TruthIndex, type TruthLookup, type TruthSpec } from './truth-index.js';
import { formatFromName, parseCoco, parseCsv, parseJsonl, TRUTH_FORMATS, type TruthFormat } from './truth-parsers.js';

export interface TruthFlags {
  truth?: string;
  truthFormat?: string;
  truthFromPath?: string;
}

/** Validate the truth flags (no I/O). */
export function parseTruthFlags(flags: TruthFlags): TruthSpec | undefined {
  if (flags.truth !== undefined && flags.truthFromPath !== undefined) throw new ConfigError('--truth', 'give either --truth or --truth-from-path, not both');
  if (flags.truthFromPath !== undefined) {
    const raw = flags.truthFromPath.trim();
    if (!/^-?\d{1,3}$/.test(raw)) throw new ConfigError('--truth-from-path', `expected a path segment index such as -2 (the parent folder) or 0 (the first folder), got "${flags.truthFromPath}"`);
    return { kind: 'path', segment: Number(raw) };
  }
  if (flags.truth === undefined) {
    if (flags.truthFormat !== undefined) throw new ConfigError('--truth-format', 'needs --truth');
    return undefined;
  }
  const uri = flags.truth.trim();
  if (uri === '') throw new ConfigError('--truth', 'expected a CSV, JSONL or COCO JSON file: a path or s3://bucket/key');
  if (uri.startsWith('s3://')) parseS3Uri(uri, '--truth');
  let format: TruthFormat | null;
  if (flags.truthFormat !== undefined) {
    if (!(TRUTH_FORMATS as readonly string[]).includes(flags.truthFormat)) throw new ConfigError('--truth-format', `expected one of ${TRUTH_FORMATS.join(', ')}, got "${flags.truthFormat}"`);
    format = flags.truthFormat as TruthFormat;
  } else format = formatFromName(uri);
  if (format === null) throw new ConfigError('--truth', `cannot tell the format of "${uri}" from its name: use a .csv, .jsonl or .json (COCO) file, or say --truth-format csv|jsonl|coco`);
  return { kind: 'file', uri, format };
}

async function openTruth(uri: string, store: ObjectStore): Promise<Readable> {
  if (uri.startsWith('s3://')) {
    const loc = parseS3Uri(uri, '--truth');
    try {
      return (await store.getStream(loc.bucket, loc.key)).stream;
    } catch (err) {
      if (err instanceof NotFoundError) throw new ConfigError('--truth', `${uri} does not exist`, { cause: err });
      throw err;
    }
  }
  try {
    const s = await stat(uri);
    if (!s.isFile()) throw new ConfigError('--truth', `${uri} is not a file`);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError('--truth', `cannot read ${uri}: ${(err as Error).message}`, { cause: err });
  }
  return createReadStream(uri);
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.isBuffer(c) ? c : Buffer.from(c as string));
  return Buffer.concat(chunks).toString('utf8');
}

/** Load and validate the whole truth source. */
export async function loadTruth(spec: TruthSpec, store: ObjectStore): Promise<TruthLookup> {
  if (spec.kind === 'path') return new PathTruth(spec.segment);
  const index = new TruthIndex(spec.uri);
  const stream = await openTruth(spec.uri, store);
  try {
    if (spec.format === 'coco') for (const row of parseCoco(await readAll(stream), spec.uri)) index.add(row);
    else for await (const row of spec.format === 'csv' ? parseCsv(stream, spec.uri) : parseJsonl(stream, spec.uri)) index.add(row);
  } finally {
    stream.destroy();
  }
  if (index.size === 0) throw new ConfigError('--truth', `${spec.uri} holds no truth rows`);
  return index;
}

