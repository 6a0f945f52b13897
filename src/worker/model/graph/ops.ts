/**
 * The supported operator set: for each ONNX op, its output shape from its input shapes. This table
 * is the one list of what a model may contain; the importer refuses any other op by name, and the
 * README's op table is generated from the same names (`SUPPORTED_OPS`).
 *
 * Shapes here include the batch axis, inferred at batch 1 (the batch is dynamic everywhere).
 */
import { ModelError } from '../../../shared/errors.js';
import type { GraphNode, ModelGraph } from './ir.js';
import { attrFloat, attrInt, attrInts } from './ir.js';
import { resizeGeometry } from './resize-geometry.js';

export type Shape = number[];

type ShapeRule = (node: GraphNode, inputs: Shape[], graph: Pick<ModelGraph, 'constants'>) => Shape[];

const same: ShapeRule = (_n, [x]) => [x];

function broadcast(node: GraphNode, shapes: Shape[]): Shape {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: Shape = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const v = s[s.length - rank + i] ?? 1;
      if (v !== 1) {
        if (d !== 1 && d !== v) throw new ModelError(`node ${node.name} (${node.op}): shapes ${shapes.map((s) => `[${s.join(', ')}]`).join(' and ')} do not broadcast`);
        d = v;
      }
    }
    out.push(d);
  }
  return out;
}

const elementwise: ShapeRule = (node, shapes) => [broadcast(node, shapes.filter((s) => s !== undefined))];

export function normalizeAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

/** Spatial output length of a windowed op with explicit pads (ONNX's formula). */
export function windowOut(size: number, kernel: number, stride: number, padBegin: number, padEnd: number, dilation: number, ceil: boolean): number {
  const span = (kernel - 1) * dilation + 1;
  const raw = (size + padBegin + padEnd - span) / stride;
  let out = (ceil ? Math.ceil(raw) : Math.floor(raw)) + 1;
  // ONNX (like PyTorch) drops a last window that would start inside the end padding.
  if (ceil && (out - 1) * stride >= size + padBegin) out--;
  return out;
}

function need(node: GraphNode, shape: Shape | undefined, rank: number): Shape {
  if (!shape || shape.length !== rank) {
    throw new ModelError(`node ${node.name} (${node.op}) needs a ${rank}-D input but receives shape [${shape?.join(', ') ?? '?'}]`);
  }
  return shape;
}

const windowed =
  (channels: (node: GraphNode, inputs: Shape[]) => number): ShapeRule =>
  (node, inputs) => {
    const [n, c, h, w] = need(node, inputs[0], 4);
    const kernel = attrInts(node, 'kernel_shape') ?? inputs[1]?.slice(2) ?? [];
    const strides = attrInts(node, 'strides') ?? [1, 1];
    const pads = attrInts(node, 'pads') ?? [0, 0, 0, 0];
    const dil = attrInts(node, 'dilations') ?? [1, 1];
    const ceil = attrInt(node, 'ceil_mode', 0) === 1;
    const oh = windowOut(h, kernel[0], strides[0], pads[0], pads[2], dil[0], ceil);
    const ow = windowOut(w, kernel[1], strides[1], pads[1], pads[3], dil[1], ceil);
    if (oh < 1 || ow < 1) throw new ModelError(`node ${node.name} (${node.op}) gets a ${h}x${w} input, too small for its ${kernel.join('x')} window`);
    return [[n, channels(node, inputs) || c, oh, ow]];
  };

function reduceShape(x: Shape, axes: number[] | undefined, keep: boolean): Shape {
  const all = axes ?? x.map((_, i) => i);
  const set = new Set(all.map((a) => normalizeAxis(a, x.length)));
  return keep ? x.map((d, i) => (set.has(i) ? 1 : d)) : x.filter((_, i) => !set.has(i));
}

function reshapeTo(node: GraphNode, x: Shape, target: number[]): Shape {
  const total = x.reduce((a, b) => a * b, 1);
  const out = target.map((d, i) => (d === 0 ? x[i] : d));
  const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const resolved = out.map((d) => (d === -1 ? total / known : d));
  if (resolved.reduce((a, b) => a * b, 1) !== total || resolved.some((d) => !Number.isInteger(d))) {
    throw new ModelError(`node ${node.name} (Reshape) cannot reshape [${x.join(', ')}] to [${target.join(', ')}]`);
  }
  return resolved;
}

