/**
 * A small imperative builder for ONNX graphs: nodes get unique names, constants are deduplicated,
 * and the result serialises with `encodeModel`. It knows nothing about CNNs; the compiler uses it.
 */
import {
  AttributeType,
  TensorDataType,
  encodeModel,
  type AttributeMessage,
  type DimMessage,
  type NodeMessage,
  type TensorDataTypeValue,
  type TensorMessage,
  type ValueInfoMessage,
} from '../../model/graph/onnx-proto.js';
import { toFloat16 } from '../../model/graph/float16.js';

/** Opset of the default domain. 17 is the newest opset whose Reduce* ops (bar ReduceSum) take `axes` as an attribute. */
export const OPSET = 17;
/** IR version 8 is the one that goes with opset 17. */
export const IR_VERSION = 8;

/** An attribute value, tagged by ONNX attribute type. */
export type Attr =
  | { int: number }
  | { ints: number[] }
  | { float: number }
  | { floats: number[] }
  | { string: string };

export type Dim = number | string;

export interface NodeOptions {
  attrs?: Record<string, Attr>;
  /** Number of outputs (default 1). */
  outputs?: number;
  /** A readable stem for the node and its outputs, e.g. `block1_conv1`. */
  name?: string;
}

export class GraphBuilder {
  private readonly nodes: NodeMessage[] = [];
  private readonly initializers: TensorMessage[] = [];
  private readonly inputs: ValueInfoMessage[] = [];
  private readonly outputs: ValueInfoMessage[] = [];
  private readonly usedNames = new Set<string>();
  private readonly constantCache = new Map<string, string>();
  /** Values exposed as graph outputs under another name: renamed everywhere when serialised. */
  private readonly renames = new Map<string, string>();

  /** Declare a graph input. */
  input(name: string, elemType: TensorDataTypeValue, dims: Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /**
   * Expose an existing value as a graph output under `name`. A node's output is renamed (ONNX
   * Runtime runs an Identity to a graph output as a copy: 20 µs for a 960x7x7 activation); a graph
   * input, or a value already exposed, gets an Identity.
   */
  output(value: string, name: string, elemType: TensorDataTypeValue, dims: Dim[]): string {
    if (value !== name) {
      this.claim(name);
      const produced = this.nodes.some((n) => n.output.includes(value));
      if (produced && !this.renames.has(value) && !this.outputs.some((o) => o.name === value)) this.renames.set(value, name);
      else this.nodes.push({ name: `${name}_out`, opType: 'Identity', input: [value], output: [name], attribute: [] });
    }
    this.outputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** A float32 initializer (weights). Kept as raw little-endian bytes, never copied. */
  floatInitializer(name: string, data: Float32Array, dims: number[]): string {
    checkSize(name, data.length, dims);
    const unique = this.uniqueName(name);
    this.initializers.push({
      name: unique,
      dims,
      dataType: TensorDataType.FLOAT,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return unique;
  }

  /** A float16 initializer converted from float32 weights (round to nearest even). */
  halfInitializer(name: string, data: Float32Array, dims: number[]): string {
    checkSize(name, data.length, dims);
    const unique = this.uniqueName(name);
    const bits = toFloat16(data);
    this.initializers.push({ name: unique, dims, dataType: TensorDataType.FLOAT16, rawData: new Uint8Array(bits.buffer) });
    return unique;
  }

  /** A small int64 constant (shapes, axes), deduplicated by value. */
  int64(values: number[], dims: number[] = [values.length]): string {
    return this.smallConstant('i64', TensorDataType.INT64, values, dims, () => new BigInt64Array(values.map((v) => BigInt(v))));
  }

  /** A small float32 constant, deduplicated by value. */
  float(values: number[], dims: number[] = [values.length]): string {
    return this.smallConstant('f32', TensorDataType.FLOAT, values, dims, () => new Float32Array(values));
  }

  /** A small float16 constant, deduplicated by value (operands of half-precision nodes). */
  half(values: number[], dims: number[] = [values.length]): string {
    return this.smallConstant('f16', TensorDataType.FLOAT16, values, dims, () => toFloat16(values));
  }

  /** Constants live in the root graph, once per (type, shape, values). */
  private smallConstant(stem: string, dataType: TensorDataTypeValue, values: number[], dims: number[], encode: () => ArrayBufferView): string {
    const key = `${stem}:${dims.join('x')}:${values.join(',')}`;
    const cached = this.constantCache.get(key);
    if (cached) return cached;
    checkSize(`${stem} constant`, values.length, dims);
    const bytes = encode();
    const name = this.uniqueName(`c_${stem}`);
    this.initializers.push({ name, dims, dataType, rawData: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength) });
    this.constantCache.set(key, name);
    return name;
  }

  /** Add a node with one output and return that output's name. */
  op(opType: string, inputs: string[], options: NodeOptions = {}): string {
    return this.opMulti(opType, inputs, { ...options, outputs: 1 })[0];
  }

  /** Add a node and return all its output names. An empty input name means "optional input absent". */
  opMulti(opType: string, inputs: string[], options: NodeOptions = {}): string[] {
    const stem = this.uniqueName(options.name ?? opType.toLowerCase());
    const count = options.outputs ?? 1;
    const outputs = Array.from({ length: count }, (_, i) => (i === 0 ? stem : this.uniqueName(`${stem}_${i}`)));
    const attribute = Object.entries(options.attrs ?? {}).map(([name, value]) => toAttribute(name, value));
    this.nodes.push({ name: `${stem}_node`, opType, input: inputs, output: outputs, attribute });
    return outputs;
  }

  /** Serialise as an ONNX model. */
  toBytes(meta: { graphName: string; producerVersion: string; docString?: string; metadata?: Record<string, string> }): Uint8Array {
    const rename = (v: string): string => this.renames.get(v) ?? v;
    return encodeModel({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'gradcam-audit',
      producerVersion: meta.producerVersion,
      docString: meta.docString,
      metadataProps: Object.entries(meta.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: meta.graphName,
        node: this.renames.size === 0 ? this.nodes : this.nodes.map((n) => ({ ...n, input: n.input.map(rename), output: n.output.map(rename) })),
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
  }

  get nodeCount(): number {
    return this.nodes.length;
  }

  private uniqueName(stem: string): string {
    let name = stem;
    for (let i = 1; this.usedNames.has(name); i++) name = `${stem}_${i}`;
    this.usedNames.add(name);
    return name;
  }

  private claim(name: string): void {
    if (this.usedNames.has(name)) throw new Error(`ONNX graph value name ${name} is already used`);
    this.usedNames.add(name);
  }
}

function valueInfo(name: string, elemType: number, dims: Dim[]): ValueInfoMessage {
  const dim: DimMessage[] = dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d }));
  return { name, type: { tensorType: { elemType, shape: { dim } } } };
}

function toAttribute(name: string, value: Attr): AttributeMessage {
  if ('int' in value) return { name, type: AttributeType.INT, i: value.int };
  if ('ints' in value) return { name, type: AttributeType.INTS, ints: value.ints };
  if ('float' in value) return { name, type: AttributeType.FLOAT, f: value.float };
  if ('floats' in value) return { name, type: AttributeType.FLOATS, floats: value.floats };
  return { name, type: AttributeType.STRING, s: new TextEncoder().encode(value.string) };
}

function checkSize(name: string, length: number, dims: number[]): void {
  const expected = dims.reduce((a, b) => a * b, 1);
  if (expected !== length) throw new Error(`ONNX tensor ${name}: ${length} values do not fill dims [${dims.join(', ')}]`);
}
