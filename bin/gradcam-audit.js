#!/usr/bin/env node
// The `gradcam-audit` command (package.json "bin"; `npm run cli` and `npm run demo` use it too).
// It runs the compiled CLI in dist/ (about 0.4 s to start) when dist/ is at least as new as every
// file under src/, and otherwise runs src/ through tsx (4-7 s per call), so an edited checkout never
// runs stale code. `npm ci` builds dist/ (the package's `prepare` script); `npm run build` refreshes it.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { sizeThreadpool } from './threadpool.js';

// Before anything queues work on libuv's threadpool, which nothing has done yet at this line.
sizeThreadpool();

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const built = join(root, 'dist', 'src', 'cli.js');
const sources = join(root, 'src');

/** Newest modification time under a folder (about 2 ms for this repository's ~200 files). */
function newest(dir) {
  let latest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    latest = Math.max(latest, entry.isDirectory() ? newest(path) : statSync(path).mtimeMs);
  }
  return latest;
}

// A published package ships dist/ without src/: always the compiled CLI there.
const fresh = existsSync(built) && (!existsSync(sources) || newest(sources) <= statSync(built).mtimeMs);
if (fresh) {
  await import(pathToFileURL(built).href);
} else {
  if (process.stderr.isTTY) {
    process.stderr.write(
      existsSync(built)
        ? 'gradcam-audit: src/ changed since the last build, running from source (slow start); `npm run build` makes it fast again\n'
        : 'gradcam-audit: no build in dist/, running from source (slow start); `npm run build` makes it fast\n',
    );
  }
  const { register } = await import('tsx/esm/api');
  register();
  await import(pathToFileURL(join(sources, 'cli.ts')).href);
}
