/**
 * ONNX file → model graph. Reads classifiers exported by `torch.onnx.export` (opsets 11–21),
 * tf2onnx and Keras: initializers and `Constant` nodes become constants (external-data files are
 * read through an injected reader), every node is put in the IR's canonical form (attributes for
 * axes/pads/clip bounds/reshape targets, `auto_pad` resolved), and the image input's layout is
 * told from its shape. Every op is checked against the supported set here, before any image.
 */
import { float16Value } from './float16.js';
import { createHash } from 'node:crypto';
import { ModelError } from '../../../shared/errors.js';
import type { Attr, ConstTensor, GraphNode, ModelGraph } from './ir.js';
import { attrInt, attrInts, attrString } from './ir.js';
import type { DecodedAttribute, DecodedNode, DecodedTensor } from './onnx-proto.js';
import { AttributeType, TensorDataType, readModel } from './onnx-proto.js';
import type { Shape } from './ops.js';
import { SUPPORTED_OPS, nodeOutputShapes, unsupportedOp, windowOut } from './ops.js';
import { topologicalOrder } from './walker.js';
import { BATCH, SHAPE_ONLY_OPS, dependsOnBatch, foldShapeNode } from './shape-folding.js';

export interface OnnxImportOptions {
  /** Where the file came from, for provenance and error messages. */
  source: string;
  /** Name of the model when the graph has none. */
  name?: string;
  /** Reads an external-data file named by a tensor's `location` (relative to the model file). */
  readExternal?: (location: string) => Promise<Uint8Array>;
}

/** The opset range the importer is written against (`torch.onnx.export` 11–21). */
export const ONNX_OPSETS = { min: 7, max: 21 } as const;

