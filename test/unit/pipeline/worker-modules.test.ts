/**
 * The worker's main thread does not load TF.js unless its engine runs TF.js there: the flag parsing
 * reads backend-choice.ts, not the backend module, whose `@tensorflow/tfjs` (layers, converter and
 * backends) was about half of the heap the worker's modules held, marked by every full collection.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const loaded = async (module: string): Promise<string[]> => {
  const script = `await import(${JSON.stringify(new URL(module, import.meta.url).href)}); const { createRequire } = await import('node:module'); const req = createRequire(import.meta.url); console.log(JSON.stringify(Object.keys(req.cache).filter((k) => k.includes('@tensorflow'))));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').pop() ?? '[]') as string[];
};

describe("the worker's module graph", () => {
  it('loads no TF.js module in the main thread; the TF.js backend module itself does (the check can fail)', async () => {
    const [worker, backend] = await Promise.all([loaded('../../../src/worker/pipeline/run-worker.ts'), loaded('../../../src/worker/engine/tfjs/backend.ts')]);
    expect(worker).toEqual([]);
    expect(backend.length).toBeGreaterThan(0);
  }, 90_000);
});
