/**
 * Model graph → one ONNX graph with Grad-CAM compiled in.
 *
 * Forward: the model's own nodes, as imported, behind an NHWC `images` input (transposed once when
 * the model is NCHW). Backward: only the head (target → logits) is differentiated, in closed form
 * (differentiate.ts), as a batch of N×T rows (N images, T targets each), starting from
 *   dS/dlogits = onehot (logit score), p_c·(onehot − p) (softmax probability) or
 *                onehot·p_c·(1 − p_c) (sigmoid probability, multi-label heads).
 * The CAM formulas of design.md §4 then run per (image, target) and the graph returns
 * ReLU'd, un-normalised maps; normalisation and degenerate checks stay in TypeScript so both
 * engines share them.
 *
 * Targets are an input `targets` [N,T] int64: a value ≥ 0 is a class index, a value −r means "the
 * r-th most probable class of this image" (−1 = top-1). Top-k is resolved with TopK on the graph's
 * own probabilities, so one run serves top-1, top-k and explicit indices.
 */
import type { CamMethod } from '../../../shared/explain-options.js';
import { ModelError } from '../../../shared/errors.js';
import type { ModelInput } from '../../model/graph/from-sequential.js';
import { toModelGraph } from '../../model/graph/from-sequential.js';
import { splitAtTarget } from '../../model/graph/walker.js';
import { emitHeadBackward, type HeadGradient } from './differentiate.js';
import { forwardEmitter, type Precision } from './emit-forward.js';
import { GraphBuilder, OPSET } from './graph-builder.js';
import { TensorDataType } from '../../model/graph/onnx-proto.js';
import { ONNX_CAM_METHODS, isOnnxSupported } from './support.js';

/** Bump when the emitted graph changes, so cached graphs from older code are not reused. */
export const COMPILER_VERSION = 8;

/** Names of the graph's inputs and outputs (the engine's side of the contract). */
export const GRAPH_IO = {
  images: 'images',
  targets: 'targets',
  scoreIsProb: 'score_is_prob',
  cam: 'cam',
  logits: 'logits',
  probabilities: 'probabilities',
  classes: 'classes',
  scores: 'scores',
  gradMaxAbs: 'grad_max_abs',
  /** The target layer's activation `[N,C,h,w]`, for the gradient-free methods (gradient-free/). */
  activation: 'activation',
} as const;

/** Node-name stem of a method's CAM sub-graph. */
function camStem(method: CamMethod): string {
  return `cam_${method.replace('++', 'pp')}`;
}

/** Stabiliser of the XGrad-CAM and Grad-CAM++ divisions (pytorch-grad-cam uses the same value). */
export const CAM_EPSILON = 1e-7;

export interface CompileOptions {
  /** The resolved target (a value of the model graph). */
  layer: string;
  /**
   * `explain`: the full Grad-CAM graph; `forward`: logits, probabilities and the target activation
   * only (no backward, so any head; serves the gradient-free methods).
   */
  kind: 'explain' | 'forward';
  /**
   * The gradient method whose CAM formula the graph computes (explain graphs). Default `gradcam`.
   * One method per graph: selecting among several inside the graph (an `If` on a method input) cost
   * a fixed 0.15-0.25 ms per run, 2-3% of a MobileNetV3 forward; the engine builds one session per
   * method it is asked for instead (engine.ts).
   */
  method?: CamMethod;
  /** Recorded in the model's producer_version. */
  producerVersion?: string;
  /**
   * Element type of the trunk (input → target layer), where nearly all the compute is. `fp16`
   * halves the weights and lets GPU providers use tensor cores; the head, its backward and the CAM
   * formulas stay float32 (gradients of a probability are often below float16's normal range), so
   * the graph's inputs and outputs keep their float32 types. Default `fp32`.
   */
  precision?: Precision;
}

export interface CompiledGraph {
  bytes: Uint8Array;
  layer: string;
  /** CAM grid size (the target layer's spatial size). */
  camHeight: number;
  camWidth: number;
  numClasses: number;
  /** The compiled gradient method (explain graphs), null for a forward-only graph. */
  method: CamMethod | null;
  precision: Precision;
}

