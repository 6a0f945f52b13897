/**
 * `npm run bench:gpu` is for GPU nodes: on a machine where no GPU provider starts (this one, and CI)
 * it must say so, with each provider's reason, and exit 2; `--allow-cpu` still runs the whole
 * measurement on the CPU and prints both tables. Tests the command, not GPU speed.
 */
import { execFile } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { formatGpuBench, parseGpuBenchArgs, runGpuBench } from '../../../bench/gpu.js';
import { listDriverGpus } from '../../../src/worker/engine/onnx/providers.js';

const REPO_ROOT = new URL('../../..', import.meta.url).pathname;

function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'bench/gpu.ts', ...args], { cwd: REPO_ROOT, timeout: 120_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }),
    );
  });
}

describe('bench:gpu', { timeout: 150_000 }, () => {
  it('exits 2 with each GPU provider reason where none starts', async (ctx) => {
    if ((await listDriverGpus()).length > 0) ctx.skip();
    const out = await bench(['--model', 'small']);
    expect(out.code).toBe(2);
    expect(out.stderr).toMatch(/no GPU provider of ONNX Runtime starts on this machine/);
    expect(out.stderr).toMatch(/^ {2}cuda: /m);
    expect(out.stderr).toMatch(/--allow-cpu/);
    expect(out.stdout).toBe('');
  });

  it('runs the whole measurement on the CPU with --allow-cpu, fp32 and fp16 side by side', async () => {
    // In process (the command's exit path is tested above): one engine start instead of a second tsx start.
    const options = parseGpuBenchArgs(['--allow-cpu', '--model', 'small', '--batches', '1,3', '--runs', '1', '--images', '3', '--image-size', '96x64', '--precision', 'fp32,fp16']);
    const result = await runGpuBench(options, () => undefined);
    if ('noGpu' in result) throw new Error(result.noGpu);
    const rows = formatGpuBench(result, options).split('\n');
    for (const precision of ['fp32', 'fp16']) {
      for (const b of [1, 3]) expect(rows.some((r) => new RegExp(`^\\| ${precision} \\| ${b} \\| [\\d.]+ \\| [\\d.]+ \\| [\\d.]+ \\| n/a \\|$`).test(r))).toBe(true);
    }
    // The fp16 engine's results against fp32's, within the doctor's fp16 tolerances.
    expect(result.parity).not.toBeNull();
    expect(result.parity!.probability).toBeLessThan(1e-2);
    expect(result.parity!.cam).toBeLessThan(2e-2);
    expect(rows.join('\n')).toMatch(/fp16 vs fp32 on 3 images \(Grad-CAM, top-1\): max \|Δp\| [\d.e+-]+ \(tolerance 0.01\), max \|ΔCAM\| [\d.e+-]+ \(tolerance 0.02\), top-1 mismatches 0/);
    for (const stage of ['decode', 'preprocess', 'engine', 'render']) expect(rows.some((r) => new RegExp(`^\\| ${stage} \\| [\\d.]+ \\| \\d+% \\|$`).test(r))).toBe(true);
    expect(rows.join('\n')).toMatch(/CPU cores to feed the engine at its best rate .*: [\d.]+/);
  });

  it('names the flag at fault', () => {
    expect(() => parseGpuBenchArgs(['--batches', '8,0'])).toThrow(/--batches.*positive integers/);
    expect(() => parseGpuBenchArgs(['--image-size', '10'])).toThrow(/--image-size.*WIDTHxHEIGHT/);
    expect(() => parseGpuBenchArgs(['--turbo'])).toThrow(/--turbo.*unknown flag/);
    expect(() => parseGpuBenchArgs(['--precision', 'fp32,int8'])).toThrow(/--precision.*fp32 and\/or fp16.*int8/);
    expect(parseGpuBenchArgs(['--batches', '1,64', '--image-size', '320x240'])).toMatchObject({ batches: [1, 64], imageWidth: 320, imageHeight: 240, model: 'vgg16', precisions: ['fp32'] });
  });
});
