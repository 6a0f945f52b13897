/**
 * Engine selection: `auto` runs ONNX Runtime when the compiler supports the model, TF.js otherwise
 * (with the reason logged); `onnx` on an unsupported model also falls back, with a warning.
 */
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { createEngine } from '../../../src/worker/engine/factory.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';

function capture(): { logger: pino.Logger; lines: () => Array<{ level: number; msg: string; reason?: string }> } {
  const out: string[] = [];
  const stream = new Writable({ write: (chunk: Buffer, _e, cb) => (out.push(chunk.toString()), cb()) });
  return { logger: pino({ level: 'debug' }, stream), lines: () => out.map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string }) };
}

const spec = vggShapedSpec({ seed: 8, inputStd: 64 });
// An overlapping max-pool after the target has no closed-form backward in the ONNX compiler.
const unsupportedSpec = { ...spec, layers: spec.layers.map((l) => (l.name === 'block2_pool' && l.type === 'maxpool2d' ? { ...l, poolSize: [3, 3] as [number, number], padding: 'same' as const } : l)) };

describe('createEngine with ONNX', () => {
  it('auto picks ONNX Runtime for a supported model', async () => {
    const e = await createEngine({ spec, engine: 'auto', onnx: { cacheDir: null, intraOpThreads: 1 } });
    expect(e.info).toMatchObject({ engine: 'onnx', backend: 'onnx-cpu', layer: 'block2_conv2' });
    await e.dispose();
  });

  it('auto keeps TF.js when a TF.js backend is forced', async () => {
    const e = await createEngine({ spec, engine: 'auto', backend: 'cpu' });
    expect(e.info.engine).toBe('tfjs');
    await e.dispose();
  });

  it('falls back to TF.js for an unsupported model and logs why', async () => {
    const { logger, lines } = capture();
    const e = await createEngine({ spec: unsupportedSpec, engine: 'onnx', logger });
    expect(e.info.engine).toBe('tfjs');
    await e.dispose();
    const line = lines().find((l) => /ONNX engine cannot run/.test(l.msg));
    expect(line?.reason).toMatch(/block2_pool.*only square, non-overlapping/);
    expect(line?.level).toBe(40); // warn: onnx was asked for explicitly
  });

  it('an explicit onnx request fails loudly when the runtime cannot start (missing CUDA provider)', async () => {
    // The CUDA provider library is not installed on CPU machines; on a GPU image this would start.
    const { defaultProviderEnvironment } = await import('../../../src/worker/engine/onnx/providers.js');
    if (defaultProviderEnvironment().installed('cuda')) return;
    await expect(createEngine({ spec, engine: 'onnx', onnx: { executionProviders: ['cuda'], cacheDir: null } })).rejects.toThrow(/cuda is not installed/);
    const fallback = await createEngine({ spec, engine: 'auto', onnx: { executionProviders: ['cuda'], cacheDir: null } });
    expect(fallback.info.engine).toBe('tfjs');
    await fallback.dispose();
  });
});
