/**
 * Serving never compiles: the engine compiles the graph of every method it serves when it is
 * created, into the graph cache or, with the cache off, into a temporary cache of its own that
 * dispose deletes. Real ONNX Runtime sessions on a small VGG-shaped model, with a cap of one open
 * session so that methods are evicted and reopened.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import type { CamMethod } from '../../../src/shared/explain-options.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import type { OnnxEngineOptions } from '../../../src/worker/engine/onnx/engine.js';
import { diskGraphCache, temporaryGraphCache } from '../../../src/worker/engine/onnx/graph-cache.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';
import { randomImages } from './helpers/images.js';

const spec = vggShapedSpec({ seed: 29, inputStd: 64 });
const images = randomImages(1, 32, 32, 61);
const methods: CamMethod[] = ['gradcam', 'hirescam', 'layercam'];

interface Line {
  msg: string;
  method?: string | null;
  cached?: boolean;
  compileMs?: number;
}

function capture(): { logger: pino.Logger; lines: () => Line[] } {
  const out: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _e, cb) => (out.push(chunk.toString()), cb()) });
  return { logger: pino({ level: 'info' }, stream), lines: () => out.map((l) => JSON.parse(l) as Line) };
}

/** Create an engine, then serve every method twice over with one session open at a time. */
async function serveEveryMethod(cache: OnnxEngineOptions['cache']): Promise<{ lines: Line[]; compiledAtCreation: number; compiledAfter: number; dir: string; temporary: boolean; dirAfterDispose: boolean }> {
  const { logger, lines } = capture();
  const engine = await createOnnxEngine({ spec, cache, methods, logger, runtime: { intraOpThreads: 1, maxSessions: 1, checkPlacement: false } });
  const created = engine.graphStats();
  try {
    expect(readdirSync(created.dir).filter((f) => f.endsWith('.onnx'))).toHaveLength(methods.length);
    for (const method of [...methods, ...methods]) await engine.explain({ images, targets: { kind: 'top1' }, topK: 1, method, score: 'prob' });
    // Every method after the first was opened, and reopened after its eviction.
    expect(engine.sessionStats()).toMatchObject({ opened: 2 * methods.length, evicted: 2 * methods.length - 1 });
  } finally {
    await engine.dispose();
  }
  return { lines: lines(), compiledAtCreation: created.compiled, compiledAfter: engine.graphStats().compiled, dir: created.dir, temporary: created.temporary, dirAfterDispose: existsSync(created.dir) };
}

/** The session-ready lines of every method opened after creation: all from a compiled graph. */
function expectNoCompileWhileServing(lines: Line[]): void {
  const compiles = lines.filter((l) => l.msg === 'compiled ONNX graph');
  const created = lines.findIndex((l) => l.msg === 'ONNX Runtime session ready');
  expect(compiles).toHaveLength(methods.length);
  // Every compile logged before the engine was ready.
  expect(lines.findLastIndex((l) => l.msg === 'compiled ONNX graph')).toBeLessThan(created);
  const opens = lines.filter((l) => l.msg.startsWith('ONNX Runtime session for '));
  expect(opens).toHaveLength(2 * methods.length - 1);
  for (const open of opens) expect(open).toMatchObject({ cached: true, compileMs: 0 });
}

describe('ONNX method graphs: compiled at creation, never while serving', () => {
  it('with the cache off: compiles into a temporary cache, reopens evicted methods from it, and deletes it on dispose', async () => {
    const run = await serveEveryMethod(null);
    expect(run).toMatchObject({ compiledAtCreation: methods.length, compiledAfter: methods.length, temporary: true, dirAfterDispose: false });
    expect(run.dir.startsWith(tmpdir())).toBe(true);
    expectNoCompileWhileServing(run.lines);
  });

  it('with the cache on: compiles into it (kept after dispose), and a second engine compiles nothing', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'onnx-method-graphs-'));
    try {
      const first = await serveEveryMethod(diskGraphCache(dir));
      expect(first).toMatchObject({ compiledAtCreation: methods.length, compiledAfter: methods.length, dir, temporary: false, dirAfterDispose: true });
      expectNoCompileWhileServing(first.lines);
      const second = await serveEveryMethod(diskGraphCache(dir));
      expect(second).toMatchObject({ compiledAtCreation: 0, compiledAfter: 0 });
      expect(second.lines.filter((l) => l.msg === 'compiled ONNX graph')).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('deletes the temporary caches left by processes that are gone, and keeps those of live ones', async () => {
    const root = mkdtempSync(join(tmpdir(), 'onnx-orphans-'));
    try {
      const gone = spawnSync(process.execPath, ['-e', '']).pid;
      const orphan = join(root, `gca-onnx-graphs-${gone}-aaaaaa`);
      mkdirSync(orphan);
      writeFileSync(join(orphan, 'graph.onnx'), 'x');
      const kept = [join(root, `gca-onnx-graphs-${process.ppid}-bbbbbb`), join(root, `gca-onnx-graphs-${process.pid}-cccccc`), join(root, 'unrelated-1')];
      for (const dir of kept) mkdirSync(dir);
      const temporary = await temporaryGraphCache(root);
      expect(temporary.orphansRemoved).toEqual([orphan]);
      expect(existsSync(orphan)).toBe(false);
      for (const dir of kept) expect(existsSync(dir)).toBe(true);
      expect(temporary.cache.dir.startsWith(join(root, `gca-onnx-graphs-${process.pid}-`))).toBe(true);
      await temporary.remove();
      expect(existsSync(temporary.cache.dir)).toBe(false);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
