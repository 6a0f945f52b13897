/**
 * Reverse-mode differentiation of a graph's head (target → logits) into ONNX nodes, in closed
 * form. Gradients carry an extra targets axis: a value of per-example shape `[...s]` has gradient
 * `[N, T, ...s]` (T targets per image), and forward values are broadcast against it with an
 * Unsqueeze at axis 1. Every rule here is the textbook derivative of the op at inference:
 *   Relu            g·[y > 0]                LeakyRelu  g·(x > 0 ? 1 : α)
 *   Clip (ReLU6)    g·[min < x < max]        HardSigmoid g·α·[0 < αx + β < 1]
 *   HardSwish       g·(x < −3 ? 0 : x ≤ 3 ? x/3 + ½ : 1)   (PyTorch's own backward, boundaries included)
 *   Sigmoid         g·y·(1 − y)              Softmax    y·(g − Σ g·y)
 *   Add/Sub/Mul/Div product and quotient rules, summed over broadcast axes
 *   Gemm/MatMul     g·Wᵀ (Gemm transB on the forward weight: no second copy)
 *   BatchNorm       g·γ/√(σ² + ε)            LayerNorm  (1/σ)(ĝ − mean ĝ − x̂·mean(ĝ·x̂)), ĝ = g·γ
 *   GAP/ReduceMean  broadcast / count        Flatten, Reshape, (Un)squeeze: reshape; Transpose: inverse perm
 *   MaxPool         non-overlapping windows only (square, or one window over the whole map): the
 *                   gradient goes to the window's first argmax (MaxPool's Indices), as in TF and
 *                   PyTorch, so ReLU-zero ties route identically.
 * `headProblem` is the matching admission check: a head it accepts always differentiates.
 */
import type { GraphNode, ModelGraph } from '../../model/graph/ir.js';
import { attrFloat, attrInt, attrInts } from '../../model/graph/ir.js';
import { clipBounds, normalizeAxis } from '../../model/graph/ops.js';
import type { GraphSplit } from '../../model/graph/walker.js';
import { graphFacts } from '../../model/graph/walker.js';
import type { GraphBuilder } from './graph-builder.js';
import { TensorDataType } from '../../model/graph/onnx-proto.js';

/** Why `node` (in the head) has no compiled backward, or null when it has one. */
export function headNodeProblem(node: GraphNode, graph: ModelGraph): string | null {
  const facts = graphFacts(graph);
  const constant = (v: string): boolean => v in graph.constants;
  const where = `node "${node.name}" (${node.op})`;
  switch (node.op) {
    case 'Identity':
    case 'Dropout':
    case 'Relu':
    case 'LeakyRelu':
    case 'Clip':
    case 'HardSigmoid':
    case 'HardSwish':
    case 'Sigmoid':
    case 'Softmax':
    case 'GlobalAveragePool':
    case 'ReduceMean':
    case 'Flatten':
    case 'Reshape':
    case 'Squeeze':
    case 'Unsqueeze':
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div':
      return null;
    case 'Transpose':
      return (attrInts(node, 'perm') ?? [])[0] === 0 ? null : `${where}: only transposes that keep the batch axis first have a compiled backward`;
    case 'BatchNormalization':
      return node.inputs.slice(1, 5).every(constant) ? null : `${where}: BatchNormalization with non-constant statistics`;
    case 'LayerNormalization':
      return node.inputs.slice(1).every((v) => v === '' || constant(v)) ? null : `${where}: LayerNormalization with non-constant scale or bias`;
    case 'Gemm':
      if (attrInt(node, 'transA', 0) !== 0) return `${where}: transA=1 has no compiled backward`;
      return constant(node.inputs[1]) ? null : `${where}: only Gemm with a constant weight matrix has a compiled backward`;
    case 'MatMul':
      return constant(node.inputs[1]) ? null : `${where}: only MatMul with a constant weight matrix has a compiled backward`;
    case 'AveragePool': {
      const x = facts.shapes.get(node.inputs[0])!;
      const k = attrInts(node, 'kernel_shape') ?? [];
      const pads = attrInts(node, 'pads') ?? [0, 0, 0, 0];
      return k[0] === x[2] && k[1] === x[3] && pads.every((p) => p === 0) ? null : `${where}: only a full-size AveragePool (global pooling) has a compiled backward`;
    }
    case 'MaxPool': {
      const k = attrInts(node, 'kernel_shape') ?? [];
      const s = attrInts(node, 'strides') ?? [1, 1];
      const pads = attrInts(node, 'pads') ?? [0, 0, 0, 0];
      const dil = attrInts(node, 'dilations') ?? [1, 1];
      const ok = k[0] === k[1] && s[0] === k[0] && s[1] === k[1] && pads.every((p) => p === 0) && dil.every((d) => d === 1) && attrInt(node, 'ceil_mode', 0) === 0;
      return ok || globalMaxPool(node, graph) ? null : `${where}: only square, non-overlapping unpadded max-pools (strides = pool size) and global ones have a compiled backward`;
    }
    default:
      return `${where} in the head (after the target layer) has no compiled backward`;
  }
}

