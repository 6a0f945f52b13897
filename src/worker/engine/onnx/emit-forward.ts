/**
 * Write graph-IR nodes back as ONNX nodes of the compiler's opset. The IR keeps axes, pads, clip
 * bounds, reshape targets and resize scales or sizes as attributes whatever the source opset;
 * opset 17 wants several of them as inputs, and has no Gelu, so those are re-expressed here, and
 * only here.
 */
import type { ConstTensor, GraphNode } from '../../model/graph/ir.js';
import { attrFloat, attrInts, attrString } from '../../model/graph/ir.js';
import type { Attr, GraphBuilder } from './graph-builder.js';
import { TensorDataType } from '../../model/graph/onnx-proto.js';

/** Element type a node computes in: the model's float32, or float16 for a half-precision trunk. */
export type Precision = 'fp32' | 'fp16';

export interface ForwardEmitter {
  /**
   * Builder value of an IR value in float32 (constants become initializers on first use; a value
   * computed in float16 is cast back once, on first use). The head, its backward and the CAM
   * formulas read values through this.
   */
  value(name: string): string;
  /**
   * Emit one node; returns its builder outputs. `indices` asks MaxPool for its Indices; `precision`
   * is the element type the node computes in (default fp32): its float operands are cast or
   * converted to it, so a float16 trunk and a float32 head meet with one Cast at the boundary.
   */
  emit(node: GraphNode, options?: { indices?: boolean; precision?: Precision }): string[];
  /** Bind an IR value to an existing builder value (the graph input) of the given precision. */
  bind(name: string, value: string, precision?: Precision): void;
}

