/**
 * ModelSpec → ONNX graph with Grad-CAM compiled in.
 *
 * Forward: NHWC input, transposed once to NCHW (ONNX Runtime's native conv layout); HWIO kernels
 * become OIHW at compile time. Backward: only the head (target layer → logits) is differentiated,
 * in closed form, as a batch of N×T rows (N images, T targets each):
 *   dS/dlogits = onehot (logit score) or p_c·(onehot − p) (probability score, softmax Jacobian row)
 *   dense      g_in = g_out · Wᵀ               (Gemm transB on the forward weight: no second copy)
 *   ReLU       g   *= [y > 0]                 (mask from the forward activation)
 *   flatten    reshape                        (fc rows are permuted at compile time, see below)
 *   GAP        broadcast / (H·W)
 *   max-pool   upsample g, keep it only where the input position is the window's argmax, taken
 *              from MaxPool's `Indices` output. Both ONNX Runtime and TF keep the first maximum
 *              of a window in row-major order, so ties (common: ReLU zeros) route like TF's.
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
import type { Activation, Conv2DLayerSpec, MaxPool2DLayerSpec, ModelSpec } from '../../model/spec.js';
import { GraphBuilder, OPSET } from './graph-builder.js';
import { TensorDataType } from './onnx-proto.js';
import { ONNX_CAM_METHODS, isOnnxSupported } from './support.js';

/** Bump when the emitted graph changes, so cached graphs from older code are not reused. */
export const COMPILER_VERSION = 3;

/** Names of the graph's inputs and outputs (the engine's side of the contract). */
export const GRAPH_IO = {
  images: 'images',
  targets: 'targets',
  scoreIsProb: 'score_is_prob',
  method: 'method',
  cam: 'cam',
  logits: 'logits',
  probabilities: 'probabilities',
  classes: 'classes',
  scores: 'scores',
  gradMaxAbs: 'grad_max_abs',
} as const;

/** Node-name stem of a method's CAM sub-graph. */
function camStem(method: CamMethod): string {
  return `cam_${method.replace('++', 'pp')}`;
}

/** Stabiliser of the XGrad-CAM and Grad-CAM++ divisions (pytorch-grad-cam uses the same value). */
export const CAM_EPSILON = 1e-7;

export interface CompileOptions {
  /** The resolved target layer name. */
  layer: string;
  /** `explain`: the full Grad-CAM graph; `forward`: logits and probabilities only. */
  kind: 'explain' | 'forward';
  /** Methods to emit outputs for (explain graphs). Default: every supported method. */
  methods?: readonly CamMethod[];
  /** Recorded in the model's producer_version. */
  producerVersion?: string;
}

export interface CompiledGraph {
  bytes: Uint8Array;
  layer: string;
  /** CAM grid size (the target layer's spatial size). */
  camHeight: number;
  camWidth: number;
  numClasses: number;
  methods: CamMethod[];
}

/** NCHW shape of one example, batch axis left out. */
type Chw = [number, number, number];

type HeadStep =
  | { kind: 'relu'; output: string }
  | { kind: 'pool'; indices: string; input: Chw; output: Chw; stride: [number, number] }
  | { kind: 'flatten'; input: Chw }
  | { kind: 'gap'; input: Chw }
  | { kind: 'dense'; weight: string; inFeatures: number; outFeatures: number };