export function compileGraph(model: ModelInput, options: CompileOptions): CompiledGraph {
  const graph = toModelGraph(model);
  const explain = options.kind === 'explain';
  const method = options.method ?? 'gradcam';
  if (explain && !ONNX_CAM_METHODS.includes(method)) throw new ModelError(`${method} reads no gradient and is not compiled into the graph (gradient-free/explain.ts runs it)`);
  const support = isOnnxSupported(graph, explain ? method : 'eigencam', options.layer);
  if (!support.ok) throw new ModelError(`cannot compile ${graph.name} for ONNX: ${support.reason}`);
  const split = splitAtTarget(graph, options.layer);
  const g = new GraphBuilder();
  const [H, W, C] = graph.inputShape;
  const images = g.input(GRAPH_IO.images, TensorDataType.FLOAT, ['batch', H, W, C]);
  const forward = forwardEmitter(g, graph.constants);
  const precision = options.precision ?? 'fp32';
  const input = graph.input.layout === 'nchw' ? g.op('Transpose', [images], { attrs: { perm: { ints: [0, 3, 1, 2] } }, name: 'to_nchw' }) : images;
  forward.bind(graph.input.name, input);

  const poolIndices = new Map<string, string>();
  for (const node of split.trunk) forward.emit(node, { precision });
  for (const node of split.head) {
    const outs = forward.emit(node, { indices: explain && node.op === 'MaxPool' });
    if (node.op === 'MaxPool' && outs[1]) poolIndices.set(node.name, outs[1]);
  }

  const { numClasses, activation } = split.output;
  const logits = forward.value(split.output.logits);
  const probs = g.op(activation === 'sigmoid' ? 'Sigmoid' : 'Softmax', [logits], { name: 'probabilities_op', ...(activation === 'sigmoid' ? {} : { attrs: { axis: { int: 1 } } }) });
  g.output(logits, GRAPH_IO.logits, TensorDataType.FLOAT, ['batch', numClasses]);
  g.output(probs, GRAPH_IO.probabilities, TensorDataType.FLOAT, ['batch', numClasses]);

  const [k, h, w] = split.targetShape;
  g.output(forward.value(split.target), GRAPH_IO.activation, TensorDataType.FLOAT, ['batch', k, h, w]);
  if (explain) {
    const targets = g.input(GRAPH_IO.targets, TensorDataType.INT64, ['batch', 'targets']);
    const scoreIsProb = g.input(GRAPH_IO.scoreIsProb, TensorDataType.BOOL, [1]);
    const dims = batchDims(g, images, targets);
    const { classes, scores, grad } = emitScoreGradient(g, { logits, probs, targets, scoreIsProb, numClasses, sigmoid: activation === 'sigmoid' });
    g.output(classes, GRAPH_IO.classes, TensorDataType.INT64, ['batch', 'targets']);
    g.output(scores, GRAPH_IO.scores, TensorDataType.FLOAT, ['batch', 'targets']);
    const gradA = emitHeadBackward({ g, graph, split, value: forward.value, poolIndices, n: dims.n, t: dims.t }, grad);
    // max |dS/dA| per (image, target): the shared post-processing tells a vanishing gradient apart.
    // (A spatially constant gradient is [N,T,K,1,1]: the same maximum, over fewer values.)
    const gradMax = g.op('ReduceMax', [g.op('Abs', [gradA.grad], { name: 'grad_abs' })], {
      name: 'grad_max_abs',
      attrs: { axes: { ints: [2, 3, 4] }, keepdims: { int: 0 } },
    });
    g.output(gradMax, GRAPH_IO.gradMaxAbs, TensorDataType.FLOAT, ['batch', 'targets']);
    const cam = emitCam(g, method, forward.value(split.target), gradA, [k, h, w]);
    g.output(cam, GRAPH_IO.cam, TensorDataType.FLOAT, ['batch', 'targets', h, w]);
  }

  const bytes = g.toBytes({
    graphName: `${graph.name}_${options.kind}`,
    producerVersion: options.producerVersion ?? `compiler-${COMPILER_VERSION}`,
    docString: `${graph.name} ${options.kind} graph, CAM layer ${split.target}, opset ${OPSET}`,
    metadata: { weightsHash: graph.weightsHash, layer: split.target, compilerVersion: String(COMPILER_VERSION), precision },
  });
  return { bytes, layer: split.target, camHeight: h, camWidth: w, numClasses, method: explain ? method : null, precision };
}