export function forwardEmitter(g: GraphBuilder, constants: Record<string, ConstTensor>): ForwardEmitter {
  // One map per element type: an IR value may exist in both (after a boundary Cast), never twice in one.
  const values: Record<Precision, Map<string, string>> = { fp32: new Map(), fp16: new Map() };
  const other = (p: Precision): Precision => (p === 'fp32' ? 'fp16' : 'fp32');
  const valueIn = (name: string, precision: Precision): string => {
    if (name === '') return '';
    const known = values[precision].get(name);
    if (known) return known;
    const c = constants[name];
    let v: string;
    if (c) {
      // int64 constants (shapes, axes) are the same in both precisions.
      if (c.dtype !== 'float32') v = g.int64(c.data, c.dims);
      else v = precision === 'fp16' ? g.halfInitializer(`${safe(name)}_f16`, c.data, c.dims) : g.floatInitializer(safe(name), c.data, c.dims);
    } else {
      const computed = values[other(precision)].get(name);
      if (!computed) throw new Error(`ONNX compiler: value ${name} is used before it is computed`);
      v = g.op('Cast', [computed], { name: `${safe(name)}_to_${precision}`, attrs: { to: { int: precision === 'fp16' ? TensorDataType.FLOAT16 : TensorDataType.FLOAT } } });
    }
    values[precision].set(name, v);
    return v;
  };
  const value = (name: string): string => valueIn(name, 'fp32');
  const plainAttrs = (node: GraphNode, drop: string[] = []): Record<string, Attr> =>
    Object.fromEntries(Object.entries(node.attrs).filter(([k]) => !drop.includes(k)));

  const emit = (node: GraphNode, options: { indices?: boolean; precision?: Precision } = {}): string[] => {
    const precision = options.precision ?? 'fp32';
    const inputs = node.inputs.map((v) => valueIn(v, precision));
    // Float operands the emitter adds itself (clip bounds, pad value, GELU's constants) follow the node.
    const float = (vals: number[], dims?: number[]): string => (precision === 'fp16' ? g.half(vals, dims) : g.float(vals, dims));
    const stem = safe(node.name);
    const one = (op: string, ins: string[], attrs: Record<string, Attr> = {}): string[] => [g.op(op, ins, { name: stem, attrs })];
    let outs: string[];
    switch (node.op) {
      case 'Squeeze':
      case 'Unsqueeze': {
        const axes = attrInts(node, 'axes');
        outs = one(node.op, axes ? [inputs[0], g.int64(axes)] : [inputs[0]]);
        break;
      }
      case 'Reshape':
        outs = one('Reshape', [inputs[0], g.int64(attrInts(node, 'shape')!)], plainAttrs(node, ['shape']));
        break;
      case 'Clip': {
        const min = attrFloat(node, 'min', -Infinity);
        const max = attrFloat(node, 'max', Infinity);
        outs = one('Clip', [inputs[0], Number.isFinite(min) ? float([min], []) : '', Number.isFinite(max) ? float([max], []) : '']);
        break;
      }
      case 'Pad':
        outs = one('Pad', [inputs[0], g.int64(attrInts(node, 'pads')!), float([attrFloat(node, 'value', 0)], [])], { mode: { string: attrString(node, 'mode', 'constant') } });
        break;
      case 'Dropout':
        outs = one('Identity', [inputs[0]]);
        break;
      case 'Resize': {
        const attrs = plainAttrs(node, ['scales', 'sizes']);
        const sizes = attrInts(node, 'sizes');
        if (!sizes) {
          outs = one('Resize', [inputs[0], '', g.float((node.attrs.scales as { floats: number[] }).floats)], attrs);
          break;
        }
        // Sizes, not scales d / x: ONNX Runtime then gives exactly these sizes and maps coordinates
        // by f32(d / x), as on the source file. Opset 17 wants all four sizes, so the run-time
        // batch and the channels come from the input's shape.
        const batchChannels = g.op('Shape', [inputs[0]], { name: `${stem}_nc`, attrs: { start: { int: 0 }, end: { int: 2 } } });
        const full = g.op('Concat', [batchChannels, g.int64(sizes)], { name: `${stem}_sizes`, attrs: { axis: { int: 0 } } });
        outs = one('Resize', [inputs[0], '', '', full], attrs);
        break;
      }
      case 'Gelu': {
        // 0.5·x·(1 + erf(x/√2)), or the tanh approximation when the node asks for it.
        const x = inputs[0];
        const inner =
          attrString(node, 'approximate', 'none') === 'tanh'
            ? g.op('Tanh', [g.op('Mul', [g.op('Add', [x, g.op('Mul', [g.op('Mul', [g.op('Mul', [x, x], { name: `${stem}_x2` }), x], { name: `${stem}_x3` }), float([0.044715], [])], { name: `${stem}_cx3` })], { name: `${stem}_poly` }), float([Math.sqrt(2 / Math.PI)], [])], { name: `${stem}_scaled` })], { name: `${stem}_tanh` })
            : g.op('Erf', [g.op('Mul', [x, float([Math.SQRT1_2], [])], { name: `${stem}_scaled` })], { name: `${stem}_erf` });
        const half = g.op('Mul', [x, float([0.5], [])], { name: `${stem}_half` });
        outs = [g.op('Mul', [half, g.op('Add', [inner, float([1], [])], { name: `${stem}_1p` })], { name: stem })];
        break;
      }
      case 'MaxPool':
        outs = g.opMulti('MaxPool', [inputs[0]], { name: stem, outputs: options.indices ? 2 : 1, attrs: plainAttrs(node) });
        break;
      default:
        outs = g.opMulti(node.op, inputs, { name: stem, outputs: node.op === 'BatchNormalization' ? 1 : node.outputs.length, attrs: plainAttrs(node) });
    }
    node.outputs.forEach((v, i) => {
      if (outs[i] !== undefined) values[precision].set(v, outs[i]);
    });
    return outs;
  };
  return { value, emit, bind: (name, v, precision = 'fp32') => values[precision].set(name, v) };
}

/** ONNX allows any value name; readable, unique stems are the builder's job. */
function safe(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^_+/, '') || 'v';
}