function dependentValues(split: Pick<GraphSplit, 'target' | 'head'>): Set<string> {
  const set = new Set<string>([split.target]);
  for (const n of split.head) n.outputs.forEach((v) => set.add(v));
  return set;
}

export interface BackwardContext {
  g: GraphBuilder;
  graph: ModelGraph;
  split: GraphSplit;
  /** IR value → builder value (forward pass). */
  value: (name: string) => string;
  /** MaxPool node name → its Indices output (emitted with the forward pass). */
  poolIndices: Map<string, string>;
  /** Runtime [N] and [T] as 1-D int64 tensors. */
  n: string;
  t: string;
}

/** dS/d(target), and whether it is the same at every position of the map. */
export interface HeadGradient {
  /** `[N, T, C, h, w]`, or `[N, T, C, 1, 1]` when `spatiallyConstant`. */
  grad: string;
  /**
   * The target reaches the logits only through one global average pool, so its gradient is the
   * pooled gradient / (h·w) everywhere: it is returned unbroadcast (an Expand to [N,T,C,h,w] and
   * the reductions over it cost ~0.1 ms per image at 960x7x7, 1% of a MobileNetV3 forward).
   */
  spatiallyConstant: boolean;
}

/** dS/d(target) from dS/dlogits `[N, T, classes]`. */
export function emitHeadBackward(ctx: BackwardContext, gradLogits: string): HeadGradient {
  const { g, graph, split } = ctx;
  const facts = graphFacts(graph);
  const consumers = split.head.filter((n) => n.inputs.includes(split.target));
  const pooledOnly = consumers.length === 1 && consumers[0].inputs.filter((v) => v === split.target).length === 1 && globalSpatialMean(consumers[0], facts.shapes.get(split.target)!);
  const dependent = dependentValues(split);
  const grads = new Map<string, string>([[split.output.logits, gradLogits]]);
  const rest = (v: string): number[] => facts.shapes.get(v)!.slice(1);
  const ntShape = (dims: number[]): string => g.op('Concat', [ctx.n, ctx.t, g.int64(dims)], { name: 'nt_shape', attrs: { axis: { int: 0 } } });
  const unsqueezed = new Map<string, string>();
  /** A forward value broadcastable against gradients: constants as they are, activations with a T axis. */
  const fwd = (v: string): string => {
    if (v in graph.constants) return ctx.value(v);
    let u = unsqueezed.get(v);
    if (!u) {
      u = g.op('Unsqueeze', [ctx.value(v), g.int64([1])], { name: 'fwd_nt' });
      unsqueezed.set(v, u);
    }
    return u;
  };
  const accumulate = (v: string, grad: string): void => {
    if (!dependent.has(v)) return;
    const prev = grads.get(v);
    grads.set(v, prev ? g.op('Add', [prev, grad], { name: 'grad_sum' }) : grad);
  };
  /** Sum a gradient of an output-shaped value down to the input's (broadcast) shape. */
  const unbroadcast = (grad: string, input: string, output: string): string => {
    const inShape = facts.shapes.get(input)!;
    const outShape = facts.shapes.get(output)!;
    const offset = outShape.length - inShape.length;
    const axes: number[] = [];
    for (let i = 1; i < outShape.length; i++) if ((inShape[i - offset] ?? 1) === 1 && outShape[i] !== 1) axes.push(i + 1);
    let out = grad;
    if (axes.length > 0) out = g.op('ReduceSum', [out, g.int64(axes)], { name: 'grad_unbroadcast', attrs: { keepdims: { int: 1 } } });
    return axes.length > 0 || offset !== 0 ? g.op('Reshape', [out, ntShape(rest(input))], { name: 'grad_unbroadcast_shape' }) : out;
  };
  const f = (values: number[], dims: number[] = []): string => g.float(values, dims);

  for (const node of [...split.head].reverse()) {
    const gy = grads.get(node.outputs[0]);
    if (!gy) continue;
    const [x, second] = node.inputs;
    const y = node.outputs[0];
    const name = node.name.replace(/[^A-Za-z0-9_]/g, '_');
    switch (node.op) {
      case 'Identity':
      case 'Dropout':
        accumulate(x, gy);
        break;
      case 'Relu': {
        const mask = g.op('Cast', [g.op('Greater', [fwd(y), f([0])], { name: `${name}_pos` })], { name: `${name}_mask`, attrs: { to: { int: TensorDataType.FLOAT } } });
        accumulate(x, g.op('Mul', [gy, mask], { name: `${name}_grad` }));
        break;
      }
      case 'LeakyRelu': {
        const slope = g.op('Where', [g.op('Greater', [fwd(x), f([0])], { name: `${name}_pos` }), f([1]), f([attrFloat(node, 'alpha', 0.01)])], { name: `${name}_slope` });
        accumulate(x, g.op('Mul', [gy, slope], { name: `${name}_grad` }));
        break;
      }
      case 'Clip': {
        const [lo, hi] = clipBounds(node);
        const xv = fwd(x);
        let inside = g.op('Cast', [g.op('Less', [xv, f([hi])], { name: `${name}_below` })], { name: `${name}_below_f`, attrs: { to: { int: TensorDataType.FLOAT } } });
        if (Number.isFinite(lo)) {
          const above = g.op('Cast', [g.op('Greater', [xv, f([lo])], { name: `${name}_above` })], { name: `${name}_above_f`, attrs: { to: { int: TensorDataType.FLOAT } } });
          inside = g.op('Mul', [inside, above], { name: `${name}_inside` });
        }
        accumulate(x, g.op('Mul', [gy, inside], { name: `${name}_grad` }));
        break;
      }
      case 'HardSigmoid': {
        const alpha = attrFloat(node, 'alpha', 0.2);
        const z = g.op('Add', [g.op('Mul', [fwd(x), f([alpha])], { name: `${name}_ax` }), f([attrFloat(node, 'beta', 0.5)])], { name: `${name}_z` });
        const inside = g.op('And', [g.op('Greater', [z, f([0])], { name: `${name}_gt0` }), g.op('Less', [z, f([1])], { name: `${name}_lt1` })], { name: `${name}_in` });
        const slope = g.op('Where', [inside, f([alpha]), f([0])], { name: `${name}_slope` });
        accumulate(x, g.op('Mul', [gy, slope], { name: `${name}_grad` }));
        break;
      }
      case 'HardSwish': {
        const xv = fwd(x);
        const middle = g.op('Add', [g.op('Mul', [xv, f([1 / 3])], { name: `${name}_x3` }), f([0.5])], { name: `${name}_mid` });
        const upper = g.op('Where', [g.op('Greater', [xv, f([3])], { name: `${name}_gt3` }), f([1]), middle], { name: `${name}_upper` });
        const slope = g.op('Where', [g.op('Less', [xv, f([-3])], { name: `${name}_lt3` }), f([0]), upper], { name: `${name}_slope` });
        accumulate(x, g.op('Mul', [gy, slope], { name: `${name}_grad` }));
        break;
      }
      case 'Sigmoid': {
        const s = fwd(y);
        const ds = g.op('Mul', [s, g.op('Sub', [f([1]), s], { name: `${name}_1ms` })], { name: `${name}_ds` });
        accumulate(x, g.op('Mul', [gy, ds], { name: `${name}_grad` }));
        break;
      }
      case 'Softmax': {
        const axis = normalizeAxis(attrInt(node, 'axis', -1), facts.shapes.get(x)!.length) + 1;
        const s = fwd(y);
        const dot = g.op('ReduceSum', [g.op('Mul', [gy, s], { name: `${name}_gs` }), g.int64([axis])], { name: `${name}_dot`, attrs: { keepdims: { int: 1 } } });
        accumulate(x, g.op('Mul', [s, g.op('Sub', [gy, dot], { name: `${name}_gmd` })], { name: `${name}_grad` }));
        break;
      }
      case 'Add':
      case 'Sub':
        if (dependent.has(x)) accumulate(x, unbroadcast(gy, x, y));
        if (dependent.has(second)) accumulate(second, unbroadcast(node.op === 'Sub' ? g.op('Neg', [gy], { name: `${name}_neg` }) : gy, second, y));
        break;
      case 'Mul':
        if (dependent.has(x)) accumulate(x, unbroadcast(g.op('Mul', [gy, fwd(second)], { name: `${name}_ga` }), x, y));
        if (dependent.has(second)) accumulate(second, unbroadcast(g.op('Mul', [gy, fwd(x)], { name: `${name}_gb` }), second, y));
        break;
      case 'Div':
        if (dependent.has(x)) accumulate(x, unbroadcast(g.op('Div', [gy, fwd(second)], { name: `${name}_ga` }), x, y));
        if (dependent.has(second)) {
          const q = g.op('Div', [fwd(y), fwd(second)], { name: `${name}_q` });
          accumulate(second, unbroadcast(g.op('Neg', [g.op('Mul', [gy, q], { name: `${name}_gq` })], { name: `${name}_gb` }), second, y));
        }
        break;
      case 'GlobalAveragePool':
      case 'AveragePool': {
        const [c, h, w] = rest(x);
        // Scale before the broadcast (h·w times fewer values), and skip the broadcast for the target.
        const scaled = g.op('Mul', [gy, f([1 / (h * w)])], { name: `${name}_grad_scaled` });
        accumulate(x, pooledOnly && x === split.target ? scaled : g.op('Expand', [scaled, ntShape([c, h, w])], { name: `${name}_grad` }));
        break;
      }
      case 'ReduceMean': {
        const xs = facts.shapes.get(x)!;
        const axes = (attrInts(node, 'axes') ?? xs.map((_, i) => i)).map((a) => normalizeAxis(a, xs.length));
        const count = axes.reduce((p, a) => p * xs[a], 1);
        const kept = xs.slice(1).map((d, i) => (axes.includes(i + 1) ? 1 : d));
        const col = attrInt(node, 'keepdims', 1) === 1 ? gy : g.op('Reshape', [gy, ntShape(kept)], { name: `${name}_keep` });
        const scaled = g.op('Mul', [col, f([1 / count])], { name: `${name}_grad_scaled` });
        accumulate(x, pooledOnly && x === split.target ? scaled : g.op('Expand', [scaled, ntShape(rest(x))], { name: `${name}_grad` }));
        break;
      }
      case 'Flatten':
      case 'Reshape':
      case 'Squeeze':
      case 'Unsqueeze':
        accumulate(x, g.op('Reshape', [gy, ntShape(rest(x))], { name: `${name}_grad` }));
        break;
      case 'Transpose': {
        const perm = attrInts(node, 'perm')!;
        const inverse = new Array<number>(perm.length);
        perm.forEach((p, i) => (inverse[p] = i));
        const gradPerm = [0, 1, ...inverse.slice(1).map((a) => a + 1)];
        accumulate(x, g.op('Transpose', [gy], { name: `${name}_grad`, attrs: { perm: { ints: gradPerm } } }));
        break;
      }
      case 'Gemm':
      case 'MatMul': {
        const w = graph.constants[second]!;
        const xs = rest(x);
        if (node.op === 'MatMul' && xs.length > 1) {
          const [fin, fout] = w.dims;
          const data = w.data as Float32Array;
          const transposed = new Float32Array(data.length);
          for (let i = 0; i < fin; i++) for (let o = 0; o < fout; o++) transposed[o * fin + i] = data[i * fout + o];
          const wt = g.floatInitializer(`${name}_weight_t`, transposed, [fout, fin]);
          accumulate(x, g.op('MatMul', [gy, wt], { name: `${name}_grad` }));
          break;
        }
        const outFeatures = rest(y)[0];
        const rows = g.op('Reshape', [gy, g.int64([-1, outFeatures])], { name: `${name}_grad_rows` });
        const transB = node.op === 'Gemm' && attrInt(node, 'transB', 0) === 1;
        const alpha = node.op === 'Gemm' ? attrFloat(node, 'alpha', 1) : 1;
        // g·Wᵀ: Gemm with transB on the forward (in, out) weight, or MatMul on a stored (out, in) one.
        const back = transB
          ? g.op('MatMul', [rows, ctx.value(second)], { name: `${name}_grad_mm` })
          : g.op('Gemm', [rows, ctx.value(second)], { name: `${name}_grad_mm`, attrs: { transB: { int: 1 }, alpha: { float: alpha } } });
        const scaled = transB && alpha !== 1 ? g.op('Mul', [back, f([alpha])], { name: `${name}_grad_alpha` }) : back;
        accumulate(x, g.op('Reshape', [scaled, ntShape(xs)], { name: `${name}_grad` }));
        break;
      }
      case 'BatchNormalization': {
        const xs = rest(x);
        const scale = graph.constants[node.inputs[1]]!.data as Float32Array;
        const variance = graph.constants[node.inputs[4]]!.data as Float32Array;
        const eps = attrFloat(node, 'epsilon', 1e-5);
        const factor = Array.from(scale, (s, c) => s / Math.sqrt(variance[c] + eps));
        accumulate(x, g.op('Mul', [gy, f(factor, [xs[0], ...xs.slice(1).map(() => 1)])], { name: `${name}_grad` }));
        break;
      }
      case 'LayerNormalization': {
        const xs = facts.shapes.get(x)!;
        const axis = normalizeAxis(attrInt(node, 'axis', -1), xs.length);
        const axes = g.int64(xs.map((_, i) => i).filter((i) => i >= axis).map((i) => i + 1));
        // Means as ReduceSum·(1/count): opset 17's ReduceSum takes axes as an input, like `axes` here.
        const count = xs.slice(axis).reduce((a, b) => a * b, 1);
        const meanOf = (v: string, what: string): string => g.op('Mul', [g.op('ReduceSum', [v, axes], { name: `${name}_${what}_sum`, attrs: { keepdims: { int: 1 } } }), f([1 / count])], { name: `${name}_${what}` });
        const xv = fwd(x);
        const centred = g.op('Sub', [xv, meanOf(xv, 'mu')], { name: `${name}_xc` });
        const variance = meanOf(g.op('Mul', [centred, centred], { name: `${name}_xc2` }), 'var');
        const rstd = g.op('Reciprocal', [g.op('Sqrt', [g.op('Add', [variance, f([attrFloat(node, 'epsilon', 1e-5)])], { name: `${name}_ve` })], { name: `${name}_std` })], { name: `${name}_rstd` });
        const xhat = g.op('Mul', [centred, rstd], { name: `${name}_xhat` });
        const ghat = g.op('Mul', [gy, ctx.value(node.inputs[1])], { name: `${name}_ghat` });
        const inner = g.op('Sub', [g.op('Sub', [ghat, meanOf(ghat, 'gmean')], { name: `${name}_gc` }), g.op('Mul', [xhat, meanOf(g.op('Mul', [ghat, xhat], { name: `${name}_gx` }), 'gxmean')], { name: `${name}_xgx` })], { name: `${name}_inner` });
        accumulate(x, g.op('Mul', [inner, rstd], { name: `${name}_grad` }));
        break;
      }
      case 'MaxPool':
        accumulate(x, globalMaxPool(node, graph) ? emitGlobalPoolBackward(ctx, node, gy) : emitPoolBackward(ctx, node, gy, ntShape));
        break;
      default:
        throw new Error(`no backward rule for ${node.op} (node ${node.name}); headNodeProblem should have refused it`);
    }
  }
  const grad = grads.get(split.target);
  if (!grad) throw new Error(`the logits do not depend on ${split.target}`);
  return { grad, spatiallyConstant: pooledOnly };
}

