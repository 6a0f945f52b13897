/**
 * The one walk over a model graph: topological order, shape inference, the Grad-CAM target and the
 * split there into a trunk (run forward only) and a head (differentiated). Engines, the support
 * check and the doctor ask this module; none of them re-walks the nodes on its own.
 */
import { ModelError } from '../../../shared/errors.js';
import type { GraphNode, ModelGraph } from './ir.js';
import { attrInts } from './ir.js';
import type { Shape } from './ops.js';
import { nodeOutputShapes, normalizeAxis } from './ops.js';

export interface GraphFacts {
  /** Value name → shape with the batch axis (at batch 1). Constants included. */
  shapes: Map<string, Shape>;
  /** Value name → the node that produces it. */
  producer: Map<string, GraphNode>;
  /** Value name → nodes that read it. */
  consumers: Map<string, GraphNode[]>;
}

const factsCache = new WeakMap<ModelGraph, GraphFacts>();

/** Sort nodes so that every node follows the producers of its inputs; throws on cycles or unknown inputs. */
export function topologicalOrder(nodes: readonly GraphNode[], available: Iterable<string>): GraphNode[] {
  const ready = new Set(available);
  const pending = [...nodes];
  const order: GraphNode[] = [];
  while (pending.length > 0) {
    const before = pending.length;
    for (let i = 0; i < pending.length; ) {
      const node = pending[i];
      if (node.inputs.every((v) => v === '' || ready.has(v))) {
        order.push(node);
        node.outputs.forEach((v) => ready.add(v));
        pending.splice(i, 1);
      } else {
        i++;
      }
    }
    if (pending.length === before) {
      const node = pending[0];
      const missing = node.inputs.filter((v) => v !== '' && !ready.has(v));
      throw new ModelError(`node "${node.name}" (${node.op}) reads ${missing.join(', ')}, which no node, input or initializer provides (or the graph has a cycle)`);
    }
  }
  return order;
}

/** Shapes, producers and consumers of every value (computed once per graph). */
export function graphFacts(graph: ModelGraph): GraphFacts {
  const cached = factsCache.get(graph);
  if (cached) return cached;
  const shapes = new Map<string, Shape>();
  const producer = new Map<string, GraphNode>();
  const consumers = new Map<string, GraphNode[]>();
  const [h, w, c] = graph.inputShape;
  shapes.set(graph.input.name, graph.input.layout === 'nchw' ? [1, c, h, w] : [1, h, w, c]);
  for (const [name, t] of Object.entries(graph.constants)) shapes.set(name, t.dims);
  for (const node of graph.nodes) {
    const inputs = node.inputs.map((v) => {
      if (v === '') return [];
      const s = shapes.get(v);
      if (!s) throw new ModelError(`node "${node.name}" (${node.op}) reads ${v} before it is computed`);
      consumers.set(v, [...(consumers.get(v) ?? []), node]);
      return s;
    });
    const outputs = nodeOutputShapes(node, inputs, graph);
    node.outputs.forEach((v, i) => {
      shapes.set(v, outputs[i]);
      producer.set(v, node);
    });
  }
  const facts = { shapes, producer, consumers };
  factsCache.set(graph, facts);
  return facts;
}

export function shapeOf(graph: ModelGraph, value: string): Shape {
  const s = graphFacts(graph).shapes.get(value);
  if (!s) throw new ModelError(`${graph.name} has no value named ${value}`);
  return s;
}

/** How the classifier's output turns into probabilities, and which value holds the logits. */
export interface OutputHead {
  logits: string;
  /** `none`: the model outputs logits; probabilities are their softmax. */
  activation: 'softmax' | 'sigmoid' | 'none';
  numClasses: number;
  /** The final softmax/sigmoid node, if any (no engine runs it as part of the head). */
  node: GraphNode | null;
}

export function outputHead(graph: ModelGraph): OutputHead {
  const facts = graphFacts(graph);
  const shape = facts.shapes.get(graph.output) ?? [];
  if (shape.length !== 2) throw new ModelError(`${graph.name} does not end in a vector of class scores (output ${graph.output} has shape [${shape.join(', ')}])`);
  let last = facts.producer.get(graph.output);
  // Exporters often rename the output with an Identity after the softmax.
  while (last && (last.op === 'Identity' || last.op === 'Dropout')) last = facts.producer.get(last.inputs[0]);
  if (last && (last.op === 'Softmax' || last.op === 'Sigmoid')) {
    return { logits: last.inputs[0], activation: last.op === 'Softmax' ? 'softmax' : 'sigmoid', numClasses: shape[1], node: last };
  }
  return { logits: graph.output, activation: 'none', numClasses: shape[1], node: null };
}

/** Ops a default target is walked back through: they only subsample or relabel the feature map. */
const PASS_THROUGH = new Set(['MaxPool', 'Transpose', 'Identity', 'Dropout']);

/** The node that pools the feature map into a vector (the head's first op), if it is one. */
function spatialPooling(node: GraphNode, facts: GraphFacts): boolean {
  const x = facts.shapes.get(node.inputs[0]);
  if (!x || x.length !== 4) return false;
  switch (node.op) {
    case 'GlobalAveragePool':
    case 'Flatten':
      return true;
    case 'Reshape':
      return (attrInts(node, 'shape') ?? []).length === 2;
    case 'ReduceMean': {
      const axes = new Set((attrInts(node, 'axes') ?? [0, 1, 2, 3]).map((a) => normalizeAxis(a, 4)));
      return axes.size === 2 && ((axes.has(2) && axes.has(3)) || (axes.has(1) && axes.has(2)));
    }
    case 'AveragePool': {
      const k = attrInts(node, 'kernel_shape') ?? [];
      return k[0] === x[2] && k[1] === x[3];
    }
    default:
      return false;
  }
}

