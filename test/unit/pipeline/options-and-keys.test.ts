import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import { DEFAULT_EXPLAIN_OPTIONS, type ExplainOptions } from '../../../src/shared/explain-options.js';
import { stableStringify } from '../../../src/shared/stable-json.js';
import { batchKeyFor, optionsHashFor } from '../../../src/worker/pipeline/job-keys.js';
import { lockDurationFor, PIPELINE_DEFAULTS, resolvePipelineOptions, workerEngineThreads } from '../../../src/worker/pipeline/options.js';
import { Semaphore } from '../../../src/worker/pipeline/semaphore.js';
import { parseWorkerFlags, useEngineThread } from '../../../src/worker/pipeline/run-worker.js';

const base: ExplainOptions = { ...DEFAULT_EXPLAIN_OPTIONS };
const model = { modelName: 'vgg16', weightsHash: 'abc', layer: 'block5_conv3' };

describe('pipeline options', () => {
  it('defaults prefetch to two batches (one decoding, one uploading) and validates every field with the flag name', () => {
    const o = resolvePipelineOptions({ batchSize: 8 });
    expect(o.prefetch).toBe(16);
    expect(resolvePipelineOptions({ batchSize: 8, prefetch: 3 }).prefetch).toBe(3);
    expect(o.drainTimeoutMs).toBe(PIPELINE_DEFAULTS.drainTimeoutMs);
    expect(o.workerId).toMatch(/^[A-Za-z0-9_.-]+$/);
    expect(() => resolvePipelineOptions({ batchSize: 0 })).toThrow(ConfigError);
    expect(() => resolvePipelineOptions({ batchSize: 0 })).toThrow(/--batch-size/);
    expect(() => resolvePipelineOptions({ workerId: 'a:b' })).toThrow(/--worker-id/);
    expect(() => resolvePipelineOptions({ maxBatchDelayMs: 1.5 })).toThrow(/--max-batch-delay-ms/);
  });

  it("gives the worker's engine every core but one, and never fewer than one thread", () => {
    expect([1, 2, 4, 16].map(workerEngineThreads)).toEqual([1, 1, 3, 15]);
  });

  it('sizes the lock at ten times the measured batch, never below the floor, unless given', () => {
    expect(lockDurationFor(100, { minLockDurationMs: 60_000 })).toBe(60_000);
    expect(lockDurationFor(12_345, { minLockDurationMs: 60_000 })).toBe(123_450);
    expect(lockDurationFor(12_345, { minLockDurationMs: 60_000, lockDurationMs: 5_000 })).toBe(5_000);
  });

  it('parses worker flags, taking the weights from the environment when no flag names them', () => {
    const o = parseWorkerFlags({ batchSize: '4', metricsPort: '0', drainTimeoutMs: '1000', maxStalledCount: '10' }, { GRADCAM_AUDIT_WEIGHTS: '/m/model.json' });
    expect(o).toMatchObject({ weights: '/m/model.json', metricsPort: 0, metricsHost: '127.0.0.1', engine: 'auto', backend: 'auto' });
    expect(o.pipeline).toMatchObject({ batchSize: 4, drainTimeoutMs: 1000, maxStalledCount: 10 });
    expect(resolvePipelineOptions(parseWorkerFlags({ weights: 'w.h5' }, {}).pipeline).maxStalledCount).toBe(2);
    expect(() => parseWorkerFlags({ weights: 'w.h5', maxStalledCount: '-1' }, {})).toThrow(/--max-stalled-count/);
    expect(() => parseWorkerFlags({}, {})).toThrow(/--weights: required/);
    expect(() => parseWorkerFlags({ weights: 'w.h5', metricsPort: '70000' }, {})).toThrow(/--metrics-port/);
    expect(() => parseWorkerFlags({ weights: 'w.h5', engine: 'torch' }, {})).toThrow(/--engine/);
    expect(() => parseWorkerFlags({ weights: 'w.h5', engineThread: 'maybe' }, {})).toThrow(/--engine-thread: expected one of auto, on, off/);
  });

  it('takes the metrics host and the GPU requirement from the environment the container images set', () => {
    const env = { GRADCAM_AUDIT_METRICS_HOST: '0.0.0.0', GRADCAM_AUDIT_REQUIRE_GPU: 'true' };
    expect(parseWorkerFlags({ weights: 'w.h5' }, env)).toMatchObject({ metricsHost: '0.0.0.0', requireGpu: true });
    expect(parseWorkerFlags({ weights: 'w.h5', metricsHost: '127.0.0.1' }, env)).toMatchObject({ metricsHost: '127.0.0.1' });
    expect(parseWorkerFlags({ weights: 'w.h5' }, {})).toMatchObject({ metricsHost: '127.0.0.1', requireGpu: false });
    expect(() => parseWorkerFlags({ weights: 'w.h5' }, { GRADCAM_AUDIT_REQUIRE_GPU: 'perhaps' })).toThrow(/GRADCAM_AUDIT_REQUIRE_GPU: expected true or false/);
  });

  it('computes in a thread on CPU-only machines and on the main thread next to a GPU, unless told', async () => {
    const none = async (): Promise<string[]> => [];
    const gpu = async (): Promise<string[]> => ['NVIDIA H100'];
    expect(await useEngineThread('auto', none)).toBe(true);
    expect(await useEngineThread('auto', gpu)).toBe(false);
    expect(await useEngineThread('on', gpu)).toBe(true);
    expect(await useEngineThread('off', none)).toBe(false);
  });
});

