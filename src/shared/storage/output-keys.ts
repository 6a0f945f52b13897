/**
 * Where a source image's outputs live under a run's output prefix: one key per artifact of
 * shared/artifacts.ts, `<folder>/<escaped source key>.<ext>` (overlays/, heatmaps/, predictions/).
 *
 * Source keys are arbitrary bytes to S3, but output keys must stay inside the output prefix for
 * every consumer, including tools that normalise URL paths. So each path segment is escaped:
 * `%` becomes `%25` first (so the mapping is injective and reversible), empty segments become
 * `%00`, dot-only segments become `%dotN` (not `%2E`: URL parsers treat `%2e%2e` as `..`), and
 * control characters are percent-escaped. Spaces, `+`
 * and unicode stay as they are: S3 handles them and users recognise their file names.
 *
 * A key whose outputs would pass S3's key length limit is stored under `%long/<sha256 of the key>`
 * instead. Escaping never yields that first segment (every `%` it writes is followed by two hex
 * digits or `dot`), so no source key, however it is named, shares a long key's outputs. (Until
 * this rule the folder was `_long/`, which the source key `_long/<sha256>` escaped to as well; only
 * over-long keys' outputs moved, and theirs are made again at the new place on the next run.)
 */
import { createHash } from 'node:crypto';
import { artifactPaths, COMPLETION_ARTIFACT, mapArtifactPaths, type ArtifactPaths } from '../artifacts.js';
import type { OverlayFormat } from '../explain-options.js';
import { hasDotSegment, joinKey } from './uri.js';

export { OVERLAY_EXTENSIONS } from '../artifacts.js';

/** S3's key length limit in UTF-8 bytes. */
export const MAX_KEY_BYTES = 1024;

/** One S3 key per artifact (shared/artifacts.ts). */
export type OutputKeys = ArtifactPaths;

export function escapeKeySegment(segment: string): string {
  if (segment === '') return '%00';
  // Control characters break XML listings and terminals alike.
  let out = segment.replace(/%/g, '%25').replace(/[\u0000-\u001f\u007f\\]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`);
  if (/^\.+$/.test(out)) out = `%dot${out.length}`;
  return out;
}

/** Escape a whole source key, segment by segment; the result never contains `.`/`..` segments. */
export function escapeKeyPath(key: string): string {
  return key.split('/').map(escapeKeySegment).join('/');
}

/** Inverse of `escapeKeyPath` (for display and for mapping outputs back to sources). */
export function unescapeKeyPath(escaped: string): string {
  return escaped
    .split('/')
    .map((seg) => {
      if (seg === '%00') return '';
      const dots = /^%dot(\d+)$/.exec(seg);
      if (dots) return '.'.repeat(Number(dots[1]));
      return seg.replace(/%([0-9A-F]{2})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
    })
    .join('/');
}

/** The first segment of an over-long key's outputs: one that escapeKeySegment never produces. */
const LONG_KEY_FOLDER = '%long';

/**
 * Deterministic output keys for one source key. Over-long keys fall back to a hash so they still
 * fit S3's limit; the prediction manifest keeps the original key.
 */
export function outputKeysFor(outputPrefix: string, sourceKey: string, format: OverlayFormat): OutputKeys {
  let rel = escapeKeyPath(sourceKey);
  const longest = Math.max(...Object.values(artifactPaths(rel, format)).map((p) => Buffer.byteLength(joinKey(outputPrefix, p), 'utf8')));
  if (longest > MAX_KEY_BYTES - 8) {
    rel = `${LONG_KEY_FOLDER}/${createHash('sha256').update(sourceKey).digest('hex')}`;
  }
  return mapArtifactPaths(artifactPaths(rel, format), (p) => joinKey(outputPrefix, p));
}

/** The key whose presence means a source image's outputs are complete. */
export function completionKeyFor(outputPrefix: string, sourceKey: string, format: OverlayFormat): string {
  return outputKeysFor(outputPrefix, sourceKey, format)[COMPLETION_ARTIFACT];
}

/** True when `key` is inside `prefix` with no dot segment that could climb out of it. */
export function isWithinPrefix(prefix: string, key: string): boolean {
  if (!key.startsWith(prefix)) return false;
  return !hasDotSegment(key.slice(prefix.length));
}