export async function importOnnx(bytes: Uint8Array, options: OnnxImportOptions): Promise<ModelGraph> {
  const label = options.source;
  let model: ReturnType<typeof readModel>;
  try {
    model = readModel(bytes);
  } catch (err) {
    throw new ModelError(`${label} is not a readable ONNX model: ${(err as Error).message}`, { cause: err });
  }
  const graph = model.graph;
  if (!graph?.node?.length) throw new ModelError(`${label} has no ONNX graph`);
  const opset = model.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0;
  if (opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max) {
    throw new ModelError(`${label} uses ONNX opset ${opset}; supported opsets are ${ONNX_OPSETS.min}–${ONNX_OPSETS.max} (re-export with opset_version=17)`);
  }

  const hash = createHash('sha256').update(bytes);
  const external = new Map<string, Uint8Array>();
  const readExternal = async (location: string): Promise<Uint8Array> => {
    let data = external.get(location);
    if (!data) {
      if (!options.readExternal) throw new ModelError(`${label} keeps weights in an external file (${location}) that cannot be read from here`);
      data = await options.readExternal(location);
      hash.update(data);
      external.set(location, data);
    }
    return data;
  };

  const constants: Record<string, ConstTensor> = {};
  for (const t of graph.initializer ?? []) constants[t.name] = await decodeTensor(t, readExternal, label);

  const inputs = (graph.input ?? []).filter((i) => !(i.name in constants));
  if (inputs.length !== 1) throw new ModelError(`${label} has ${inputs.length} graph inputs (${inputs.map((i) => i.name).join(', ')}); an image classifier has exactly one`);
  const input = inputs[0];
  const dims = (input.type?.tensorType?.shape?.dim ?? []).map((d) => (d.dimValue !== undefined && d.dimValue > 0 ? d.dimValue : null));
  if (dims.length !== 4 || dims.slice(1).some((d) => d === null)) {
    throw new ModelError(`${label}: input ${input.name} has shape [${dims.map((d) => d ?? '?').join(', ')}]; an image classifier's input is 4-D with fixed height, width and channels (export with a fixed input size)`);
  }
  const [batch, d1, d2, d3] = dims as [number | null, number, number, number];
  const nchw = d1 <= 4 && d3 > 4 ? true : d3 <= 4 && d1 > 4 ? false : d1 <= 4;
  const inputShape: [number, number, number] = nchw ? [d2, d3, d1] : [d1, d2, d3];

  // Constant nodes first: canonicalisation reads their values (axes, shapes, clip bounds).
  const rawNodes: DecodedNode[] = [];
  for (const node of graph.node) {
    if ((node.domain ?? '') !== '' && node.domain !== 'ai.onnx') throw unsupportedOp({ name: node.name || node.output?.[0] || '?', op: `${node.domain}.${node.opType}` });
    if (node.opType === 'Constant') constants[node.output![0]] = await constantNodeValue(node, readExternal, label);
    else rawNodes.push(node);
  }
  const named = rawNodes.map((n, i): GraphNode => ({
    name: n.name || `${n.opType}_${i}`,
    op: n.opType,
    inputs: n.input ?? [],
    outputs: n.output ?? [],
    attrs: Object.fromEntries((n.attribute ?? []).flatMap((a) => toAttr(a))),
  }));
  for (const node of named) if (!SUPPORTED_OPS.includes(node.op) && !SHAPE_ONLY_OPS.includes(node.op)) throw unsupportedOp(node);
  const ordered = topologicalOrder(named, [input.name, ...Object.keys(constants)]);

  const shapes = new Map<string, Shape>(Object.entries(constants).map(([k, c]) => [k, c.dims]));
  shapes.set(input.name, [1, d1, d2, d3]);
  const nodes: GraphNode[] = [];
  for (const raw of ordered) {
    // Identity on a constant (PyTorch exports shared weights that way) is that constant.
    if ((raw.op === 'Identity' || raw.op === 'Dropout') && raw.inputs[0] in constants) {
      constants[raw.outputs[0]] = constants[raw.inputs[0]];
      shapes.set(raw.outputs[0], constants[raw.inputs[0]].dims);
      continue;
    }
    // Shape arithmetic (a dynamic-batch export's Shape → Gather → Concat → Reshape) folds to constants.
    const folded = foldShapeNode(raw, constants, shapes);
    if (folded) {
      raw.outputs.forEach((v, i) => {
        constants[v] = folded[i];
        shapes.set(v, folded[i].dims);
      });
      continue;
    }
    if (SHAPE_ONLY_OPS.includes(raw.op)) throw new ModelError(`${label}: node "${raw.name}" (${raw.op}) computes a value at run time from non-constant inputs; only shape computations with static dimensions (the batch aside) are supported`);
    raw.inputs.forEach((v, i) => {
      // A Reshape target or Resize sizes (opset 11+) may carry the batch: canonical() replaces it.
      if (dependsOnBatch(constants[v]) && !(raw.op === 'Reshape' && i === 1) && !(raw.op === 'Resize' && i === 3 && opset >= 11)) {
        throw new ModelError(`${label}: node "${raw.name}" (${raw.op}) reads the batch size at run time; only reshapes that keep the batch are supported (export with a fixed batch, or flatten with torch.flatten(x, 1))`);
      }
    });
    const node = canonical(raw, opset, constants, shapes, batch);
    const outShapes = nodeOutputShapes(node, node.inputs.map((v) => (v === '' ? [] : shapes.get(v)!)), { constants });
    node.outputs.forEach((v, i) => shapes.set(v, outShapes[i]));
    nodes.push(node);
  }
  // Constants nothing reads (folded shapes, unused initializers) are dropped.
  const used = new Set(nodes.flatMap((n) => n.inputs));
  for (const name of Object.keys(constants)) if (!used.has(name)) delete constants[name];

  const output = graph.output?.[0]?.name;
  if (!output) throw new ModelError(`${label} declares no graph output`);
  return {
    name: options.name ?? (graph.name || 'onnx-model'),
    inputShape,
    input: { name: input.name, layout: nchw ? 'nchw' : 'nhwc' },
    output,
    nodes,
    constants,
    weightsHash: hash.digest('hex'),
    source: options.source,
    producer: model.producerName ?? '',
  };
}

