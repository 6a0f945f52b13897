/**
 * `explain` arguments → image files. An argument is a file (taken as is, whatever its extension:
 * the user named it), a directory (its images, recursively, by the extensions the producer audits)
 * or a glob such as `photos/**\/*.jpg` (for shells that do not expand it, and for patterns beyond
 * the shell's). Files come out in argument order, each directory's and glob's matches sorted, and a
 * file reached twice is listed once. A glob or directory that matches nothing is an error: a typo
 * should not pass as "0 explained".
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import { ConfigError } from '../../shared/errors.js';
import { IMAGE_EXTENSIONS } from '../../shared/image-types.js';

const GLOB_CHARS = /[*?[\]{}]/;

export async function expandInputs(args: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  const seen = new Set<string>();
  const add = (p: string): void => {
    const abs = path.resolve(p);
    if (seen.has(abs)) return;
    seen.add(abs);
    out.push(p);
  };
  for (const arg of args) {
    const info = await stat(arg).catch(() => null);
    if (info?.isDirectory()) {
      const files = (await walk(arg)).filter(isImageName);
      if (files.length === 0) throw new ConfigError('IMAGE', `directory ${arg} holds no image (${IMAGE_EXTENSIONS.join(', ')})`);
      files.forEach(add);
    } else if (!info && GLOB_CHARS.test(arg)) {
      const files = await glob(arg);
      if (files.length === 0) throw new ConfigError('IMAGE', `no file matches ${arg}`);
      files.forEach(add);
    } else {
      add(arg); // a file, or a missing one: reported per image, like an unreadable one
    }
  }
  return out;
}

function isImageName(file: string): boolean {
  return IMAGE_EXTENSIONS.includes(path.extname(file).slice(1).toLowerCase());
}

/** Every regular file under `dir`, sorted; dot files and dot directories are skipped. */
async function walk(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const files: string[] = [];
  for (const e of entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    if (e.name.startsWith('.')) continue;
    const p = path.join(dir, e.name);
    if (e.isDirectory()) files.push(...(await walk(p)));
    else if (e.isFile()) files.push(p);
  }
  return files;
}

async function glob(pattern: string): Promise<string[]> {
  const posix = pattern.replace(/\\/g, '/');
  const { base } = picomatch.scan(posix);
  const root = base === '' ? '.' : base;
  const info = await stat(root).catch(() => null);
  if (!info?.isDirectory()) return [];
  const isMatch = picomatch(path.posix.normalize(posix), { dot: false });
  return (await walk(root)).filter((f) => isMatch(path.posix.normalize(f.replace(/\\/g, '/'))));
}