/** Output shapes per op. Keys are the supported ONNX op types. */
const SHAPE_RULES: Record<string, ShapeRule> = {
  Conv: windowed((node, inputs) => inputs[1]?.[0] ?? 0),
  MaxPool: windowed(() => 0),
  AveragePool: windowed(() => 0),
  GlobalAveragePool: (node, [x]) => [[...need(node, x, 4).slice(0, 2), 1, 1]],
  BatchNormalization: same,
  LayerNormalization: same,
  Relu: same,
  LeakyRelu: same,
  Clip: same,
  Sigmoid: same,
  HardSigmoid: same,
  HardSwish: same,
  Tanh: same,
  Erf: same,
  Gelu: same,
  Sqrt: same,
  Reciprocal: same,
  Identity: same,
  Dropout: same,
  Softmax: same,
  Add: elementwise,
  Sub: elementwise,
  Mul: elementwise,
  Div: elementwise,
  Pow: (node, [x, y]) => [broadcast(node, [x, y])],
  Concat: (node, inputs) => {
    const axis = normalizeAxis(attrInt(node, 'axis', 1), inputs[0].length);
    const out = [...inputs[0]];
    out[axis] = inputs.reduce((sum, s) => sum + s[axis], 0);
    return [out];
  },
  ReduceMean: (node, [x]) => [reduceShape(x, attrInts(node, 'axes'), attrInt(node, 'keepdims', 1) === 1)],
  Flatten: (node, [x]) => {
    const axis = normalizeAxis(attrInt(node, 'axis', 1), x.length);
    return [[x.slice(0, axis).reduce((a, b) => a * b, 1), x.slice(axis).reduce((a, b) => a * b, 1)]];
  },
  Reshape: (node, [x]) => [reshapeTo(node, x, attrInts(node, 'shape') ?? [])],
  Transpose: (node, [x]) => {
    const perm = attrInts(node, 'perm') ?? x.map((_, i) => x.length - 1 - i);
    return [perm.map((p) => x[p])];
  },
  Squeeze: (node, [x]) => {
    const axes = new Set((attrInts(node, 'axes') ?? x.flatMap((d, i) => (d === 1 ? [i] : []))).map((a) => normalizeAxis(a, x.length)));
    return [x.filter((_, i) => !axes.has(i))];
  },
  Unsqueeze: (node, [x]) => {
    const axes = attrInts(node, 'axes') ?? [];
    const rank = x.length + axes.length;
    const set = new Set(axes.map((a) => normalizeAxis(a, rank)));
    const out: Shape = [];
    let k = 0;
    for (let i = 0; i < rank; i++) out.push(set.has(i) ? 1 : x[k++]);
    return [out];
  },
  Gemm: (node, [a, b]) => {
    const m = attrInt(node, 'transA', 0) ? a[1] : a[0];
    const n = attrInt(node, 'transB', 0) ? b[0] : b[1];
    return [[m, n]];
  },
  MatMul: (node, [a, b]) => {
    if (b.length !== 2) throw new ModelError(`node ${node.name} (MatMul): only a 2-D right operand (a weight matrix) is supported, got [${b.join(', ')}]`);
    if (a[a.length - 1] !== b[0]) throw new ModelError(`node ${node.name} (MatMul): [${a.join(', ')}] x [${b.join(', ')}] do not match`);
    return [[...a.slice(0, -1), b[1]]];
  },
  Resize: (node, [x]) => {
    const [n, c] = need(node, x, 4);
    return [[n, c, ...resizeGeometry(node, x).size]];
  },
  Pad: (node, [x]) => {
    const pads = attrInts(node, 'pads') ?? [];
    return [x.map((d, i) => d + (pads[i] ?? 0) + (pads[i + x.length] ?? 0))];
  },
};

/** The ONNX op types a model may contain, sorted. */
export const SUPPORTED_OPS: readonly string[] = Object.keys(SHAPE_RULES).sort();

/** Output shapes of one node, or a `ModelError` naming the node when the op is unknown. */
export function nodeOutputShapes(node: GraphNode, inputs: Shape[], graph: Pick<ModelGraph, 'constants'>): Shape[] {
  const rule = SHAPE_RULES[node.op];
  if (!rule) throw unsupportedOp(node);
  const shapes = rule(node, inputs, graph);
  // Optional extra outputs (Dropout's mask) take the first output's shape.
  while (shapes.length < node.outputs.length) shapes.push(shapes[0]);
  return shapes;
}

export function unsupportedOp(node: Pick<GraphNode, 'name' | 'op'>): ModelError {
  return new ModelError(`node "${node.name}" has op type ${node.op}, which gradcam-audit cannot run; supported ops: ${SUPPORTED_OPS.join(', ')}`);
}

/** Attribute defaults used by more than one engine, so they are read the same way everywhere. */
export function clipBounds(node: GraphNode): [number, number] {
  return [attrFloat(node, 'min', -Infinity), attrFloat(node, 'max', Infinity)];
}
