import { Writable } from 'node:stream';
import { pino } from 'pino';
import * as tf from '@tensorflow/tfjs';
import { describe, expect, test } from 'vitest';
import { initBackend, parseBackendChoice } from '../../../src/worker/engine/tfjs/backend.js';
import type { BackendDeps } from '../../../src/worker/engine/tfjs/backend.js';
import { ConfigError } from '../../../src/shared/errors.js';

function capture(): { deps: BackendDeps; lines: Array<Record<string, unknown>>; imported: string[] } {
  const lines: Array<Record<string, unknown>> = [];
  const imported: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const deps: BackendDeps = {
    logger: pino({ level: 'debug' }, stream),
    listGpus: async () => ['Test GPU'],
    // The real import: the native packages are not installed here, so they fail for real.
    importModule: async (name) => {
      imported.push(name);
      return import(name);
    },
  };
  return { deps, lines, imported };
}

describe('backend choice', () => {
  test('auto tries node-gpu, then node, then wasm, logging each failure at debug with its reason', async () => {
    const { deps, lines, imported } = capture();
    const active = await initBackend('wasm', deps);
    expect(active.name).toBe('wasm');
    // Force a fresh auto pick by switching to cpu first.
    await initBackend('cpu', deps);
    imported.length = 0;
    lines.length = 0;
    const auto = await initBackendFresh(deps);
    expect(imported.slice(0, 2)).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
    expect(auto.name).toBe('wasm');
    expect(tf.getBackend()).toBe('wasm');
    const debug = lines.filter((l) => l.level === 20);
    expect(debug.map((l) => l.backend)).toEqual(['node-gpu', 'node']);
    expect(String(debug[0].reason)).toMatch(/tfjs-node-gpu|libtensorflow|Cannot find/);
    expect(lines.some((l) => l.msg === 'tfjs backend ready' && l.backend === 'wasm')).toBe(true);
  });

  test('without a GPU, node-gpu is skipped before importing it', async () => {
    const { deps, lines, imported } = capture();
    deps.listGpus = async () => [];
    await expect(initBackend('node-gpu', deps)).rejects.toThrow(/--backend: no usable TF.js backend \(node-gpu: no NVIDIA GPU visible/);
    expect(imported).toEqual([]);
    expect(lines.some((l) => l.backend === 'node-gpu')).toBe(true);
  });

  test('forcing an unavailable backend is a ConfigError naming --backend; the active one stays usable', async () => {
    const { deps } = capture();
    await initBackend('wasm', deps);
    const err = await initBackend('node', deps).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).variable).toBe('--backend');
    expect(tf.getBackend()).toBe('wasm');
    expect(() => parseBackendChoice('cuda')).toThrow(/--backend: expected one of auto, node-gpu, node, wasm, cpu/);
    expect(parseBackendChoice('cpu')).toBe('cpu');
  });

  test('the cpu backend reports itself and computes', async () => {
    const { deps } = capture();
    const active = await initBackend('cpu', deps);
    expect(active).toMatchObject({ choice: 'cpu', name: 'cpu' });
    expect(active.device).toMatch(/^CPU pure JS/);
    expect(Array.from(await tf.add(tf.tensor1d([1, 2]), 1).data())).toEqual([2, 3]);
    await initBackend('wasm', deps);
  });
});

describe('native backend path', () => {
  test('when @tensorflow/tfjs-node registers "tensorflow", auto picks it over wasm and reports a libtensorflow CPU device', async () => {
    const { deps, imported } = capture();
    // Stand-in for the native package's side effect: a backend named "tensorflow" with the cpu
    // backend's kernels (libtensorflow cannot be downloaded here).
    deps.importModule = async (name) => {
      imported.push(name);
      if (name !== '@tensorflow/tfjs-node') throw new Error(`Cannot find package '${name}'`);
      const cpu = tf.engine().registryFactory.cpu;
      tf.registerBackend('tensorflow', cpu.factory, 3);
      for (const kernel of tf.getKernelsForBackend('cpu')) tf.registerKernel({ ...kernel, backendName: 'tensorflow' });
      return {};
    };
    const { resetBackendForTests } = await import('../../../src/worker/engine/tfjs/backend.js');
    resetBackendForTests();
    const active = await initBackend('auto', deps);
    expect(imported).toEqual(['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']);
    expect(active).toMatchObject({ choice: 'node', name: 'tensorflow' });
    expect(active.device).toMatch(/^CPU libtensorflow/);
    expect(tf.getBackend()).toBe('tensorflow');
    expect(Array.from(await tf.mul(tf.tensor1d([2, 3]), 2).data())).toEqual([4, 6]);
    await initBackend('wasm', capture().deps);
    tf.removeBackend('tensorflow');
  });
});

/** `auto` keeps the active backend, so an auto pick from scratch needs the active one cleared. */
async function initBackendFresh(deps: BackendDeps) {
  const { resetBackendForTests } = await import('../../../src/worker/engine/tfjs/backend.js');
  resetBackendForTests();
  return initBackend('auto', deps);
}