interface BatchDims {
  /** [N] and [T] as 1-D int64 tensors, for building runtime shapes. */
  n: string;
  t: string;
}

function batchDims(g: GraphBuilder, images: string, targets: string): BatchDims {
  const n = g.op('Shape', [images], { name: 'batch_n', attrs: { start: { int: 0 }, end: { int: 1 } } });
  const t = g.op('Shape', [targets], { name: 'batch_t', attrs: { start: { int: 1 }, end: { int: 2 } } });
  return { n, t };
}

function emitScoreGradient(
  g: GraphBuilder,
  io: { logits: string; probs: string; targets: string; scoreIsProb: string; numClasses: number; sigmoid: boolean },
): { classes: string; scores: string; grad: string } {
  const { logits, probs, targets, scoreIsProb, numClasses } = io;
  // Resolve rank targets (−r → r-th best class). K = min(T, classes) keeps TopK valid for any T.
  const t = g.op('Shape', [targets], { name: 'targets_t', attrs: { start: { int: 1 }, end: { int: 2 } } });
  const k = g.op('Min', [t, g.int64([numClasses])], { name: 'topk_k' });
  const [, topIndices] = g.opMulti('TopK', [probs, k], {
    outputs: 2,
    name: 'topk',
    attrs: { axis: { int: 1 }, largest: { int: 1 }, sorted: { int: 1 } },
  });
  const zero = g.int64([0], []);
  const isRank = g.op('Less', [targets, zero], { name: 'is_rank' });
  const rank = g.op('Sub', [g.op('Neg', [targets], { name: 'neg_targets' }), g.int64([1], [])], { name: 'rank' });
  const safeRank = g.op('Where', [isRank, rank, zero], { name: 'safe_rank' });
  const ranked = g.op('GatherElements', [topIndices, safeRank], { name: 'ranked', attrs: { axis: { int: 1 } } });
  const classes = g.op('Where', [isRank, ranked, targets], { name: 'classes' });

  // Probability score: dp_c/dz = p_c·(onehot − p), the softmax Jacobian's row c.
  const classIota = g.int64(Array.from({ length: numClasses }, (_, i) => i), [numClasses]);
  const classes3 = g.op('Unsqueeze', [classes, g.int64([2])], { name: 'classes3' });
  const onehot = g.op('Cast', [g.op('Equal', [classes3, classIota], { name: 'onehot_eq' })], {
    name: 'onehot',
    attrs: { to: { int: TensorDataType.FLOAT } },
  });
  const pc = g.op('GatherElements', [probs, classes], { name: 'p_c', attrs: { axis: { int: 1 } } });
  const lc = g.op('GatherElements', [logits, classes], { name: 'logit_c', attrs: { axis: { int: 1 } } });
  const p3 = g.op('Unsqueeze', [probs, g.int64([1])], { name: 'p3' });
  const pc3 = g.op('Unsqueeze', [pc, g.int64([2])], { name: 'p_c3' });
  // Sigmoid (multi-label): dp_c/dz = onehot·p_c·(1 − p_c); classes do not compete.
  const probGrad = io.sigmoid
    ? g.op('Mul', [onehot, g.op('Mul', [pc3, g.op('Sub', [g.float([1], []), pc3], { name: 'one_minus_p_c' })], { name: 'sigmoid_slope' })], { name: 'prob_grad' })
    : g.op('Mul', [pc3, g.op('Sub', [onehot, p3], { name: 'onehot_minus_p' })], { name: 'prob_grad' });
  const grad = g.op('Where', [scoreIsProb, probGrad, onehot], { name: 'dscore_dlogits' });
  const scores = g.op('Where', [scoreIsProb, pc, lc], { name: 'score' });
  return { classes, scores, grad };
}

/**
 * The CAM formula of design.md §4 on A [N,K,h,w] and dS/dA → ReLU'd maps [N,T,h,w]. dS/dA is
 * [N,T,K,h,w], or [N,T,K,1,1] when it is the same at every position (the target reaches the logits
 * only through a global average pool: differentiate.ts then skips the broadcast), where spatial
 * means are the value itself and spatial sums h·w times it.
 */