function toAttr(a: DecodedAttribute): Array<[string, Attr]> {
  switch (a.type) {
    case AttributeType.INT:
      return [[a.name, { int: Number(a.i ?? 0) }]];
    case AttributeType.FLOAT:
      return [[a.name, { float: a.f ?? 0 }]];
    case AttributeType.INTS:
      return [[a.name, { ints: (a.ints ?? []).map(Number) }]];
    case AttributeType.FLOATS:
      return [[a.name, { floats: a.floats ?? [] }]];
    case AttributeType.STRING:
      return [[a.name, { string: new TextDecoder().decode(a.s ?? new Uint8Array()) }]];
    default:
      return []; // tensors (Constant, read separately) and graphs (control flow: refused as ops)
  }
}

async function decodeTensor(t: DecodedTensor, readExternal: (location: string) => Promise<Uint8Array>, label: string): Promise<ConstTensor> {
  const dims = (t.dims ?? []).map(Number);
  let raw = t.rawData;
  if (t.dataLocation === 1) {
    const info = Object.fromEntries((t.externalData ?? []).map((e) => [e.key, e.value]));
    const file = await readExternal(info.location ?? '');
    const offset = Number(info.offset ?? 0);
    const length = info.length !== undefined ? Number(info.length) : file.length - offset;
    if (offset + length > file.length) throw new ModelError(`${label}: tensor ${t.name} reads past the end of ${info.location}`);
    raw = file.subarray(offset, offset + length);
  }
  const count = dims.reduce((a, b) => a * b, 1);
  const copy = (bytesPer: number): ArrayBuffer => {
    // A copy, 4/8-byte aligned (protobuf offsets are not), which also frees the file buffer.
    const out = new Uint8Array(count * bytesPer);
    out.set(raw!.subarray(0, count * bytesPer));
    return out.buffer;
  };
  switch (t.dataType) {
    case TensorDataType.FLOAT:
      return { dtype: 'float32', dims, data: raw?.length ? new Float32Array(copy(4)) : Float32Array.from(t.floatData ?? []) };
    case TensorDataType.DOUBLE:
      return { dtype: 'float32', dims, data: raw?.length ? Float32Array.from(new Float64Array(copy(8))) : Float32Array.from(t.doubleData ?? []) };
    case TensorDataType.FLOAT16: {
      // Half-precision exports (`model.half()`, float16 converters): widened once to float32; the
      // engines compute in float32 unless `--onnx-precision fp16` asks for a float16 trunk.
      const bits = raw?.length ? new Uint16Array(copy(2)) : Uint16Array.from(t.int32Data ?? []);
      return { dtype: 'float32', dims, data: Float32Array.from(bits, float16Value) };
    }
    case TensorDataType.INT64:
      return { dtype: 'int64', dims, data: raw?.length ? Array.from(new BigInt64Array(copy(8)), Number) : (t.int64Data ?? []).map(Number) };
    case TensorDataType.INT32:
      return { dtype: 'int64', dims, data: raw?.length ? Array.from(new Int32Array(copy(4))) : (t.int32Data ?? []).map(Number) };
    default:
      throw new ModelError(`${label}: tensor ${t.name} has ONNX data type ${t.dataType}; only float32/float16/float64/int32/int64 tensors are supported (export in float32)`);
  }
}

async function constantNodeValue(node: DecodedNode, readExternal: (location: string) => Promise<Uint8Array>, label: string): Promise<ConstTensor> {
  const attr = node.attribute?.[0];
  if (attr?.t) return decodeTensor(attr.t, readExternal, label);
  if (attr?.name === 'value_float') return { dtype: 'float32', dims: [], data: Float32Array.of(attr.f ?? 0) };
  if (attr?.name === 'value_floats') return { dtype: 'float32', dims: [attr.floats?.length ?? 0], data: Float32Array.from(attr.floats ?? []) };
  if (attr?.name === 'value_int') return { dtype: 'int64', dims: [], data: [Number(attr.i ?? 0)] };
  if (attr?.name === 'value_ints') return { dtype: 'int64', dims: [attr.ints?.length ?? 0], data: (attr.ints ?? []).map(Number) };
  throw new ModelError(`${label}: Constant node ${node.name ?? node.output?.[0]} has an unsupported value (${attr?.name ?? 'none'})`);
}