describe('batch keys and options hashes', () => {
  it('lets jobs that differ only in rendering share a batch', () => {
    const a = batchKeyFor(base, 'block5_conv3');
    expect(batchKeyFor({ ...base, colormap: 'jet', alpha: 0.3, overlayFormat: 'png', maxSide: 512 }, 'block5_conv3')).toBe(a);
    expect(batchKeyFor({ ...base, layer: 'block5_conv3' }, 'block5_conv3')).toBe(a); // explicit default layer
  });

  it('separates jobs whose engine call differs', () => {
    const a = batchKeyFor(base, 'block5_conv3');
    for (const change of [{ method: 'hirescam' }, { score: 'logit' }, { topK: 3 }, { resize: 'bilinear' }, { targets: { kind: 'indices', indices: [1] } }, { layer: 'block4_conv3' }] as Array<Partial<ExplainOptions>>) {
      expect(batchKeyFor({ ...base, ...change }, 'block5_conv3'), JSON.stringify(change)).not.toBe(a);
    }
  });

  it('hashes every output-changing option and the model, independent of key order', () => {
    const h = optionsHashFor(base, model);
    expect(h).toMatch(/^[0-9a-f]{64}$/);
    const reordered = Object.fromEntries(Object.entries(base).reverse()) as unknown as ExplainOptions;
    expect(optionsHashFor(reordered, model)).toBe(h);
    expect(optionsHashFor({ ...base, alpha: 0.7 }, model)).not.toBe(h);
    expect(optionsHashFor(base, { ...model, weightsHash: 'def' })).not.toBe(h);
    expect(stableStringify({ b: 1, a: [2, { d: undefined, c: 3 }] })).toBe('{"a":[2,{"c":3}],"b":1}');
  });
});

describe('Semaphore', () => {
  it('never runs more than its limit at once and lets every task through', async () => {
    const s = new Semaphore(2);
    let active = 0;
    let peak = 0;
    const task = async (i: number): Promise<number> =>
      s.run(async () => {
        active++;
        peak = Math.max(peak, active);
        await new Promise((r) => setTimeout(r, 5));
        active--;
        return i;
      });
    expect(await Promise.all([0, 1, 2, 3, 4, 5].map(task))).toEqual([0, 1, 2, 3, 4, 5]);
    expect(peak).toBe(2);
    expect(s.inUse).toBe(0);
  });
});
