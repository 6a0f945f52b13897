/**
 * Start-up and first-use cost of the ONNX engine's method graphs: how long `createOnnxEngine`
 * takes with the graph cache cold (empty directory), warm (same directory again) and off, and how
 * much longer the first batch of a second method (hirescam, 1 image) then takes than its second:
 * opening its session, plus compiling its graph wherever the engine did not compile it at creation. One engine serving
 * every method (as the worker creates it), 1 intra-op thread, placement check off.
 *
 * `npx tsx bench/engine-create.ts [--model sessions|vgg16] [--runs 3]`
 * (`sessions`: the 64x64 model of bench/engine-sessions.ts, 34M weights; `vgg16`: 224x224, 138M.)
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOnnxEngine } from '../src/worker/engine/onnx/engine.js';
import type { ModelSpec } from '../src/worker/model/spec.js';
import { randomVgg16Spec, vggShapedSpec } from '../src/worker/model/vgg-shaped.js';

const args = process.argv.slice(2);
const at = (flag: string): string | undefined => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
const model = at('--model') ?? 'sessions';
const runs = Number(at('--runs') ?? 3);

const spec: ModelSpec =
  model === 'vgg16'
    ? randomVgg16Spec({ seed: 1, inputStd: 64 })
    : vggShapedSpec({ seed: 3, inputShape: [64, 64, 3], blocks: [{ filters: 64, convs: 1 }, { filters: 128, convs: 1 }, { filters: 256, convs: 1 }], denseUnits: [2048] });
const [h, w] = spec.inputShape;
const image = { data: new Float32Array(h * w * 3).fill(1), height: h, width: w };

interface Sample {
  createMs: number;
  /** Process CPU time of the creation (all threads): on a shared machine, far steadier than wall time. */
  createCpuMs: number;
  /** The first hirescam batch minus the second: opening its session (and compiling, where that happens then). */
  secondMethodMs: number;
  secondMethodCpuMs: number;
}

async function once(cacheDir: string | null): Promise<Sample> {
  const t0 = performance.now();
  const c0 = process.cpuUsage();
  const engine = await createOnnxEngine({ spec, runtime: { intraOpThreads: 1, checkPlacement: false, cacheDir } });
  const createMs = performance.now() - t0;
  const cpu = process.cpuUsage(c0);
  const createCpuMs = (cpu.user + cpu.system) / 1000;
  const { dir } = engine.graphStats();
  graphMiB = readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0) / 2 ** 20;
  try {
    await engine.explain({ images: [image], targets: { kind: 'top1' }, topK: 1, method: 'gradcam', score: 'prob' });
    const hirescam = async (): Promise<{ wall: number; cpu: number }> => {
      const t = performance.now();
      const c = process.cpuUsage();
      await engine.explain({ images: [image], targets: { kind: 'top1' }, topK: 1, method: 'hirescam', score: 'prob' });
      const u = process.cpuUsage(c);
      return { wall: performance.now() - t, cpu: (u.user + u.system) / 1000 };
    };
    const first = await hirescam();
    const second = await hirescam();
    return { createMs, createCpuMs, secondMethodMs: first.wall - second.wall, secondMethodCpuMs: first.cpu - second.cpu };
  } finally {
    await engine.dispose();
  }
}

/** Disk the compiled graphs of every method take (the last engine's directory, before dispose). */
let graphMiB = 0;
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const rows: Record<string, Sample[]> = { 'cache cold': [], 'cache warm': [], 'cache off': [] };
for (let r = 0; r < runs; r++) {
  const dir = mkdtempSync(join(tmpdir(), 'gca-bench-create-'));
  try {
    rows['cache cold'].push(await once(dir));
    rows['cache warm'].push(await once(dir));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  rows['cache off'].push(await once(null));
}
// On a shared machine the minimum is the least disturbed sample, and CPU time (all threads) is
// steadier than wall time.
const min = (xs: number[]): number => Math.round(Math.min(...xs));
console.log(`model ${model} (${spec.inputShape.join('x')}), ${runs} runs, min / median (ms)`);
console.log('            createOnnxEngine wall | CPU        first hirescam batch minus second, wall | CPU');
for (const [name, xs] of Object.entries(rows)) {
  const col = (f: (x: Sample) => number): string => `${min(xs.map(f))} / ${Math.round(median(xs.map(f)))}`;
  console.log(`${name.padEnd(11)} ${col((x) => x.createMs).padStart(13)} | ${col((x) => x.createCpuMs).padEnd(13)} ${col((x) => x.secondMethodMs).padStart(13)} | ${col((x) => x.secondMethodCpuMs)}`);
}
console.log(`compiled graphs of every method: ${Math.round(graphMiB)} MiB on disk`);