export function compileGraph(spec: ModelSpec, options: CompileOptions): CompiledGraph {
  const methods = [...(options.methods ?? ONNX_CAM_METHODS)];
  for (const m of methods) {
    const support = isOnnxSupported(spec, m, options.layer);
    if (!support.ok) throw new ModelError(`cannot compile ${spec.name} for ONNX: ${support.reason}`);
  }
  if (methods.length === 0) {
    const support = isOnnxSupported(spec, 'gradcam', options.layer);
    if (!support.ok) throw new ModelError(`cannot compile ${spec.name} for ONNX: ${support.reason}`);
  }
  const g = new GraphBuilder();
  const [H, W, C] = spec.inputShape;
  const images = g.input(GRAPH_IO.images, TensorDataType.FLOAT, ['batch', H, W, C]);
  let x = g.op('Transpose', [images], { attrs: { perm: { ints: [0, 3, 1, 2] } }, name: 'to_nchw' });
  let shape: Chw = [C, H, W];

  const targetIndex = spec.layers.findIndex((l) => l.name === options.layer);
  const explain = options.kind === 'explain';
  let camInput: { value: string; shape: Chw } | undefined;
  const head: HeadStep[] = [];
  let flatFrom: Chw | null = null; // set by flatten, consumed by the next dense
  let features = 0;
  let logits: string | undefined;

  for (let i = 0; i < spec.layers.length; i++) {
    const layer = spec.layers[i];
    const inHead = explain && i > targetIndex;
    switch (layer.type) {
      case 'input':
      case 'dropout':
        break;
      case 'conv2d':
        ({ value: x, shape } = emitConv(g, layer, x, shape));
        x = emitActivation(g, layer.activation, x, layer.name);
        break;
      case 'maxpool2d': {
        const out = pooledShape(layer, shape);
        if (inHead) {
          const [y, indices] = g.opMulti('MaxPool', [x], { outputs: 2, name: layer.name, attrs: poolAttrs(layer, shape) });
          head.push({ kind: 'pool', indices, input: shape, output: out, stride: layer.strides });
          x = y;
        } else {
          x = g.op('MaxPool', [x], { name: layer.name, attrs: poolAttrs(layer, shape) });
        }
        shape = out;
        break;
      }
      case 'activation':
        if (layer.activation === 'softmax') {
          logits = x;
        } else {
          x = emitActivation(g, layer.activation, x, layer.name);
          if (inHead && layer.activation === 'relu') head.push({ kind: 'relu', output: x });
        }
        break;
      case 'flatten':
        // Keras flattens NHWC in (h, w, c) order; the graph flattens NCHW in (c, h, w) order and
        // the next dense layer's rows are permuted to match, so no runtime transpose is needed.
        x = g.op('Flatten', [x], { name: layer.name, attrs: { axis: { int: 1 } } });
        flatFrom = shape;
        features = shape[0] * shape[1] * shape[2];
        if (inHead) head.push({ kind: 'flatten', input: shape });
        break;
      case 'gap':
        x = g.op('GlobalAveragePool', [x], { name: layer.name });
        x = g.op('Flatten', [x], { name: `${layer.name}_flat`, attrs: { axis: { int: 1 } } });
        features = shape[0];
        if (inHead) head.push({ kind: 'gap', input: shape });
        break;
      case 'dense': {
        const kernel = flatFrom ? permuteFlattenRows(layer.kernel, flatFrom, layer.units) : layer.kernel;
        flatFrom = null;
        if (kernel.length !== features * layer.units) {
          throw new ModelError(`layer ${layer.name}: kernel has ${kernel.length} values, expected ${features}x${layer.units}`);
        }
        const weight = g.floatInitializer(`${layer.name}_kernel`, kernel, [features, layer.units]);
        const inputs = [x, weight];
        if (layer.bias) inputs.push(g.floatInitializer(`${layer.name}_bias`, layer.bias, [layer.units]));
        x = g.op('Gemm', inputs, { name: layer.name });
        if (inHead) head.push({ kind: 'dense', weight, inFeatures: features, outFeatures: layer.units });
        features = layer.units;
        if (layer.activation === 'softmax') {
          logits = x;
        } else {
          x = emitActivation(g, layer.activation, x, layer.name);
          if (inHead && layer.activation === 'relu') head.push({ kind: 'relu', output: x });
        }
        break;
      }
    }
    if (i === targetIndex) camInput = { value: x, shape };
  }

  // A linear final dense layer already outputs logits (support.ts admits nothing else without a softmax).
  logits ??= x;
  const numClasses = features;
  const probs = g.op('Softmax', [logits], { name: 'softmax', attrs: { axis: { int: 1 } } });
  g.output(logits, GRAPH_IO.logits, TensorDataType.FLOAT, ['batch', numClasses]);
  g.output(probs, GRAPH_IO.probabilities, TensorDataType.FLOAT, ['batch', numClasses]);

  if (!camInput) throw new ModelError(`cannot compile ${spec.name} for ONNX: no layer named ${options.layer}`);
  const [, h, w] = camInput.shape;
  if (explain) {
    const targets = g.input(GRAPH_IO.targets, TensorDataType.INT64, ['batch', 'targets']);
    const scoreIsProb = g.input(GRAPH_IO.scoreIsProb, TensorDataType.BOOL, [1]);
    const dims = batchDims(g, images, targets);
    const { classes, scores, grad } = emitScoreGradient(g, { logits, probs, targets, scoreIsProb, numClasses });
    g.output(classes, GRAPH_IO.classes, TensorDataType.INT64, ['batch', 'targets']);
    g.output(scores, GRAPH_IO.scores, TensorDataType.FLOAT, ['batch', 'targets']);
    const gradA = emitHeadBackward(g, head, grad, dims);
    // max |dS/dA| per (image, target): the shared post-processing tells a vanishing gradient apart.
    const gradMax = g.op('ReduceMax', [g.op('Abs', [gradA], { name: 'grad_abs' })], {
      name: 'grad_max_abs',
      attrs: { axes: { ints: [2, 3, 4] }, keepdims: { int: 0 } },
    });
    g.output(gradMax, GRAPH_IO.gradMaxAbs, TensorDataType.FLOAT, ['batch', 'targets']);
    // ONNX Runtime runs every node whatever is fetched, so the methods are branches of nested
    // `If` nodes keyed by the `method` input (an index into `methods`): one session, one copy of
    // the weights, and only the requested formula runs.
    const method = g.input(GRAPH_IO.method, TensorDataType.INT64, [1]);
    const cam = emitMethodSelect(g, methods, 0, method, camInput.value, gradA, [h, w]);
    g.output(cam, GRAPH_IO.cam, TensorDataType.FLOAT, ['batch', 'targets', h, w]);
  }

  const bytes = g.toBytes({
    graphName: `${spec.name}_${options.kind}`,
    producerVersion: options.producerVersion ?? `compiler-${COMPILER_VERSION}`,
    docString: `${spec.name} ${options.kind} graph, CAM layer ${options.layer}, opset ${OPSET}`,
    metadata: { weightsHash: spec.weightsHash, layer: options.layer, compilerVersion: String(COMPILER_VERSION) },
  });
  return { bytes, layer: options.layer, camHeight: h, camWidth: w, numClasses, methods: explain ? methods : [] };
}