/**
 * One form per op whatever the opset: values that newer opsets pass as inputs become attributes,
 * `auto_pad` becomes `pads`, and a fixed batch in a reshape target becomes "keep the batch".
 */
function canonical(node: GraphNode, opset: number, constants: Record<string, ConstTensor>, shapes: Map<string, Shape>, batch: number | null): GraphNode {
  const where = `node "${node.name}" (${node.op})`;
  const ints = (v: string | undefined, what: string): number[] | undefined => {
    if (!v) return undefined;
    const c = constants[v];
    if (!c) throw new ModelError(`${where}: its ${what} (${v}) is computed at run time; only constant ${what} are supported (export with constant folding)`);
    return Array.from(c.data, Number);
  };
  const float = (v: string | undefined): number | undefined => {
    if (!v) return undefined;
    const c = constants[v];
    if (!c) throw new ModelError(`${where}: its bounds are computed at run time; only constant bounds are supported`);
    return Number(c.data[0]);
  };
  const attrs: Record<string, Attr> = { ...node.attrs };
  let inputs = node.inputs;
  let outputs = node.outputs;
  switch (node.op) {
    case 'Clip': {
      const min = opset >= 11 ? float(inputs[1]) : (node.attrs.min as { float: number } | undefined)?.float;
      const max = opset >= 11 ? float(inputs[2]) : (node.attrs.max as { float: number } | undefined)?.float;
      delete attrs.min;
      delete attrs.max;
      if (min !== undefined) attrs.min = { float: min };
      if (max !== undefined) attrs.max = { float: max };
      inputs = [inputs[0]];
      break;
    }
    case 'ReduceMean':
    case 'Squeeze':
    case 'Unsqueeze': {
      const axes = inputs[1] ? ints(inputs[1], 'axes') : attrInts(node, 'axes');
      if (axes) attrs.axes = { ints: axes };
      if (node.op === 'ReduceMean' && !axes && attrInt(node, 'noop_with_empty_axes', 0) === 1) throw new ModelError(`${where}: ReduceMean without axes as a no-op is not supported`);
      inputs = [inputs[0]];
      break;
    }
    case 'Resize': {
      // Opset 10: (X, scales); 11+: (X, roi, scales, sizes). Either becomes an attribute as given:
      // sizes stay sizes, since scales d / x would lose them (floor(7 · f32(61 / 7)) is 60).
      const [scalesIn, sizesIn] = opset < 11 ? [inputs[1], undefined] : [inputs[2], inputs[3]];
      const scales = scalesIn ? ints(scalesIn, 'scales') : undefined;
      if (scales && scales.length > 0) {
        attrs.scales = { floats: scales };
      } else {
        const sizes = ints(sizesIn, 'sizes');
        const x = shapes.get(inputs[0]);
        if (!sizes || !x) throw new ModelError(`${where}: neither scales nor sizes are given`);
        // The batch entry is the export's batch (or the run-time batch marker): the engines batch freely.
        if (sizes.length !== 4 || sizes[1] !== x[1]) throw new ModelError(`${where}: sizes [${sizes.join(', ')}] must keep the ${x[1]} channels of a 4-D input; only spatial resizes are supported`);
        attrs.sizes = { ints: sizes.slice(2) };
      }
      inputs = [inputs[0]];
      break;
    }
    case 'Pad': {
      const pads = inputs[1] ? ints(inputs[1], 'pads') : attrInts(node, 'pads');
      if (inputs[3]) throw new ModelError(`${where}: Pad with explicit axes is not supported`);
      attrs.pads = { ints: pads ?? [] };
      const value = inputs[2] ? float(inputs[2]) : (node.attrs.value as { float: number } | undefined)?.float;
      attrs.value = { float: value ?? 0 };
      inputs = [inputs[0]];
      break;
    }
    case 'Reshape': {
      const shape = ints(inputs[1], 'shape') ?? attrInts(node, 'shape') ?? [];
      const x = shapes.get(inputs[0]);
      // A file exported at batch 1 (no dynamic axes) bakes the batch into reshape targets; the
      // engines batch freely, so "the input's batch" (0) replaces it.
      if (batch !== null && shape[0] === batch && x?.[0] === 1 && attrInt(node, 'allowzero', 0) === 0) shape[0] = 0;
      // A dynamic-batch export's folded target (shape-folding.ts) starts with the batch: the same.
      if (shape[0] === BATCH && attrInt(node, 'allowzero', 0) === 0) shape[0] = 0;
      if (shape.includes(BATCH)) throw new ModelError(`${where}: its target shape puts the run-time batch size on axis ${shape.indexOf(BATCH)}; only reshapes that keep the batch first are supported`);
      attrs.shape = { ints: shape };
      inputs = [inputs[0]];
      break;
    }
    case 'Softmax':
      if (!('axis' in attrs)) attrs.axis = { int: opset >= 13 ? -1 : 1 };
      if (opset < 13) {
        const rank = shapes.get(inputs[0])?.length ?? 2;
        const axis = attrInt(node, 'axis', 1);
        if ((axis < 0 ? axis + rank : axis) !== rank - 1) throw new ModelError(`${where}: before opset 13 Softmax flattens its input; only a softmax over the last axis is supported`);
      }
      break;
    case 'Dropout':
      inputs = [inputs[0]];
      outputs = [outputs[0]];
      break;
    case 'BatchNormalization':
    case 'LayerNormalization':
    case 'MaxPool':
      outputs = [outputs[0]];
      break;
    case 'Conv':
    case 'AveragePool': {
      resolveAutoPad(node, attrs, shapes);
      break;
    }
    default:
      break;
  }
  if (node.op === 'MaxPool') resolveAutoPad(node, attrs, shapes);
  return { name: node.name, op: node.op, inputs, outputs, attrs };
}

