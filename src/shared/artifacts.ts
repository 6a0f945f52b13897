/**
 * The files produced for every successfully explained image, in one table. The image core renders
 * them in this order and its hosts (`explain` on disk, workers on S3) write them in this order; the
 * output keys, the producer's skip list (never audit a run's own outputs), the dashboard's object
 * proxy and the manifests' `outputs` all read this table, so adding an artifact is one row here
 * plus its renderer in the core.
 *
 * One naming scheme for both hosts: `<root>/<folder>/<name>.<extension>`, where the root is the
 * run's output prefix (S3) or `--out` (explain), and the name is the escaped source key (S3) or a
 * safe file stem (explain).
 */
import type { OverlayFormat } from './explain-options.js';

export const ARTIFACT_NAMES = ['overlay', 'heatmap', 'prediction'] as const;
export type ArtifactName = (typeof ARTIFACT_NAMES)[number];

export interface ArtifactSpec {
  name: ArtifactName;
  /** Folder under the output root. */
  folder: string;
  /** File extension (no dot) for the run's overlay format. */
  extension: (format: OverlayFormat) => string;
  contentType: (format: OverlayFormat) => string;
  /** When it is produced, for people (README, docs). */
  produced: string;
}

export const OVERLAY_EXTENSIONS: Readonly<Record<OverlayFormat, string>> = Object.freeze({ png: 'png', jpeg: 'jpg', webp: 'webp' });
export const OVERLAY_CONTENT_TYPES: Readonly<Record<OverlayFormat, string>> = Object.freeze({ png: 'image/png', jpeg: 'image/jpeg', webp: 'image/webp' });

/**
 * Write order matters: the prediction document goes last, so its presence means "complete" (the
 * worker's idempotency check reads it).
 */
export const ARTIFACTS: readonly ArtifactSpec[] = Object.freeze([
  {
    name: 'overlay',
    folder: 'overlays',
    extension: (f: OverlayFormat) => OVERLAY_EXTENSIONS[f],
    contentType: (f: OverlayFormat) => OVERLAY_CONTENT_TYPES[f],
    produced: 'every ok image: the map upsampled onto the image, colour-mapped and blended (longer side capped by --max-side)',
  },
  {
    name: 'heatmap',
    folder: 'heatmaps',
    extension: () => 'png',
    contentType: () => 'image/png',
    produced: "every ok image: the map alone as 8-bit gray, upsampled to the image's aspect ratio",
  },
  {
    name: 'prediction',
    folder: 'predictions',
    extension: () => 'json',
    contentType: () => 'application/json',
    produced: 'every ok image, written last: predictions, maps, metrics, truth, provenance, timings',
  },
] satisfies ArtifactSpec[]);

/** The artifact whose presence means an image's outputs are complete. */
export const COMPLETION_ARTIFACT: ArtifactName = 'prediction';

/** Folders a run writes under its output root. */
export const ARTIFACT_FOLDERS: readonly string[] = Object.freeze(ARTIFACTS.map((a) => a.folder));

export type ArtifactPaths = Record<ArtifactName, string>;

/** Each artifact's path relative to the output root: `<folder>/<name>.<extension>`. */
export function artifactPaths(name: string, format: OverlayFormat): ArtifactPaths {
  return Object.fromEntries(ARTIFACTS.map((a) => [a.name, `${a.folder}/${name}.${a.extension(format)}`])) as ArtifactPaths;
}

/** Each artifact's location transformed (relative path → S3 key, key → URI, path → file path). */
export function mapArtifactPaths(paths: ArtifactPaths, fn: (path: string, name: ArtifactName) => string): ArtifactPaths {
  return Object.fromEntries(ARTIFACTS.map((a) => [a.name, fn(paths[a.name], a.name)])) as ArtifactPaths;
}