function emitConv(g: GraphBuilder, layer: Conv2DLayerSpec, x: string, [cin, hin, win]: Chw): { value: string; shape: Chw } {
  const [kh, kw] = layer.kernelSize;
  const [sh, sw] = layer.strides;
  if (layer.kernel.length !== kh * kw * cin * layer.filters) {
    throw new ModelError(`layer ${layer.name}: kernel has ${layer.kernel.length} values, expected ${kh}x${kw}x${cin}x${layer.filters}`);
  }
  const weight = g.floatInitializer(`${layer.name}_kernel`, hwioToOihw(layer.kernel, kh, kw, cin, layer.filters), [layer.filters, cin, kh, kw]);
  const inputs = [x, weight];
  if (layer.bias) inputs.push(g.floatInitializer(`${layer.name}_bias`, layer.bias, [layer.filters]));
  const [padH, outH] = tfPadding(layer.padding, hin, kh, sh);
  const [padW, outW] = tfPadding(layer.padding, win, kw, sw);
  const value = g.op('Conv', inputs, {
    name: layer.name,
    attrs: { kernel_shape: { ints: [kh, kw] }, strides: { ints: [sh, sw] }, pads: { ints: [padH[0], padW[0], padH[1], padW[1]] } },
  });
  return { value, shape: [layer.filters, outH, outW] };
}

function poolAttrs(layer: MaxPool2DLayerSpec, [, hin, win]: Chw): Record<string, { ints: number[] }> {
  const [padH] = tfPadding(layer.padding, hin, layer.poolSize[0], layer.strides[0]);
  const [padW] = tfPadding(layer.padding, win, layer.poolSize[1], layer.strides[1]);
  return { kernel_shape: { ints: layer.poolSize }, strides: { ints: layer.strides }, pads: { ints: [padH[0], padW[0], padH[1], padW[1]] } };
}

function pooledShape(layer: MaxPool2DLayerSpec, [c, hin, win]: Chw): Chw {
  return [c, tfPadding(layer.padding, hin, layer.poolSize[0], layer.strides[0])[1], tfPadding(layer.padding, win, layer.poolSize[1], layer.strides[1])[1]];
}