/** Ancestors of `output` (default the graph's), in order (nodes nothing reads are skipped by every engine). */
function neededNodes(graph: ModelGraph, output = graph.output): GraphNode[] {
  const facts = graphFacts(graph);
  const needed = new Set<GraphNode>();
  const stack = [output];
  while (stack.length > 0) {
    const node = facts.producer.get(stack.pop()!);
    if (!node || needed.has(node)) continue;
    needed.add(node);
    stack.push(...node.inputs.filter((v) => v !== ''));
  }
  return graph.nodes.filter((n) => needed.has(n));
}

/** 4-D values a user may name with `--layer`, as `name [c x h x w]` for error messages. */
function candidateList(graph: ModelGraph): string {
  const facts = graphFacts(graph);
  const convs = neededNodes(graph)
    .filter((n) => ['Conv', 'Relu', 'Clip', 'HardSwish', 'Add', 'Concat', 'Mul'].includes(n.op))
    .map((n) => n.outputs[0])
    .filter((v) => facts.shapes.get(v)?.length === 4);
  const tail = convs.slice(-12).map((v) => `${v} [${facts.shapes.get(v)!.slice(1).join('x')}]`);
  return tail.length > 0 ? `${convs.length > 12 ? '..., ' : ''}${tail.join(', ')}` : '(none)';
}

/**
 * The tensor Grad-CAM explains. Explicit: a node name (its first output), a value name, or a Keras
 * layer name (sequential models name each layer's output after the layer). Default: the 4-D tensor
 * the head's global pooling (GlobalAveragePool, ReduceMean over H and W, a full-size AveragePool)
 * or flatten reduces, walked back through max-pools and layout ops, so VGG16 keeps Keras'
 * `block5_conv3` and a ReLU'd conv output is preferred to its pooled copy.
 */
export function resolveTarget(graph: ModelGraph, explicit?: string): string {
  const facts = graphFacts(graph);
  if (explicit !== undefined) {
    const node = graph.nodes.find((n) => n.name === explicit);
    const value = node ? node.outputs[0] : facts.producer.has(explicit) ? explicit : undefined;
    const shape = value === undefined ? undefined : facts.shapes.get(value);
    if (value !== undefined && shape?.length === 4) return value;
    const why = shape ? `its output [${shape.slice(1).join(', ')}] is not a 4-D feature map` : 'no such layer, node or tensor';
    throw new ModelError(`target layer "${explicit}" cannot be used (${why}); feature maps of ${graph.name}: ${candidateList(graph)}`);
  }
  let pooling = neededNodes(graph).filter((n) => spatialPooling(n, facts)).at(-1);
  // Flatten after a global pooling (Keras' GlobalAveragePooling2D, torchvision's avgpool + flatten) is not a flatten head.
  const before = pooling && facts.producer.get(pooling.inputs[0]);
  if (before && spatialPooling(before, facts)) pooling = before;
  if (!pooling) throw new ModelError(`${graph.name} has no 4-D feature map pooled or flattened into its classifier, so there is nothing for Grad-CAM to explain`);
  let value = pooling.inputs[0];
  for (let node = facts.producer.get(value); node && PASS_THROUGH.has(node.op) && facts.shapes.get(node.inputs[0])?.length === 4; node = facts.producer.get(value)) {
    value = node.inputs[0];
  }
  if (!facts.producer.has(value)) throw new ModelError(`${graph.name} pools its input directly; there is no feature map for Grad-CAM to explain`);
  return value;
}

export interface GraphSplit {
  /** The resolved target value. */
  target: string;
  /** Per-example shape of the target, `[c, h, w]`: targets are NCHW, as ONNX convolutions produce them. */
  targetShape: [number, number, number];
  /** Nodes run forward only, in order: everything the output needs that does not depend on the target. */
  trunk: GraphNode[];
  /** Target → logits, in order, the final softmax/sigmoid excluded. */
  head: GraphNode[];
  /** Values the head reads from the trunk or the input besides the target (e.g. a skip connection). */
  headInputs: string[];
  output: OutputHead;
}

/** Split at `target` (resolved with `resolveTarget` when undefined). */
export function splitAtTarget(graph: ModelGraph, target?: string): GraphSplit {
  const facts = graphFacts(graph);
  const value = resolveTarget(graph, target);
  const output = outputHead(graph);
  const dependent = new Set<string>([value]);
  const trunk: GraphNode[] = [];
  const head: GraphNode[] = [];
  const needed = neededNodes(graph, output.logits);
  for (const node of needed) {
    if (node.inputs.some((v) => dependent.has(v))) {
      head.push(node);
      node.outputs.forEach((v) => dependent.add(v));
    } else {
      trunk.push(node);
    }
  }
  if (!dependent.has(output.logits)) throw new ModelError(`the classifier output of ${graph.name} does not depend on target layer ${value}`);
  if (head.length === 0) throw new ModelError(`target layer "${value}" is the model's last layer; Grad-CAM needs layers after it`);
  const produced = new Set(head.flatMap((n) => n.outputs));
  const headInputs = [...new Set(head.flatMap((n) => n.inputs))].filter((v) => v !== '' && v !== value && !produced.has(v) && !(v in graph.constants));
  const [, c, h, w] = facts.shapes.get(value)!;
  return { target: value, targetShape: [c, h, w], trunk, head, headInputs, output };
}

/** Number of classes of a graph's output. */
export function numClassesOf(graph: ModelGraph): number {
  return outputHead(graph).numClasses;
}
