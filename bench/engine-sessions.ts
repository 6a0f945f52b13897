/**
 * Memory of the ONNX engine's method sessions (onnx/session-pool.ts): resident memory of an engine
 * serving every gradient method once each, one fresh process per `--onnx-max-sessions` cap (a
 * process's resident memory only says what it holds, not what another one freed), side by side.
 * The model: VGG-shaped, 64x64, three conv blocks and a 2048-unit dense layer (34M weights,
 * 136 MB in float32), so the difference is the weights copies, not the runtime.
 *
 * `npx tsx bench/engine-sessions.ts [--caps 5,2,1]`
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CAM_METHODS, needsGradient } from '../src/shared/explain-options.js';
import { createOnnxEngine } from '../src/worker/engine/onnx/engine.js';
import { diskGraphCache } from '../src/worker/engine/onnx/graph-cache.js';
import { vggShapedSpec } from '../src/worker/model/vgg-shaped.js';

const spec = () => vggShapedSpec({ seed: 3, inputShape: [64, 64, 3], blocks: [{ filters: 64, convs: 1 }, { filters: 128, convs: 1 }, { filters: 256, convs: 1 }], denseUnits: [2048] });
const mib = (): number => Math.round(process.memoryUsage().rss / 2 ** 20);

interface Row {
  cap: number;
  rssFirstMiB: number;
  rssAllMiB: number;
  opened: number;
  evicted: number;
  open: number;
}

async function child(cap: number, cacheDir: string): Promise<Row> {
  const engine = await createOnnxEngine({ spec: spec(), cache: diskGraphCache(cacheDir), runtime: { intraOpThreads: 1, maxSessions: cap, checkPlacement: false } });
  const image = { data: new Float32Array(64 * 64 * 3).fill(1), height: 64, width: 64 };
  const rssFirstMiB = mib();
  for (const method of CAM_METHODS.filter(needsGradient)) await engine.explain({ images: [image], targets: { kind: 'top1' }, topK: 1, method, score: 'prob' });
  const stats = engine.sessionStats();
  const row = { cap, rssFirstMiB, rssAllMiB: mib(), opened: stats.opened, evicted: stats.evicted, open: stats.open.length };
  await engine.dispose();
  return row;
}

const args = process.argv.slice(2);
const at = (flag: string): string | undefined => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
if (at('--child') !== undefined) {
  console.log(JSON.stringify(await child(Number(at('--child')), at('--cache') as string)));
} else {
  const caps = (at('--caps') ?? '5,2,1').split(',').map(Number);
  const cacheDir = mkdtempSync(join(tmpdir(), 'gca-bench-sessions-'));
  try {
    // Compile every graph once first, so no run pays a compile in its measurement.
    execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', String(Math.max(...caps)), '--cache', cacheDir]);
    const rows = caps.map((cap) => JSON.parse(execFileSync(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--child', String(cap), '--cache', cacheDir], { encoding: 'utf8' }).trim().split('\n').pop() as string) as Row);
    const base = rows.find((r) => r.cap === 1) ?? rows[rows.length - 1];
    console.log('cap  RSS first session  RSS after 5 methods  vs cap 1  per extra open session  opened  evicted  open');
    for (const r of rows) {
      const perSession = r.open > 1 ? `${Math.round((r.rssAllMiB - r.rssFirstMiB) / (r.open - 1))} MiB` : '-';
      console.log(`${String(r.cap).padEnd(4)} ${`${r.rssFirstMiB} MiB`.padEnd(18)} ${`${r.rssAllMiB} MiB`.padEnd(20)} ${(r.rssAllMiB / base.rssAllMiB).toFixed(2).padEnd(9)} ${perSession.padEnd(23)} ${String(r.opened).padEnd(7)} ${String(r.evicted).padEnd(8)} ${r.open}`);
    }
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
}