/** TF's padding rule: 'same' pads to ceil(in/stride) outputs, the extra pixel going after. */
function tfPadding(padding: 'same' | 'valid', size: number, kernel: number, stride: number): [[number, number], number] {
  if (padding === 'valid') return [[0, 0], Math.floor((size - kernel) / stride) + 1];
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + kernel - size, 0);
  return [[Math.floor(total / 2), total - Math.floor(total / 2)], out];
}

function emitActivation(g: GraphBuilder, activation: Activation, x: string, name: string): string {
  switch (activation) {
    case 'relu':
      return g.op('Relu', [x], { name: `${name}_relu` });
    case 'sigmoid':
      return g.op('Sigmoid', [x], { name: `${name}_sigmoid` });
    case 'linear':
      return x;
    case 'softmax':
      throw new ModelError(`layer ${name}: softmax is only supported as the classifier's activation`);
  }
}

/** HWIO (Keras) → OIHW (ONNX). */
export function hwioToOihw(kernel: Float32Array, kh: number, kw: number, cin: number, cout: number): Float32Array {
  const out = new Float32Array(kernel.length);
  for (let y = 0; y < kh; y++)
    for (let x = 0; x < kw; x++)
      for (let i = 0; i < cin; i++) {
        const src = ((y * kw + x) * cin + i) * cout;
        for (let o = 0; o < cout; o++) out[((o * cin + i) * kh + y) * kw + x] = kernel[src + o];
      }
  return out;
}