/** A global average pool over the last two axes of a 4-D value, keeping them as 1x1 (GlobalAveragePool, full-size AveragePool). */
function globalSpatialMean(node: GraphNode, shape: number[]): boolean {
  if (shape.length !== 4) return false;
  if (node.op === 'GlobalAveragePool') return true;
  // AveragePool in the head is full-size (headNodeProblem admits no other).
  if (node.op === 'AveragePool') return true;
  const axes = node.op === 'ReduceMean' ? attrInts(node, 'axes')?.map((a) => normalizeAxis(a, 4)) : undefined;
  return axes !== undefined && axes.length === 2 && axes.includes(2) && axes.includes(3);
}

/** A max-pool whose one window is the whole input (Keras' GlobalMaxPooling2D). */
function globalMaxPool(node: GraphNode, graph: ModelGraph): boolean {
  const [, , h, w] = graphFacts(graph).shapes.get(node.inputs[0])!;
  const k = attrInts(node, 'kernel_shape') ?? [];
  const pads = attrInts(node, 'pads') ?? [0, 0, 0, 0];
  const dil = attrInts(node, 'dilations') ?? [1, 1];
  return k[0] === h && k[1] === w && pads.every((p) => p === 0) && dil.every((d) => d === 1);
}

/**
 * Global max-pool backward: the gradient goes to each channel's first argmax (MaxPool's flat
 * Indices, taken within the channel's h·w map), a one-hot over the map times the pooled gradient.
 */
