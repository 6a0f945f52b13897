/**
 * Which S3 objects the dashboard may serve, and how. Users need no public bucket: images go through
 * the dashboard. A request names a run and a source key; the object is derived from the run's
 * record (never taken from the request), must belong to an image of that run, and must lie inside
 * the run's source prefix or output prefix with no dot segment (`isWithinPrefix`).
 */
import { extname } from 'node:path';
import { ARTIFACT_NAMES, type ArtifactName } from '../shared/artifacts.js';
import { IMAGE_CONTENT_TYPES } from '../shared/image-types.js';
import { InvalidInputError, AccessDeniedError } from '../shared/errors.js';
import type { RunRecord } from '../shared/queue/run-store.js';
import { asFolderPrefix, isWithinPrefix, outputKeysFor, parseS3Uri, type S3Location } from '../shared/storage/index.js';

export const OBJECT_ROLES = [...ARTIFACT_NAMES, 'original'] as const;
export type ObjectRole = ArtifactName | 'original';

/** Content types the proxy passes through; anything else is served as a download, never rendered. */
const SAFE_TYPES: Record<string, string> = {
  ...IMAGE_CONTENT_TYPES,
  '.avif': 'image/avif',
  '.bmp': 'image/bmp',
  '.json': 'application/json; charset=utf-8',
};

/** Resolve the object of `role` for `sourceKey` in `run`, refusing anything outside the run. */
export function resolveRunObject(run: RunRecord, role: ObjectRole, sourceKey: string): S3Location {
  if (sourceKey === '' || sourceKey.includes('\0')) throw new InvalidInputError('BAD_KEY', 'query parameter "key" must be a non-empty source key');
  const source = parseS3Uri(run.source, `run ${run.id} source`);
  const sourcePrefix = source.key === '' ? '' : asFolderPrefix(source.key);
  // Source keys are full keys inside the run's source prefix; a dot segment or a key outside it is
  // a path trick, whatever role is asked for.
  const inSource = source.key === '' ? isWithinPrefix('', sourceKey) : isWithinPrefix(sourcePrefix, sourceKey) || isWithinPrefix(source.key, sourceKey);
  if (!inSource) throw new AccessDeniedError(`key "${sourceKey}" is not inside the source prefix ${run.source} of run ${run.id}`);
  if (role === 'original') return { bucket: source.bucket, key: sourceKey };

  const output = parseS3Uri(run.output, `run ${run.id} output`);
  const outputPrefix = asFolderPrefix(output.key);
  const keys = outputKeysFor(outputPrefix, sourceKey, run.options.overlayFormat ?? 'jpeg');
  const key = keys[role];
  if (!isWithinPrefix(outputPrefix, key)) throw new AccessDeniedError(`output key for "${sourceKey}" escapes the output prefix ${run.output}`);
  return { bucket: output.bucket, key };
}

/** The content type to send for `key`, from its extension only (S3 metadata is user-controlled). */
export function safeContentType(key: string): { type: string; inline: boolean } {
  const type = SAFE_TYPES[extname(key).toLowerCase()];
  return type ? { type, inline: true } : { type: 'application/octet-stream', inline: false };
}

