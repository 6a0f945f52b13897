/**
 * Safe, collision-free output names for local inputs; each artifact then lands at
 * `<out>/<folder>/<stem>.<ext>`, the same naming scheme as a run's outputs on S3
 * (shared/artifacts.ts). A name is derived from the file's base name
 * only (never its directories, so `../../etc/passwd` cannot escape the output directory), reduced
 * to `[A-Za-z0-9._-]`, and never starts with a dot. When two inputs would share a name
 * (`a/x.jpg` and `b/x.jpg`, or `X.jpg` and `x.png` on a case-insensitive disk), each of them gets a
 * short hash of its full path, so the result does not depend on argument order.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { artifactPaths, type ArtifactPaths } from '../../shared/artifacts.js';
import type { OverlayFormat } from '../../shared/explain-options.js';

export interface OutputNames {
  /** The name every output file of this input carries. */
  stem: string;
  /** Each artifact's path relative to the output directory. */
  paths: ArtifactPaths;
}

const MAX_STEM = 96;

export function sanitizeStem(fileName: string): string {
  const base = path.basename(fileName.replace(/\\/g, '/'));
  const ext = path.extname(base);
  const withoutExt = ext.length > 0 && ext.length < base.length ? base.slice(0, -ext.length) : base;
  let stem = withoutExt
    .normalize('NFKD')
    // Accents become their base letter (café → cafe); other non-ASCII becomes '_'.
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z0-9._-]+/g, '_')
    .replace(/^[._]+/, '')
    .replace(/_+/g, '_')
    .slice(0, MAX_STEM);
  if (stem === '' || stem === '_') stem = 'image';
  return stem;
}

/** One entry per input, in input order. `resolve` turns an input into the identity that is hashed. */
export function outputNamesFor(inputs: readonly string[], format: OverlayFormat, resolve: (p: string) => string = (p) => path.resolve(p)): OutputNames[] {
  const stems = inputs.map(sanitizeStem);
  const counts = new Map<string, number>();
  for (const s of stems) counts.set(s.toLowerCase(), (counts.get(s.toLowerCase()) ?? 0) + 1);
  return inputs.map((input, i) => {
    let stem = stems[i];
    if ((counts.get(stem.toLowerCase()) ?? 0) > 1) {
      stem = `${stem}-${createHash('sha256').update(resolve(input)).digest('hex').slice(0, 10)}`;
    }
    return { stem, paths: artifactPaths(stem, format) };
  });
}
