/**
 * A user's ONNX file: ONNX Runtime's own forward pass on the file as exported (a plain session,
 * nothing added) vs the ONNX engine's forward + Grad-CAM (`explain`, top-1, gradcam, prob score)
 * on the same file, and the TF.js engine for the record. Runs alternate per batch size, so a load
 * change on a shared machine hits every column alike; CPU time per image is reported beside wall
 * time because it stays meaningful when other processes compete for the cores.
 *
 *   npm run bench:engine -- --model resnet50.onnx [--batches 1,8] [--runs 3] [--threads N] [--no-tfjs]
 *
 * `--threads` sets ONNX Runtime's intra-op threads for both sessions (default: every core). One
 * thread keeps the two columns comparable on a machine that other jobs share.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import * as ort from 'onnxruntime-node';
import type { Engine, PreprocessedImage } from '../src/worker/engine/engine.js';
import { createOnnxEngine, sessionOptions } from '../src/worker/engine/onnx/engine.js';
import { resolveOnnxRuntimeOptions } from '../src/worker/engine/onnx/options.js';
import { createTfjsEngine } from '../src/worker/engine/tfjs/engine.js';
import type { ModelGraph } from '../src/worker/model/graph/ir.js';
import { mulberry32 } from '../src/worker/model/random-weights.js';
import { loadModel } from '../src/worker/model/source.js';

interface Cell {
  wall: number;
  cpu: number;
}

export interface OnnxFileRow {
  batch: number;
  ortForward: Cell;
  gradcam: Cell;
  tfjs: Cell | null;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function timed(batch: number, f: () => Promise<unknown>): Promise<Cell> {
  const s = performance.now();
  const c = process.cpuUsage();
  await f();
  const used = process.cpuUsage(c);
  return { wall: (performance.now() - s) / batch, cpu: (used.user + used.system) / 1000 / batch };
}

export async function benchOnnxFile(file: string, options: { batches: number[]; runs: number; threads?: number; tfjs: boolean; log: (line: string) => void }): Promise<OnnxFileRow[]> {
  const graph = (await loadModel(file)) as ModelGraph;
  if (!('nodes' in graph)) throw new Error(`${file} is not an ONNX model`);
  const threads = options.threads ?? availableParallelism();
  const runtime = resolveOnnxRuntimeOptions({ cacheDir: null, intraOpThreads: threads });
  const raw = await ort.InferenceSession.create(readFileSync(file), sessionOptions(['cpu'], runtime));
  const fixedBatch = raw.inputMetadata[0]?.isTensor ? raw.inputMetadata[0].shape[0] : undefined;
  const engine = await createOnnxEngine({ spec: graph, cache: null, runtime: { intraOpThreads: threads } });
  const tfjs: Engine | null = options.tfjs ? await createTfjsEngine({ spec: graph }) : null;
  const [h, w, c] = graph.inputShape;
  options.log(`model ${graph.name} (${file}), input ${h}x${w}x${c} ${graph.input.layout}, target ${engine.info.layer}; ONNX Runtime ${threads} threads${tfjs ? `; TF.js ${tfjs.info.backend}` : ''}`);

  const rows: OnnxFileRow[] = [];
  for (const batch of options.batches) {
    const rand = mulberry32(batch);
    const images: PreprocessedImage[] = Array.from({ length: batch }, () => ({ data: Float32Array.from({ length: h * w * c }, () => rand() * 2 - 1), height: h, width: w }));
    // The raw session takes the file's own layout; a file exported at batch 1 runs image by image.
    const feed = (imgs: PreprocessedImage[]): ort.Tensor => {
      const flat = new Float32Array(imgs.length * h * w * c);
      imgs.forEach((img, i) => {
        if (graph.input.layout === 'nhwc') flat.set(img.data, i * h * w * c);
        else for (let p = 0; p < h * w; p++) for (let k = 0; k < c; k++) flat[i * h * w * c + k * h * w + p] = img.data[p * c + k];
      });
      return new ort.Tensor('float32', flat, graph.input.layout === 'nhwc' ? [imgs.length, h, w, c] : [imgs.length, c, h, w]);
    };
    const groups = typeof fixedBatch === 'number' && fixedBatch > 0 ? images.map((img) => [img]) : [images];
    const tensors = groups.map(feed);
    const forward = async (): Promise<void> => {
      for (const t of tensors) await raw.run({ [raw.inputNames[0]]: t });
    };
    const explain = (e: Engine) => () => e.explain({ images, targets: { kind: 'top1' }, topK: 5, method: 'gradcam', score: 'prob' });
    await forward();
    await explain(engine)();
    if (tfjs) await explain(tfjs)();
    const f: Cell[] = [];
    const g: Cell[] = [];
    const t: Cell[] = [];
    for (let r = 0; r < options.runs; r++) {
      f.push(await timed(batch, forward));
      g.push(await timed(batch, explain(engine)));
      if (tfjs) t.push(await timed(batch, explain(tfjs)));
    }
    const cell = (cells: Cell[]): Cell => ({ wall: median(cells.map((x) => x.wall)), cpu: median(cells.map((x) => x.cpu)) });
    rows.push({ batch, ortForward: cell(f), gradcam: cell(g), tfjs: tfjs ? cell(t) : null });
  }
  await raw.release();
  await engine.dispose();
  await tfjs?.dispose();
  return rows;
}

export function formatOnnxFileTable(rows: OnnxFileRow[]): string {
  const fmt = (c: Cell): string => `${c.wall.toFixed(1)} (cpu ${c.cpu.toFixed(1)})`;
  const ratio = (a: Cell, b: Cell): string => `${(a.wall / b.wall).toFixed(3)} (cpu ${(a.cpu / b.cpu).toFixed(3)})`;
  const lines = [
    'ms/img as wall (cpu):',
    '',
    '| batch | ONNX Runtime forward (file as exported) | ONNX engine forward + Grad-CAM | ratio | TF.js engine forward + Grad-CAM |',
    '|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.batch} | ${fmt(r.ortForward)} | ${fmt(r.gradcam)} | ${ratio(r.gradcam, r.ortForward)} | ${r.tfjs ? fmt(r.tfjs) : '-'} |`),
  ];
  const worst = Math.max(...rows.map((r) => r.gradcam.cpu / r.ortForward.cpu));
  lines.push('', `worst Grad-CAM/forward CPU-time ratio ${worst.toFixed(3)} (goal <= 1.15): ${worst <= 1.15 ? 'met' : 'NOT met'}`);
  return lines.join('\n');
}
