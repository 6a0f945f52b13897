import { readFileSync } from 'node:fs';

/** Package version, recorded in every manifest for provenance. Read once at start-up. */
export const PACKAGE_VERSION: string = (() => {
  // Works from src/ (tsx) and dist/src/ (compiled): walk up to the package root.
  for (const rel of ['../../package.json', '../../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'gradcam-audit' && pkg.version) return pkg.version;
    } catch {
      // try the next candidate
    }
  }
  return '0.0.0-unknown';
})();
