/**
 * Execution-provider selection and node placement. No GPU runs here, so the machine facts (driver
 * GPUs, installed libraries, whether a trial session starts) are injected where a GPU is needed;
 * the trial itself and the placement report run on the real ONNX Runtime.
 */
import { readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/shared/errors.js';
import { createOnnxEngine } from '../../../src/worker/engine/onnx/engine.js';
import { resolveOnnxRuntimeOptions } from '../../../src/worker/engine/onnx/options.js';
import { describePlacement, summarizePlacement } from '../../../src/worker/engine/onnx/placement.js';
import { defaultProviderEnvironment, selectProviders, type GpuProvider, type ProviderEnvironment } from '../../../src/worker/engine/onnx/providers.js';
import { vggShapedSpec } from '../../../src/worker/model/vgg-shaped.js';

function machine(o: { gpus?: string[]; installed?: GpuProvider[]; failing?: Partial<Record<GpuProvider, string>> }): ProviderEnvironment & { trials: string[] } {
  const trials: string[] = [];
  return {
    trials,
    installed: (p) => (o.installed ?? []).includes(p),
    gpus: async () => o.gpus ?? [],
    trial: async (p) => {
      trials.push(p);
      return o.failing?.[p] ?? null;
    },
  };
}

describe('runtime options', () => {
  it('default to auto providers, one thread per available core, the graph cache and the placement check', () => {
    const o = resolveOnnxRuntimeOptions();
    expect(o.executionProviders).toBe('auto');
    expect(o.intraOpThreads).toBeGreaterThanOrEqual(1);
    expect(o.cacheDir).toMatch(/gradcam-audit[/\\]onnx$/);
    expect(o.checkPlacement).toBe(true);
  });

  it('validate with the flag name', () => {
    expect(() => resolveOnnxRuntimeOptions({ intraOpThreads: 0 })).toThrow(ConfigError);
    expect(() => resolveOnnxRuntimeOptions({ executionProviders: ['rocm' as 'cpu'] })).toThrow(/--onnx-providers: unknown execution provider rocm/);
  });
});

describe('selectProviders(auto)', () => {
  it('runs on the CPU without a GPU, and never tries a GPU provider there', async () => {
    const m = machine({ installed: ['cuda', 'tensorrt'] });
    const s = await selectProviders('auto', m);
    expect(s.providers).toEqual(['cpu']);
    expect(m.trials).toEqual([]);
    expect(s.verdicts.find((v) => v.provider === 'cuda')).toMatchObject({ usable: false, reason: expect.stringMatching(/no NVIDIA GPU visible/) });
  });

  it('takes CUDA when a GPU is visible and the trial session starts; TensorRT first when it starts too', async () => {
    const both = await selectProviders('auto', machine({ gpus: ['NVIDIA H200'], installed: ['cuda', 'tensorrt'] }));
    expect(both.providers).toEqual(['tensorrt', 'cuda', 'cpu']);
    expect(both.verdicts.find((v) => v.provider === 'cuda')?.reason).toMatch(/started on NVIDIA H200/);
    const noTrt = await selectProviders('auto', machine({ gpus: ['NVIDIA H200'], installed: ['cuda', 'tensorrt'], failing: { tensorrt: 'libnvinfer.so.10: cannot open shared object file' } }));
    expect(noTrt.providers).toEqual(['cuda', 'cpu']);
    expect(noTrt.verdicts.find((v) => v.provider === 'tensorrt')?.reason).toMatch(/libnvinfer/);
  });

  it('falls back to the CPU with the reason when the library is missing or CUDA cannot start', async () => {
    const missing = await selectProviders('auto', machine({ gpus: ['NVIDIA L4'] }));
    expect(missing.providers).toEqual(['cpu']);
    expect(missing.verdicts.find((v) => v.provider === 'cuda')?.reason).toMatch(/libonnxruntime_providers_cuda\.so is not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12/);
    const m = machine({ gpus: ['NVIDIA L4'], installed: ['cuda', 'tensorrt'], failing: { cuda: 'libcudnn.so.9: cannot open shared object file' } });
    const broken = await selectProviders('auto', m);
    expect(broken.providers).toEqual(['cpu']);
    // TensorRT needs CUDA for the nodes it leaves out: no trial without it.
    expect(m.trials).toEqual(['cuda']);
    expect(broken.verdicts.map((v) => [v.provider, v.usable])).toEqual([
      ['tensorrt', false],
      ['cuda', false],
      ['cpu', true],
    ]);
  });

  it('the real trial session reports ONNX Runtime’s own error when the CUDA provider cannot load', async () => {
    const real = defaultProviderEnvironment();
    if (real.installed('cuda')) return; // a GPU image: the trial may legitimately start
    const reason = await real.trial('cuda', 0);
    expect(reason).toMatch(/Failed to load shared library|cannot open shared object/);
    // A machine that claims a GPU but cannot load CUDA still ends on the CPU, with that reason.
    const s = await selectProviders('auto', { ...real, installed: () => true, gpus: async () => ['claimed GPU'] });
    expect(s.providers).toEqual(['cpu']);
    expect(s.verdicts.find((v) => v.provider === 'cuda')?.reason).toBe(reason);
  });
});

describe('selectProviders(explicit list)', () => {
  it('keeps the order asked for and appends the CPU fallback', async () => {
    expect((await selectProviders(['cuda'], machine({ installed: ['cuda'] }))).providers).toEqual(['cuda', 'cpu']);
    expect((await selectProviders(['cpu'], machine({}))).providers).toEqual(['cpu']);
  });

  it('a requested provider that is not installed is a ConfigError that says how to install it', async () => {
    await expect(selectProviders(['cuda'], machine({}))).rejects.toThrow(ConfigError);
    await expect(selectProviders(['tensorrt', 'cuda'], machine({ installed: ['cuda'] }))).rejects.toThrow(/tensorrt is not installed.*ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });
});

describe('node placement', () => {
  it('reads the provider of every executed node from ORT’s profile of the first batch, and removes the trace', async () => {
    const spec = vggShapedSpec({ seed: 3 });
    // Traces this engine leaves: files of this process's prefix that were not there before (unit test
    // files share a process, one after another).
    const traces = (() => {
      const mine = (): string[] => readdirSync(tmpdir()).filter((f) => f.startsWith(`gca-ort-placement-${process.pid}-`));
      const before = new Set(mine());
      return () => mine().filter((f) => !before.has(f));
    })();
    const engine = await createOnnxEngine({ spec, cache: null, runtime: { intraOpThreads: 1 } });
    try {
      const p = engine.info.placement;
      expect(p).toBeDefined();
      expect(Object.keys(p?.nodesByProvider ?? {})).toEqual(['CPUExecutionProvider']);
      // At least the four convs of the two blocks and the dense layers ran, all on the CPU.
      expect(p?.nodesByProvider.CPUExecutionProvider).toBeGreaterThan(10);
      expect(p?.computeOnCpu).toBe(0);
      expect(traces()).toEqual([]);
      // Profiling is off after the first batch: later runs write no trace.
      await engine.predict([{ data: new Float32Array(32 * 32 * 3), height: 32, width: 32 }]);
    } finally {
      await engine.dispose();
    }
    expect(traces()).toEqual([]);
  });

  it('flags compute nodes that fell back to the CPU under a GPU provider, and the copies they cost', () => {
    const ev = (name: string, op: string, provider: string) => ({ cat: 'Node', name: `${name}_kernel_time`, args: { op_name: op, provider } });
    const trace = [
      { cat: 'Session', name: 'model_run' },
      ev('conv1', 'Conv', 'CUDAExecutionProvider'),
      ev('conv1', 'Conv', 'CUDAExecutionProvider'), // a second run of the same node counts once
      ev('copy_in', 'MemcpyToHost', 'CUDAExecutionProvider'),
      ev('topk', 'TopK', 'CPUExecutionProvider'),
      ev('head', 'Gemm', 'CPUExecutionProvider'),
      ev('copy_out', 'MemcpyFromHost', 'CUDAExecutionProvider'),
      { cat: 'Node', name: 'conv1_fence_before', args: { op_name: 'Conv' } },
    ];
    const p = summarizePlacement(trace, true);
    expect(p).toEqual({ nodesByProvider: { CUDAExecutionProvider: 3, CPUExecutionProvider: 2 }, cpuOps: { TopK: 1, Gemm: 1 }, computeOnCpu: 1, memcpyNodes: 2 });
    expect(describePlacement(p)).toBe('CUDA 3, CPU 2 (on CPU: TopK, Gemm); 2 device copies');
    // On a CPU-only session nothing is a fallback.
    expect(summarizePlacement(trace, false)).toMatchObject({ computeOnCpu: 0, cpuOps: {} });
    expect(() => summarizePlacement({ not: 'a trace' }, true)).toThrow(/not a JSON array/);
  });
});
