/**
 * Which listed keys become jobs. Decided per key, with no state, so a listing of any size streams
 * through it.
 */
import picomatch from 'picomatch';
import { ENQUEUE_DEFAULTS } from './enqueue-options.js';

export type KeyVerdict = 'image' | 'folder-marker' | 'output' | 'not-image' | 'excluded';

export interface KeyFilterOptions {
  /** The listed prefix; globs see the key relative to it. */
  prefix: string;
  /** Globs (relative key); when non-empty, they replace the image-extension filter. */
  include: string[];
  exclude: string[];
  /**
   * Key prefixes never enqueued: the run's own output prefix (when it lies inside the source, a
   * re-enqueue would otherwise audit last run's heatmaps).
   */
  skipPrefixes: string[];
  imageExtensions?: readonly string[];
}

export type KeyFilter = (key: string) => KeyVerdict;

export function createKeyFilter(options: KeyFilterOptions): KeyFilter {
  const include = options.include.length > 0 ? globMatcher(options.include) : null;
  const exclude = options.exclude.length > 0 ? globMatcher(options.exclude) : null;
  const extensions = new Set((options.imageExtensions ?? ENQUEUE_DEFAULTS.imageExtensions).map((e) => e.toLowerCase()));
  const skip = options.skipPrefixes.filter((p) => p !== '');

  return (key) => {
    // Console-created "folders" are zero-byte objects named like `photos/`.
    if (key.endsWith('/')) return 'folder-marker';
    if (skip.some((p) => key.startsWith(p))) return 'output';
    const rel = relativeKey(options.prefix, key);
    if (include ? !include(rel) : !extensions.has(extensionOf(key))) return include ? 'excluded' : 'not-image';
    if (exclude?.(rel)) return 'excluded';
    return 'image';
  };
}

/**
 * A pattern without '/' (e.g. `*.png`) matches the file name at any depth, as people expect from
 * a filter flag; one with '/' matches the whole relative key. (picomatch's own `basename` option
 * applies to every pattern, which breaks `dir/**`.) `dot`: hidden files are not special in S3.
 */
function globMatcher(globs: string[]): (rel: string) => boolean {
  const byName = globs.filter((g) => !g.includes('/'));
  const byPath = globs.filter((g) => g.includes('/'));
  const name = byName.length > 0 ? picomatch(byName, { dot: true }) : () => false;
  const path = byPath.length > 0 ? picomatch(byPath, { dot: true }) : () => false;
  return (rel) => path(rel) || name(rel.slice(rel.lastIndexOf('/') + 1));
}

export function relativeKey(prefix: string, key: string): string {
  const rest = key.startsWith(prefix) ? key.slice(prefix.length) : key;
  return rest.replace(/^\/+/, '');
}

function extensionOf(key: string): string {
  const name = key.slice(key.lastIndexOf('/') + 1);
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot + 1).toLowerCase();
}
