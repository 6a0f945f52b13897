import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { expandInputs } from '../../../src/worker/explain/inputs.js';

describe('explain inputs', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'explain-inputs-'));
    for (const f of ['b.jpg', 'a.PNG', 'notes.txt', '.hidden.jpg', 'sub/c.webp', 'sub/deeper/d.jpeg', '.git/e.jpg', 'docs/readme.txt']) {
      await mkdir(path.dirname(path.join(dir, f)), { recursive: true });
      await writeFile(path.join(dir, f), 'x');
    }
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  test('a directory gives its images recursively, sorted, without dot files or other extensions', async () => {
    expect((await expandInputs([dir])).map((p) => path.relative(dir, p))).toEqual(['a.PNG', 'b.jpg', 'sub/c.webp', 'sub/deeper/d.jpeg']);
  });

  test('globs match below their base; files stay as given; a file reached twice is listed once', async () => {
    const got = await expandInputs([path.join(dir, 'b.jpg'), `${dir}/**/*.{jpg,jpeg}`, path.join(dir, 'notes.txt')]);
    expect(got.map((p) => path.relative(dir, p))).toEqual(['b.jpg', 'sub/deeper/d.jpeg', 'notes.txt']);
  });

  test('a missing file is passed on (reported per image); an empty glob or image-less directory is an error', async () => {
    expect(await expandInputs(['missing.jpg'])).toEqual(['missing.jpg']);
    await expect(expandInputs([`${dir}/*.gif`])).rejects.toThrow(/no file matches/);
    await expect(expandInputs([path.join(dir, 'docs')])).rejects.toThrow(/holds no image/);
  });
});
