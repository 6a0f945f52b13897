/**
 * Constant folding of shape arithmetic at import. `torch.onnx.export` with a dynamic batch writes
 * `x.view(x.size(0), -1)` as Shape → Gather → Unsqueeze → Concat → Reshape: the target shape is
 * computed at run time although only its batch entry varies. Shapes here are static except the
 * batch, so these chains fold to constants in which the batch is a marker (`BATCH`); a Reshape
 * target that starts with it becomes 0 ("the input's batch", onnx-import.ts), Resize sizes keep only
 * their spatial entries, and any other use of the batch (arithmetic on it, a shape read by another
 * op) is refused by name.
 */
import { ModelError } from '../../../shared/errors.js';
import type { ConstTensor, GraphNode } from './ir.js';
import { attrInt, attrInts } from './ir.js';
import type { Shape } from './ops.js';

/** ONNX TensorProto.DataType INT64. */
const ONNX_INT64 = 7;

/** Stands for the run-time batch size inside folded shape values. */
export const BATCH = -(2 ** 40);

/**
 * Ops that only ever compute shapes here: folded, never run (not in SUPPORTED_OPS). Slice is one
 * because `F.interpolate(x, size=...)` exports its Resize sizes as Shape → Slice → Concat.
 */
export const SHAPE_ONLY_OPS: readonly string[] = ['Shape', 'Gather', 'Cast', 'Slice'];

/** Integer ops folded when every input is an int64 constant. */
const FOLDABLE = new Set([...SHAPE_ONLY_OPS, 'Unsqueeze', 'Squeeze', 'Concat', 'Mul', 'Div', 'Add', 'Sub']);

const int64 = (data: number[], dims: number[] = [data.length]): ConstTensor => ({ dtype: 'int64', dims, data });

/** Whether a constant carries the run-time batch. */
export function dependsOnBatch(c: ConstTensor | undefined): boolean {
  return c?.dtype === 'int64' && c.data.includes(BATCH);
}

/**
 * The node's outputs as constants, or null when it does not fold (not shape arithmetic, or an
 * input that is not constant). `shapes` holds every value's static shape (batch 1 in axis 0).
 */
export function foldShapeNode(node: GraphNode, constants: Record<string, ConstTensor>, shapes: Map<string, Shape>): ConstTensor[] | null {
  if (!FOLDABLE.has(node.op)) return null;
  const where = `node "${node.name}" (${node.op})`;
  if (node.op === 'Shape') {
    const shape = shapes.get(node.inputs[0]);
    if (!shape) return null;
    // A constant's first axis is its own, not the batch.
    const full = node.inputs[0] in constants ? [...shape] : [BATCH, ...shape.slice(1)];
    const rank = full.length;
    const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + rank : v, 0), rank);
    return [int64(full.slice(clamp(attrInt(node, 'start', 0)), clamp(attrInt(node, 'end', rank))))];
  }
  const inputs = node.inputs.map((v) => (v === '' ? undefined : constants[v]));
  if (inputs[0] === undefined || inputs.some((c, i) => c === undefined && node.inputs[i] !== '') || inputs.some((c) => c !== undefined && c.dtype !== 'int64')) return null;
  const ints = inputs.map((c) => (c ? (c.data as number[]) : undefined));
  const x = ints[0]!;
  const dims = inputs[0].dims;
  switch (node.op) {
    case 'Cast': {
      // Only int64 shape arithmetic folds; a cast to another type (float scales of a dynamic
      // interpolate) would be mislabelled here.
      const to = attrInt(node, 'to', ONNX_INT64);
      if (to !== ONNX_INT64) throw new ModelError(`${where}: casts a shape to ONNX element type ${to}; only int64 shape arithmetic is folded`);
      return [int64([...x], dims)];
    }
    case 'Gather': {
      if (dims.length !== 1 || attrInt(node, 'axis', 0) !== 0) throw new ModelError(`${where}: only gathers from a 1-D shape are folded`);
      const idx = inputs[1]!;
      const picked = (idx.data as number[]).map((i) => x[i < 0 ? i + x.length : i]);
      return [int64(picked, idx.dims)];
    }
    case 'Unsqueeze':
    case 'Squeeze': {
      const axes = ints[1] ?? attrInts(node, 'axes') ?? [];
      const rank = node.op === 'Unsqueeze' ? dims.length + axes.length : dims.length;
      const norm = axes.map((a) => (a < 0 ? a + rank : a));
      const out = node.op === 'Unsqueeze' ? insertOnes(dims, norm) : dims.filter((d, i) => !(norm.length === 0 ? d === 1 : norm.includes(i)));
      return [int64([...x], out)];
    }
    case 'Concat': {
      if (inputs.some((c) => c!.dims.length !== 1)) throw new ModelError(`${where}: only concatenations of 1-D shapes are folded`);
      const data = ints.flatMap((v) => v!);
      return [int64(data)];
    }
    case 'Slice': {
      if (dims.length !== 1) throw new ModelError(`${where}: only slices of a 1-D shape are folded`);
      const [start, end] = [ints[1]?.[0] ?? attrInts(node, 'starts')?.[0] ?? 0, ints[2]?.[0] ?? attrInts(node, 'ends')?.[0] ?? x.length];
      const step = ints[4]?.[0] ?? 1;
      if (step !== 1) throw new ModelError(`${where}: only unit-step slices of a shape are folded`);
      const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + x.length : v, 0), x.length);
      return [int64(x.slice(clamp(start), clamp(end)))];
    }
    default: {
      // Mul, Div, Add, Sub on int64 constants, scalar broadcast.
      const y = ints[1]!;
      if (x.includes(BATCH) || y.includes(BATCH)) throw new ModelError(`${where} computes with the batch size at run time; only reshapes that keep the batch are supported (export with a fixed batch, or flatten with torch.flatten(x, 1))`);
      const n = Math.max(x.length, y.length);
      const at = (v: number[], i: number): number => (v.length === 1 ? v[0] : v[i]);
      const f = { Mul: (a: number, b: number) => a * b, Div: (a: number, b: number) => Math.trunc(a / b), Add: (a: number, b: number) => a + b, Sub: (a: number, b: number) => a - b }[node.op as 'Mul' | 'Div' | 'Add' | 'Sub'];
      return [int64(Array.from({ length: n }, (_, i) => f(at(x, i), at(y, i))), x.length >= y.length ? dims : inputs[1]!.dims)];
    }
  }
}

function insertOnes(dims: number[], axes: number[]): number[] {
  const out: number[] = [];
  let j = 0;
  for (let i = 0; i < dims.length + axes.length; i++) out.push(axes.includes(i) ? 1 : dims[j++]);
  return out;
}