/** Reorder a dense kernel's rows from Keras' (h, w, c) flatten order to NCHW's (c, h, w). */
export function permuteFlattenRows(kernel: Float32Array, [c, h, w]: Chw, units: number): Float32Array {
  if (h * w === 1) return kernel;
  const out = new Float32Array(kernel.length);
  for (let y = 0; y < h; y++)
    for (let x = 0; x < w; x++)
      for (let k = 0; k < c; k++) {
        const src = ((y * w + x) * c + k) * units;
        const dst = ((k * h + y) * w + x) * units;
        out.set(kernel.subarray(src, src + units), dst);
      }
  return out;
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

/** A runtime shape [N, T, ...rest]. */
function ntShape(g: GraphBuilder, dims: BatchDims, rest: number[]): string {
  return g.op('Concat', [dims.n, dims.t, g.int64(rest)], { name: 'nt_shape', attrs: { axis: { int: 0 } } });
}

function emitScoreGradient(
  g: GraphBuilder,
  io: { logits: string; probs: string; targets: string; scoreIsProb: string; numClasses: number },
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
  const probGrad = g.op('Mul', [pc3, g.op('Sub', [onehot, p3], { name: 'onehot_minus_p' })], { name: 'prob_grad' });
  const grad = g.op('Where', [scoreIsProb, probGrad, onehot], { name: 'dscore_dlogits' });
  const scores = g.op('Where', [scoreIsProb, pc, lc], { name: 'score' });
  return { classes, scores, grad };
}

/** Walk the head backwards from dS/dlogits [N,T,classes] to dS/dA [N,T,K,h,w]. */
function emitHeadBackward(g: GraphBuilder, head: HeadStep[], gradLogits: string, dims: BatchDims): string {
  let grad = gradLogits;
  for (const step of [...head].reverse()) {
    switch (step.kind) {
      case 'relu': {
        const positive = g.op('Greater', [step.output, g.float([0], [])], { name: 'relu_pos' });
        const mask = g.op('Cast', [positive], { name: 'relu_mask', attrs: { to: { int: TensorDataType.FLOAT } } });
        grad = g.op('Mul', [grad, g.op('Unsqueeze', [mask, g.int64([1])], { name: 'relu_mask_nt' })], { name: 'relu_grad' });
        break;
      }
      case 'dense': {
        const flat = g.op('Reshape', [grad, g.int64([-1, step.outFeatures])], { name: 'dense_grad_rows' });
        const back = g.op('Gemm', [flat, step.weight], { name: 'dense_grad', attrs: { transB: { int: 1 } } });
        grad = g.op('Reshape', [back, ntShape(g, dims, [step.inFeatures])], { name: 'dense_grad_nt' });
        break;
      }
      case 'flatten':
        grad = g.op('Reshape', [grad, ntShape(g, dims, step.input)], { name: 'flatten_grad' });
        break;
      case 'gap': {
        const [c, h, w] = step.input;
        const col = g.op('Reshape', [grad, ntShape(g, dims, [c, 1, 1])], { name: 'gap_grad_col' });
        const spread = g.op('Expand', [col, g.int64([1, 1, 1, h, w])], { name: 'gap_grad_spread' });
        grad = g.op('Mul', [spread, g.float([1 / (h * w)], [])], { name: 'gap_grad' });
        break;
      }
      case 'pool':
        grad = emitPoolBackward(g, step, grad, dims);
        break;
    }
  }
  return grad;
}

/**
 * Max-pool backward for non-overlapping s×s windows, without materialising broadcasts (ORT's
 * Expand is slow): from MaxPool's flat `Indices` derive each window's argmax offset
 * k = dy·s + dx, multiply the pooled gradient by a one-hot over the s² offsets, and let
 * DepthToSpace (CRD) put offset k of window (y, x) at (y·s + dy, x·s + dx). Rows and columns a
 * 'valid' pool dropped get zero gradient (Pad).
 */
function emitPoolBackward(
  g: GraphBuilder,
  step: Extract<HeadStep, { kind: 'pool' }>,
  grad: string,
  dims: BatchDims,
): string {
  const [c, h, w] = step.input;
  const [, ph, pw] = step.output;
  const s = step.stride[0];
  const uh = ph * s;
  const uw = pw * s;

  // Indices are flat over the NCHW input: row = (i mod h·w) div w, column = i mod w.
  const within = g.op('Mod', [step.indices, g.int64([h * w], [])], { name: 'pool_idx_within' });
  const row = g.op('Div', [within, g.int64([w], [])], { name: 'pool_idx_row' });
  const col = g.op('Mod', [step.indices, g.int64([w], [])], { name: 'pool_idx_col' });
  const rowStart = g.int64(Array.from({ length: ph }, (_, y) => y * s), [ph, 1]);
  const colStart = g.int64(Array.from({ length: pw }, (_, x) => x * s), [1, pw]);
  const dy = g.op('Sub', [row, rowStart], { name: 'pool_dy' });
  const dx = g.op('Sub', [col, colStart], { name: 'pool_dx' });
  const offset = g.op('Add', [g.op('Mul', [dy, g.int64([s], [])], { name: 'pool_dy_s' }), dx], { name: 'pool_offset' });
  // [N,C,1,ph,pw] == [s²,1,1] → one-hot [N,C,s²,ph,pw]
  const offset5 = g.op('Unsqueeze', [offset, g.int64([2])], { name: 'pool_offset5' });
  const offsets = g.int64(Array.from({ length: s * s }, (_, k) => k), [s * s, 1, 1]);
  const onehot = g.op('Cast', [g.op('Equal', [offset5, offsets], { name: 'pool_offset_eq' })], {
    name: 'pool_onehot',
    attrs: { to: { int: TensorDataType.FLOAT } },
  });

  // [N,T,C,1,ph,pw] · [N,1,C,s²,ph,pw] → [N·T, C·s², ph, pw] → DepthToSpace → [N·T, C, uh, uw]
  const g6 = g.op('Unsqueeze', [grad, g.int64([3])], { name: 'pool_grad6' });
  const mask6 = g.op('Unsqueeze', [onehot, g.int64([1])], { name: 'pool_onehot6' });
  const spread = g.op('Mul', [g6, mask6], { name: 'pool_grad_spread' });
  const depth = g.op('Reshape', [spread, g.int64([-1, c * s * s, ph, pw])], { name: 'pool_grad_depth' });
  const placed = g.op('DepthToSpace', [depth], { name: 'pool_grad_place', attrs: { blocksize: { int: s }, mode: { string: 'CRD' } } });
  let out = g.op('Reshape', [placed, ntShape(g, dims, [c, uh, uw])], { name: 'pool_grad' });
  if (uh !== h || uw !== w) out = g.op('Pad', [out, g.int64([0, 0, 0, 0, 0, 0, 0, 0, h - uh, w - uw])], { name: 'pool_grad_pad' });
  return out;
}

/** CAM of `methods[index]` if the `method` input equals `index`, else of a later method. */
function emitMethodSelect(
  g: GraphBuilder,
  methods: readonly CamMethod[],
  index: number,
  method: string,
  activation: string,
  grad: string,
  [h, w]: [number, number],
): string {
  if (index === methods.length - 1) return emitCam(g, methods[index], activation, grad);
  const branch = (build: (sub: GraphBuilder) => string, name: string): { graph: ReturnType<GraphBuilder['toGraph']> } => {
    const sub = g.subgraph();
    sub.output(build(sub), `${name}_out`, TensorDataType.FLOAT, ['batch', 'targets', h, w]);
    return { graph: sub.toGraph(name) };
  };
  const stem = camStem(methods[index]);
  const cond = g.op('Equal', [method, g.int64([index])], { name: `${stem}_selected` });
  return g.op('If', [cond], {
    name: `${stem}_if`,
    attrs: {
      then_branch: branch((sub) => emitCam(sub, methods[index], activation, grad), `${stem}_then`),
      else_branch: branch((sub) => emitMethodSelect(sub, methods, index + 1, method, activation, grad, [h, w]), `${stem}_else`),
    },
  });
}

/** The CAM formulas of design.md §4 on A [N,K,h,w] and G [N,T,K,h,w] → ReLU'd maps [N,T,h,w]. */
function emitCam(g: GraphBuilder, method: CamMethod, activation: string, grad: string): string {
  const stem = camStem(method);
  const a = g.op('Unsqueeze', [activation, g.int64([1])], { name: `${stem}_a` });
  // Constants are created on first use: an unused initializer makes ONNX Runtime log a warning.
  const channels = (): string => g.int64([2]);
  const eps = (): string => g.float([CAM_EPSILON], []);
  const sumSpatial = (v: string, name: string): string => g.op('ReduceSum', [v, g.int64([3, 4])], { name, attrs: { keepdims: { int: 1 } } });
  const weighted = (weights: string): string =>
    g.op('ReduceSum', [g.op('Mul', [weights, a], { name: `${stem}_wa` }), channels()], { name: `${stem}_sum`, attrs: { keepdims: { int: 0 } } });

  let map: string;
  switch (method) {
    case 'gradcam': {
      const weights = g.op('ReduceMean', [grad], { name: `${stem}_w`, attrs: { axes: { ints: [3, 4] }, keepdims: { int: 1 } } });
      map = weighted(weights);
      break;
    }
    case 'hirescam':
      map = g.op('ReduceSum', [g.op('Mul', [grad, a], { name: `${stem}_ga` }), channels()], { name: `${stem}_sum`, attrs: { keepdims: { int: 0 } } });
      break;
    case 'xgradcam': {
      const num = sumSpatial(g.op('Mul', [grad, a], { name: `${stem}_ga` }), `${stem}_num`);
      const den = g.op('Add', [sumSpatial(a, `${stem}_asum`), eps()], { name: `${stem}_den` });
      map = weighted(g.op('Div', [num, den], { name: `${stem}_w` }));
      break;
    }
    case 'layercam':
      map = weighted(g.op('Relu', [grad], { name: `${stem}_relu_g` }));
      break;
    case 'gradcam++': {
      const g2 = g.op('Mul', [grad, grad], { name: `${stem}_g2` });
      const g3 = g.op('Mul', [g2, grad], { name: `${stem}_g3` });
      const aSum = sumSpatial(a, `${stem}_asum`);
      const den = g.op('Add', [g.op('Add', [g.op('Mul', [g2, g.float([2], [])], { name: `${stem}_2g2` }), g.op('Mul', [aSum, g3], { name: `${stem}_ag3` })], { name: `${stem}_den0` }), eps()], { name: `${stem}_den` });
      const alphaRaw = g.op('Div', [g2, den], { name: `${stem}_alpha_raw` });
      const nonzero = g.op('Not', [g.op('Equal', [grad, g.float([0], [])], { name: `${stem}_g0` })], { name: `${stem}_gnz` });
      const alpha = g.op('Where', [nonzero, alphaRaw, g.float([0], [])], { name: `${stem}_alpha` });
      const weights = sumSpatial(g.op('Mul', [alpha, g.op('Relu', [grad], { name: `${stem}_relu_g` })], { name: `${stem}_ag` }), `${stem}_w`);
      map = weighted(weights);
      break;
    }
  }
  return g.op('Relu', [map], { name: `${stem}_map` });
}
