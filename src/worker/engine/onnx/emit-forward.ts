/**
 * Write graph-IR nodes back as ONNX nodes of the compiler's opset. The IR keeps axes, pads, clip
 * bounds and reshape targets as attributes whatever the source opset; opset 17 wants several of
 * them as inputs, and has no Gelu, so those are re-expressed here, and only here.
 */
import type { ConstTensor, GraphNode } from '../../model/graph/ir.js';
import { attrFloat, attrInts, attrString } from '../../model/graph/ir.js';
import type { Attr, GraphBuilder } from './graph-builder.js';

export interface ForwardEmitter {
  /** Builder value of an IR value (constants become initializers on first use). */
  value(name: string): string;
  /** Emit one node; returns its builder outputs. `extraOutputs` asks MaxPool for its Indices. */
  emit(node: GraphNode, options?: { indices?: boolean }): string[];
  /** Bind an IR value to an existing builder value (the graph input). */
  bind(name: string, value: string): void;
}

export function forwardEmitter(g: GraphBuilder, constants: Record<string, ConstTensor>): ForwardEmitter {
  const values = new Map<string, string>();
  const value = (name: string): string => {
    if (name === '') return '';
    const known = values.get(name);
    if (known) return known;
    const c = constants[name];
    if (!c) throw new Error(`ONNX compiler: value ${name} is used before it is computed`);
    const v = c.dtype === 'float32' ? g.floatInitializer(safe(name), c.data, c.dims) : g.int64(c.data, c.dims);
    values.set(name, v);
    return v;
  };
  const plainAttrs = (node: GraphNode, drop: string[] = []): Record<string, Attr> =>
    Object.fromEntries(Object.entries(node.attrs).filter(([k]) => !drop.includes(k)));

  const emit = (node: GraphNode, options: { indices?: boolean } = {}): string[] => {
    const inputs = node.inputs.map(value);
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
        outs = one('Clip', [inputs[0], Number.isFinite(min) ? g.float([min], []) : '', Number.isFinite(max) ? g.float([max], []) : '']);
        break;
      }
      case 'Pad':
        outs = one('Pad', [inputs[0], g.int64(attrInts(node, 'pads')!), g.float([attrFloat(node, 'value', 0)], [])], { mode: { string: attrString(node, 'mode', 'constant') } });
        break;
      case 'Dropout':
        outs = one('Identity', [inputs[0]]);
        break;
      case 'Gelu': {
        // 0.5·x·(1 + erf(x/√2)), or the tanh approximation when the node asks for it.
        const x = inputs[0];
        const inner =
          attrString(node, 'approximate', 'none') === 'tanh'
            ? g.op('Tanh', [g.op('Mul', [g.op('Add', [x, g.op('Mul', [g.op('Mul', [g.op('Mul', [x, x], { name: `${stem}_x2` }), x], { name: `${stem}_x3` }), g.float([0.044715], [])], { name: `${stem}_cx3` })], { name: `${stem}_poly` }), g.float([Math.sqrt(2 / Math.PI)], [])], { name: `${stem}_scaled` })], { name: `${stem}_tanh` })
            : g.op('Erf', [g.op('Mul', [x, g.float([Math.SQRT1_2], [])], { name: `${stem}_scaled` })], { name: `${stem}_erf` });
        const half = g.op('Mul', [x, g.float([0.5], [])], { name: `${stem}_half` });
        outs = [g.op('Mul', [half, g.op('Add', [inner, g.float([1], [])], { name: `${stem}_1p` })], { name: stem })];
        break;
      }
      case 'MaxPool':
        outs = g.opMulti('MaxPool', [inputs[0]], { name: stem, outputs: options.indices ? 2 : 1, attrs: plainAttrs(node) });
        break;
      default:
        outs = g.opMulti(node.op, inputs, { name: stem, outputs: node.op === 'BatchNormalization' ? 1 : node.outputs.length, attrs: plainAttrs(node) });
    }
    node.outputs.forEach((v, i) => {
      if (outs[i] !== undefined) values.set(v, outs[i]);
    });
    return outs;
  };
  return { value, emit, bind: (name, v) => values.set(name, v) };
}

/** ONNX allows any value name; readable, unique stems are the builder's job. */
function safe(name: string): string {
  return name.replace(/[^A-Za-z0-9_.-]/g, '_').replace(/^_+/, '') || 'v';
}