function emitGlobalPoolBackward(ctx: BackwardContext, node: GraphNode, grad: string): string {
  const { g } = ctx;
  const [, , h, w] = graphFacts(ctx.graph).shapes.get(node.inputs[0])!;
  const within = g.op('Mod', [ctx.poolIndices.get(node.name)!, g.int64([h * w], [])], { name: 'gpool_idx_within' });
  // [N,C,1,1] == [h,w] → one-hot [N,C,h,w]; [N,T,C,1,1] · [N,1,C,h,w] → [N,T,C,h,w]
  const positions = g.int64(Array.from({ length: h * w }, (_, i) => i), [h, w]);
  const onehot = g.op('Cast', [g.op('Equal', [within, positions], { name: 'gpool_eq' })], { name: 'gpool_onehot', attrs: { to: { int: TensorDataType.FLOAT } } });
  return g.op('Mul', [grad, g.op('Unsqueeze', [onehot, g.int64([1])], { name: 'gpool_onehot5' })], { name: 'gpool_grad' });
}

/**
 * Max-pool backward for non-overlapping s×s windows, without materialising broadcasts (ORT's
 * Expand is slow): from MaxPool's flat `Indices` derive each window's argmax offset
 * k = dy·s + dx, multiply the pooled gradient by a one-hot over the s² offsets, and let
 * DepthToSpace (CRD) put offset k of window (y, x) at (y·s + dy, x·s + dx). Rows and columns a
 * 'valid' pool dropped get zero gradient (Pad).
 */
