/**
 * The model description every engine runs: a small typed graph in ONNX's operator vocabulary and
 * semantics (NCHW convolutions, OIHW kernels, broadcasting binary ops). The importers (ONNX files,
 * Keras/TF.js sequential models) produce it; `walker.ts` is the one place that orders it, infers
 * its shapes, finds the Grad-CAM target and splits it there.
 *
 * Attributes are canonical whatever the source opset: axes, pads, clip bounds, reshape targets and
 * resize targets (`scales`, or `sizes` as output height and width) are attributes (not inputs),
 * `auto_pad` is resolved into explicit `pads`, and a fixed batch size of the source file has been
 * made dynamic. That keeps every consumer to one form per op.
 */

/** An attribute value, tagged by ONNX attribute type (so it can be written back exactly). */
export type Attr = { int: number } | { ints: number[] } | { float: number } | { floats: number[] } | { string: string };

export interface GraphNode {
  /** Unique node name (ONNX node name, or `<keras layer>/<op>`). */
  name: string;
  /** ONNX op type, e.g. `Conv`, `Relu`, `Gemm`. */
  op: string;
  /** Value names; `''` marks an absent optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

/** A constant tensor (weights, shapes). Float data is float32; integer data int64 as numbers. */
export type ConstTensor = { dtype: 'float32'; dims: number[]; data: Float32Array } | { dtype: 'int64'; dims: number[]; data: number[] };

export interface GraphInput {
  /** The value name of the image batch inside the graph. */
  name: string;
  /**
   * How the model wants its images: `nchw` (PyTorch) or `nhwc` (Keras, tf2onnx). Engines always
   * receive HWC images and transpose when this says `nchw`.
   */
  layout: 'nchw' | 'nhwc';
}

export interface ModelGraph {
  /** e.g. `vgg16`, the name from model.json, or the ONNX graph's name. */
  name: string;
  /** Per-example `[height, width, channels]` of the images the engines feed. */
  inputShape: [number, number, number];
  input: GraphInput;
  /** The classifier's output value (probabilities or logits). */
  output: string;
  /** In topological order (`walker.ts` sorts imported graphs). */
  nodes: GraphNode[];
  constants: Record<string, ConstTensor>;
  /** sha256 (hex) of the weights as loaded. */
  weightsHash: string;
  /** Where the model came from (path, s3:// URI or URL), for provenance. */
  source: string;
  /** What wrote the file (ONNX `producer_name`, `keras`), for defaults that depend on it. */
  producer: string;
}

export function attrInt(node: GraphNode, name: string, fallback: number): number {
  const a = node.attrs[name];
  return a && 'int' in a ? a.int : fallback;
}

export function attrFloat(node: GraphNode, name: string, fallback: number): number {
  const a = node.attrs[name];
  if (a && 'float' in a) return a.float;
  return a && 'int' in a ? a.int : fallback;
}

export function attrInts(node: GraphNode, name: string): number[] | undefined {
  const a = node.attrs[name];
  return a && 'ints' in a ? a.ints : undefined;
}

export function attrString(node: GraphNode, name: string, fallback: string): string {
  const a = node.attrs[name];
  return a && 'string' in a ? a.string : fallback;
}

export function floatConstant(graph: Pick<ModelGraph, 'constants'>, name: string): Float32Array | undefined {
  const c = graph.constants[name];
  return c?.dtype === 'float32' ? c.data : undefined;
}