function resolveAutoPad(node: GraphNode, attrs: Record<string, Attr>, shapes: Map<string, Shape>): void {
  const x = shapes.get(node.inputs[0]);
  if (!x || x.length !== 4) throw new ModelError(`node "${node.name}" (${node.op}): only 2-D (4-D NCHW) windows are supported`);
  const kernel = attrInts(node, 'kernel_shape') ?? shapes.get(node.inputs[1])?.slice(2);
  if (!kernel || kernel.length !== 2) throw new ModelError(`node "${node.name}" (${node.op}): only 2-D windows are supported`);
  attrs.kernel_shape = { ints: kernel };
  const mode = attrString(node, 'auto_pad', 'NOTSET');
  delete attrs.auto_pad;
  if (mode === 'NOTSET') return;
  const strides = attrInts(node, 'strides') ?? [1, 1];
  const dil = attrInts(node, 'dilations') ?? [1, 1];
  if (mode === 'VALID') {
    attrs.pads = { ints: [0, 0, 0, 0] };
    return;
  }
  const begin: number[] = [];
  const end: number[] = [];
  for (let i = 0; i < 2; i++) {
    const size = x[i + 2];
    const out = Math.ceil(size / strides[i]);
    const total = Math.max((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - size, 0);
    const small = Math.floor(total / 2);
    begin.push(mode === 'SAME_LOWER' ? total - small : small);
    end.push(mode === 'SAME_LOWER' ? small : total - small);
    if (windowOut(size, kernel[i], strides[i], begin[i], end[i], dil[i], false) !== out) throw new ModelError(`node "${node.name}": cannot resolve auto_pad ${mode}`);
  }
  attrs.pads = { ints: [...begin, ...end] };
}