function emitPoolBackward(ctx: BackwardContext, node: GraphNode, grad: string, ntShape: (dims: number[]) => string): string {
  const { g } = ctx;
  const facts = graphFacts(ctx.graph);
  const [, c, h, w] = facts.shapes.get(node.inputs[0])!;
  const [, , ph, pw] = facts.shapes.get(node.outputs[0])!;
  const s = (attrInts(node, 'kernel_shape') ?? [2])[0];
  const indices = ctx.poolIndices.get(node.name)!;
  const uh = ph * s;
  const uw = pw * s;

  // Indices are flat over the NCHW input: row = (i mod h·w) div w, column = i mod w.
  const within = g.op('Mod', [indices, g.int64([h * w], [])], { name: 'pool_idx_within' });
  const row = g.op('Div', [within, g.int64([w], [])], { name: 'pool_idx_row' });
  const col = g.op('Mod', [indices, g.int64([w], [])], { name: 'pool_idx_col' });
  const rowStart = g.int64(Array.from({ length: ph }, (_, y) => y * s), [ph, 1]);
  const colStart = g.int64(Array.from({ length: pw }, (_, x) => x * s), [1, pw]);
  const dy = g.op('Sub', [row, rowStart], { name: 'pool_dy' });
  const dx = g.op('Sub', [col, colStart], { name: 'pool_dx' });
  const offset = g.op('Add', [g.op('Mul', [dy, g.int64([s], [])], { name: 'pool_dy_s' }), dx], { name: 'pool_offset' });
  // [N,C,1,ph,pw] == [s²,1,1] → one-hot [N,C,s²,ph,pw]
  const offset5 = g.op('Unsqueeze', [offset, g.int64([2])], { name: 'pool_offset5' });
  const offsets = g.int64(Array.from({ length: s * s }, (_, k) => k), [s * s, 1, 1]);
  const onehot = g.op('Cast', [g.op('Equal', [offset5, offsets], { name: 'pool_offset_eq' })], { name: 'pool_onehot', attrs: { to: { int: TensorDataType.FLOAT } } });

  // [N,T,C,1,ph,pw] · [N,1,C,s²,ph,pw] → [N·T, C·s², ph, pw] → DepthToSpace → [N·T, C, uh, uw]
  const g6 = g.op('Unsqueeze', [grad, g.int64([3])], { name: 'pool_grad6' });
  const mask6 = g.op('Unsqueeze', [onehot, g.int64([1])], { name: 'pool_onehot6' });
  const spread = g.op('Mul', [g6, mask6], { name: 'pool_grad_spread' });
  const depth = g.op('Reshape', [spread, g.int64([-1, c * s * s, ph, pw])], { name: 'pool_grad_depth' });
  const placed = g.op('DepthToSpace', [depth], { name: 'pool_grad_place', attrs: { blocksize: { int: s }, mode: { string: 'CRD' } } });
  let out = g.op('Reshape', [placed, ntShape([c, uh, uw])], { name: 'pool_grad' });
  if (uh !== h || uw !== w) out = g.op('Pad', [out, g.int64([0, 0, 0, 0, 0, 0, 0, 0, h - uh, w - uw])], { name: 'pool_grad_pad' });
  return out;
}
