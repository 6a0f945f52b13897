/**
 * CLI start-up per call: the ways to run `gradcam-audit` from this repository, measured side by
 * side in one run (interleaved rounds, medians), on a command that loads every subcommand module
 * and exits (`status --help`).
 *
 *   npm run bench:cli -- [--rounds 7]
 *
 * Variants: the former `npm run cli` (tsx over src/, a second Node process), `bin/gradcam-audit.js`
 * with a fresh dist/ (what `npm ci` leaves), the same through `npm run cli`, through `npx`, and
 * `bin/gradcam-audit.js` with dist/ older than src/ (it falls back to tsx in-process).
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { utimesSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseIntInRange } from '../src/shared/config.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const roundsFlag = args.indexOf('--rounds');
const rounds = roundsFlag >= 0 ? parseIntInRange('--rounds', args[roundsFlag + 1] ?? '', 1, 100) : 7;
const ARGS = ['status', '--help'];
const BUILT = join(ROOT, 'dist', 'src', 'cli.js');

const variants: Array<{ name: string; cmd: string; args: string[]; stale?: boolean }> = [
  { name: 'tsx src/cli.ts (the former `npm run cli`)', cmd: join(ROOT, 'node_modules', '.bin', 'tsx'), args: ['src/cli.ts', ...ARGS] },
  { name: 'node bin/gradcam-audit.js (fresh dist/)', cmd: process.execPath, args: ['bin/gradcam-audit.js', ...ARGS] },
  { name: 'npm run cli (fresh dist/)', cmd: 'npm', args: ['run', '-s', 'cli', '--', ...ARGS] },
  { name: 'npx gradcam-audit (fresh dist/)', cmd: 'npx', args: ['gradcam-audit', ...ARGS] },
  { name: 'node bin/gradcam-audit.js (dist/ older than src/: tsx)', cmd: process.execPath, args: ['bin/gradcam-audit.js', ...ARGS], stale: true },
];

execFileSync('npm', ['run', '-s', 'build'], { cwd: ROOT, stdio: 'inherit' });
const builtAt = new Date();
const times = variants.map(() => [] as number[]);
const load = [loadavg()[0] as number];
for (let r = 0; r < rounds; r++) {
  variants.forEach((v, i) => {
    // Mark dist/ stale (older than src/) or fresh again without rebuilding.
    const t = v.stale ? new Date(0) : builtAt;
    utimesSync(BUILT, t, t);
    const t0 = performance.now();
    const res = spawnSync(v.cmd, v.args, { cwd: ROOT, encoding: 'utf8' });
    times[i]?.push(performance.now() - t0);
    if (res.status !== 0) throw new Error(`${v.name} exited ${res.status}: ${res.stderr}`);
  });
  load.push(loadavg()[0] as number);
}
utimesSync(BUILT, builtAt, builtAt);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const base = median(times[0] as number[]);
console.log(`CLI start-up, \`gradcam-audit ${ARGS.join(' ')}\`, ${rounds} interleaved rounds, Node ${process.version}, load avg ${Math.min(...load).toFixed(1)}-${Math.max(...load).toFixed(1)}`);
console.log('| how | median s/call | vs former |');
console.log('|---|---|---|');
variants.forEach((v, i) => {
  const m = median(times[i] as number[]);
  console.log(`| ${v.name} | ${(m / 1000).toFixed(2)} | ${(m / base).toFixed(2)}x |`);
});