function emitCam(g: GraphBuilder, method: CamMethod, activation: string, gradient: HeadGradient, [k, h, w]: [number, number, number]): string {
  const stem = camStem(method);
  const grad = gradient.grad;
  const constant = gradient.spatiallyConstant;
  const a = g.op('Unsqueeze', [activation, g.int64([1])], { name: `${stem}_a` });
  // Constants are created on first use: an unused initializer makes ONNX Runtime log a warning.
  const channels = (): string => g.int64([2]);
  const eps = (): string => g.float([CAM_EPSILON], []);
  const sumSpatial = (v: string, name: string): string => g.op('ReduceSum', [v, g.int64([3, 4])], { name, attrs: { keepdims: { int: 1 } } });
  /** Σ_k weights·A_k. Per-channel weights [N,T,K,1,1]: one MatMul [N,T,K]·[N,K,h·w] (a fifth of Mul + ReduceSum over [N,T,K,h,w] at 960x7x7). */
  const weighted = (weights: string, perChannel: boolean): string => {
    if (!perChannel) return g.op('ReduceSum', [g.op('Mul', [weights, a], { name: `${stem}_wa` }), channels()], { name: `${stem}_sum`, attrs: { keepdims: { int: 0 } } });
    const rows = g.op('Reshape', [weights, g.int64([0, 0, k])], { name: `${stem}_w_rows` });
    const planes = g.op('Reshape', [activation, g.int64([0, k, h * w])], { name: `${stem}_a_planes` });
    return g.op('Reshape', [g.op('MatMul', [rows, planes], { name: `${stem}_sum` }), g.int64([0, 0, h, w])], { name: `${stem}_map_hw` });
  };

  let map: string;
  switch (method) {
    case 'gradcam':
      map = weighted(constant ? grad : g.op('ReduceMean', [grad], { name: `${stem}_w`, attrs: { axes: { ints: [3, 4] }, keepdims: { int: 1 } } }), true);
      break;
    case 'hirescam':
      map = constant ? weighted(grad, true) : g.op('ReduceSum', [g.op('Mul', [grad, a], { name: `${stem}_ga` }), channels()], { name: `${stem}_sum`, attrs: { keepdims: { int: 0 } } });
      break;
    case 'xgradcam': {
      const aSum = sumSpatial(a, `${stem}_asum`);
      const num = constant ? g.op('Mul', [grad, aSum], { name: `${stem}_num` }) : sumSpatial(g.op('Mul', [grad, a], { name: `${stem}_ga` }), `${stem}_num`);
      const den = g.op('Add', [aSum, eps()], { name: `${stem}_den` });
      map = weighted(g.op('Div', [num, den], { name: `${stem}_w` }), true);
      break;
    }
    case 'layercam':
      map = weighted(g.op('Relu', [grad], { name: `${stem}_relu_g` }), constant);
      break;
    case 'gradcam++': {
      const g2 = g.op('Mul', [grad, grad], { name: `${stem}_g2` });
      const g3 = g.op('Mul', [g2, grad], { name: `${stem}_g3` });
      const aSum = sumSpatial(a, `${stem}_asum`);
      const den = g.op('Add', [g.op('Add', [g.op('Mul', [g2, g.float([2], [])], { name: `${stem}_2g2` }), g.op('Mul', [aSum, g3], { name: `${stem}_ag3` })], { name: `${stem}_den0` }), eps()], { name: `${stem}_den` });
      const alphaRaw = g.op('Div', [g2, den], { name: `${stem}_alpha_raw` });
      const nonzero = g.op('Not', [g.op('Equal', [grad, g.float([0], [])], { name: `${stem}_g0` })], { name: `${stem}_gnz` });
      const alpha = g.op('Where', [nonzero, alphaRaw, g.float([0], [])], { name: `${stem}_alpha` });
      const terms = g.op('Mul', [alpha, g.op('Relu', [grad], { name: `${stem}_relu_g` })], { name: `${stem}_ag` });
      const weights = constant ? g.op('Mul', [terms, g.float([h * w], [])], { name: `${stem}_w` }) : sumSpatial(terms, `${stem}_w`);
      map = weighted(weights, true);
      break;
    }
    case 'eigencam':
    case 'scorecam':
      throw new ModelError(`${method} reads no gradient and is not compiled into the graph (gradient-free/explain.ts runs it)`);
  }
  return g.op('Relu', [map], { name: `${stem}_map` });
}
