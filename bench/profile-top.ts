/**
 * Summarise V8 CPU profiles (`node --cpu-prof`) of a pipeline run: where the worker's CPU goes.
 *
 *   node --cpu-prof --cpu-prof-dir=DIR --import tsx bench/pipeline.ts --engine onnx ...
 *   npx tsx bench/profile-top.ts DIR/*.cpuprofile [--top 25] [--window processImageJob]
 *
 * Only samples between the first and the last one whose stack holds the `--window` function
 * (default `processImageJob`, the worker's job) count, and none under `timeEngine` (the bench's
 * engine-alone reference), so set-up and the reference stay out. Idle samples are counted apart.
 *
 * Two views: the top frames by self time, and the busy time by owner: each sample goes to the
 * first frame from the leaf up whose script belongs to a known owner (sharp, bullmq, ioredis, our
 * src/ modules, ...); native and Node-internal frames (JSON, Buffer, sockets, GC) go to the owner
 * that called them, so "S3" includes the socket writes its requests cause.
 */
import { readFileSync } from 'node:fs';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface Profile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

/** Owners by script path, first match wins; order: the more specific before the general. */
const OWNERS: ReadonlyArray<[string, RegExp]> = [
  ['sharp/libvips', /node_modules\/sharp\//],
  ['bullmq', /node_modules\/bullmq\//],
  ['ioredis', /node_modules\/(ioredis|@ioredis|redis-parser|cluster-key-slot|denque)\//],
  ['msgpackr', /node_modules\/msgpackr\//],
  ['aws-sdk/smithy', /node_modules\/(@aws-sdk|@smithy|@aws-crypto)\//],
  ['pino', /node_modules\/(pino|sonic-boom|thread-stream)/],
  ['onnxruntime', /node_modules\/onnxruntime/],
  ['other node_modules', /node_modules\//],
  ['src/shared/storage (S3)', /src\/shared\/storage\//],
  ['src/shared/queue (Redis)', /src\/shared\/queue\//],
  ['src/worker/image (decode/render JS)', /src\/worker\/image\//],
  ['src/worker/engine (CAM post, engine client)', /src\/worker\/engine\//],
  ['src/worker/pipeline', /src\/worker\/pipeline\//],
  ['src/worker/core', /src\/worker\/core\//],
  ['src/shared (other)', /src\/shared\//],
  ['src (other)', /\/src\//],
  ['bench', /\/bench\//],
];

function ownerOf(url: string): string | undefined {
  for (const [name, re] of OWNERS) if (re.test(url)) return name;
  return undefined;
}

const args = process.argv.slice(2);
let top = 25;
let windowFn = 'processImageJob';
const files: string[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--top') top = Number(args[++i]);
  else if (args[i] === '--window') windowFn = args[++i];
  else files.push(args[i]);
}

for (const file of files) {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stackOf = (id: number): ProfileNode[] => {
    const s: ProfileNode[] = [];
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) s.push(byId.get(cur)!);
    return s; // leaf first
  };
  const stacks = new Map<number, ProfileNode[]>();
  const stack = (id: number): ProfileNode[] => stacks.get(id) ?? (stacks.set(id, stackOf(id)), stacks.get(id)!);
  let first = -1;
  let last = -1;
  p.samples.forEach((id, i) => {
    if (stack(id).some((n) => n.callFrame.functionName === windowFn)) {
      if (first < 0) first = i;
      last = i;
    }
  });
  if (first < 0) {
    console.log(`${file}: no sample under ${windowFn}; whole profile`);
    first = 0;
    last = p.samples.length - 1;
  }
  const self = new Map<string, number>();
  const owners = new Map<string, number>();
  let idle = 0;
  let busy = 0;
  let wall = 0;
  for (let i = first; i <= last; i++) {
    const dt = p.timeDeltas[i] ?? 0;
    wall += dt;
    const s = stack(p.samples[i]);
    const leaf = s[0].callFrame;
    if (leaf.functionName === '(idle)') {
      idle += dt;
      continue;
    }
    if (s.some((n) => n.callFrame.functionName === 'timeEngine')) continue;
    busy += dt;
    const key = `${leaf.functionName || '(anonymous)'} ${leaf.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}${leaf.url ? `:${leaf.lineNumber + 1}` : ''}`;
    self.set(key, (self.get(key) ?? 0) + dt);
    let owner: string | undefined;
    for (const n of s) if ((owner = ownerOf(n.callFrame.url))) break;
    if (!owner) owner = leaf.functionName === '(garbage collector)' ? '(garbage collector)' : leaf.functionName === '(program)' ? '(program: native, unattributed)' : 'node internals (no owner above)';
    owners.set(owner, (owners.get(owner) ?? 0) + dt);
  }
  const ms = (us: number): string => (us / 1000).toFixed(0).padStart(7);
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  console.log(`\n${file}\nwindow ${ms(wall)} ms wall, ${ms(busy)} ms busy on this thread, ${ms(idle)} ms idle`);
  console.log('\nbusy time by owner (native and Node-internal frames go to the owner that called them):');
  for (const [k, v] of [...owners].sort((a, b) => b[1] - a[1])) console.log(`${ms(v)} ms ${pct(v)}  ${k}`);
  console.log(`\ntop ${top} frames by self time:`);
  for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${ms(v)} ms ${pct(v)}  ${k}`);
}
