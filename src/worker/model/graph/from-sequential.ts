/**
 * A sequential Keras model (`ModelSpec`, from HDF5 or TF.js Layers files) as a graph. Each Keras
 * layer's output value carries the layer's name (`block5_conv3` is the ReLU'd conv output, as in
 * Keras), so `--layer` keeps accepting Keras layer names.
 *
 * Keras is channels-last; the graph transposes the NHWC input to NCHW once, converts HWIO conv
 * kernels to OIHW and resolves TF's 'same' padding into explicit pads. `flatten` transposes back
 * to NHWC before flattening, which keeps Keras' (h, w, c) order, so dense kernels are used as
 * stored (Gemm with `(in, out)` weights) and no 400 MB fc1 copy is made for VGG16.
 */
import { ModelError } from '../../../shared/errors.js';
import { describeSpec } from '../architecture.js';
import type { Activation, ModelSpec } from '../spec.js';
import type { Attr, ConstTensor, GraphNode, ModelGraph } from './ir.js';

/** TF's padding rule: 'same' pads to ceil(in/stride) outputs, the extra pixel going after. */
export function tfSamePads(padding: 'same' | 'valid', size: number, kernel: number, stride: number): [number, number] {
  if (padding === 'valid') return [0, 0];
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + kernel - size, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
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

const ACTIVATION_OPS: Record<Exclude<Activation, 'linear'>, string> = { relu: 'Relu', sigmoid: 'Sigmoid', softmax: 'Softmax' };

export function graphFromSequential(spec: ModelSpec): ModelGraph {
  const infos = describeSpec(spec); // Keras-level shape checks, with the layer's name in errors
  const nodes: GraphNode[] = [];
  const constants: Record<string, ConstTensor> = {};
  const inputName = spec.layers[0]?.type === 'input' ? spec.layers[0].name : 'input';
  const add = (name: string, op: string, inputs: string[], output: string, attrs: Record<string, Attr> = {}): string => {
    nodes.push({ name, op, inputs, outputs: [output], attrs });
    return output;
  };
  const activate = (layer: string, activation: Activation, x: string): string => {
    if (activation === 'linear') return x;
    return add(`${layer}/${ACTIVATION_OPS[activation]}`, ACTIVATION_OPS[activation], [x], layer, activation === 'softmax' ? { axis: { int: -1 } } : {});
  };
  let x = add('to_nchw', 'Transpose', [inputName], `${inputName}/nchw`, { perm: { ints: [0, 3, 1, 2] } });
  let info = 0;
  for (const layer of spec.layers) {
    if (layer.type === 'input') continue;
    const inShape = info === 0 ? spec.inputShape : infos[info - 1]!.outputShape;
    info++;
    switch (layer.type) {
      case 'conv2d': {
        const [kh, kw] = layer.kernelSize;
        const cin = inShape[2]!;
        const kernel = `${layer.name}/kernel`;
        constants[kernel] = { dtype: 'float32', dims: [layer.filters, cin, kh, kw], data: hwioToOihw(layer.kernel, kh, kw, cin, layer.filters) };
        const inputs = [x, kernel];
        if (layer.bias) {
          constants[`${layer.name}/bias`] = { dtype: 'float32', dims: [layer.filters], data: layer.bias };
          inputs.push(`${layer.name}/bias`);
        }
        const [pt, pb] = tfSamePads(layer.padding, inShape[0]!, kh, layer.strides[0]);
        const [pl, pr] = tfSamePads(layer.padding, inShape[1]!, kw, layer.strides[1]);
        const out = layer.activation === 'linear' ? layer.name : `${layer.name}/conv`;
        x = add(`${layer.name}/Conv`, 'Conv', inputs, out, {
          kernel_shape: { ints: [kh, kw] },
          strides: { ints: [...layer.strides] },
          pads: { ints: [pt, pl, pb, pr] },
        });
        x = activate(layer.name, layer.activation, x);
        break;
      }
      case 'maxpool2d': {
        const [pt, pb] = tfSamePads(layer.padding, inShape[0]!, layer.poolSize[0], layer.strides[0]);
        const [pl, pr] = tfSamePads(layer.padding, inShape[1]!, layer.poolSize[1], layer.strides[1]);
        x = add(layer.name, 'MaxPool', [x], layer.name, { kernel_shape: { ints: [...layer.poolSize] }, strides: { ints: [...layer.strides] }, pads: { ints: [pt, pl, pb, pr] } });
        break;
      }
      case 'flatten':
        x = add(`${layer.name}/to_nhwc`, 'Transpose', [x], `${layer.name}/nhwc`, { perm: { ints: [0, 2, 3, 1] } });
        x = add(layer.name, 'Flatten', [x], layer.name, { axis: { int: 1 } });
        break;
      case 'gap':
        x = add(`${layer.name}/pool`, 'GlobalAveragePool', [x], `${layer.name}/pool`);
        x = add(layer.name, 'Flatten', [x], layer.name, { axis: { int: 1 } });
        break;
      case 'dense': {
        const features = inShape[0]!;
        const kernel = `${layer.name}/kernel`;
        constants[kernel] = { dtype: 'float32', dims: [features, layer.units], data: layer.kernel };
        const inputs = [x, kernel];
        if (layer.bias) {
          constants[`${layer.name}/bias`] = { dtype: 'float32', dims: [layer.units], data: layer.bias };
          inputs.push(`${layer.name}/bias`);
        }
        x = add(`${layer.name}/Gemm`, 'Gemm', inputs, layer.activation === 'linear' ? layer.name : `${layer.name}/linear`);
        x = activate(layer.name, layer.activation, x);
        break;
      }
      case 'dropout':
        x = add(layer.name, 'Identity', [x], layer.name);
        break;
      case 'activation':
        x = layer.activation === 'linear' ? add(layer.name, 'Identity', [x], layer.name) : activate(layer.name, layer.activation, x);
        break;
    }
  }
  if (nodes.length === 1) throw new ModelError(`${spec.name} has no layers`);
  return {
    name: spec.name,
    inputShape: [...spec.inputShape],
    input: { name: inputName, layout: 'nhwc' },
    output: x,
    nodes,
    constants,
    weightsHash: spec.weightsHash,
    source: spec.source,
    producer: 'keras',
  };
}

/** The weight arrays of either form (to transfer them to an engine thread). */
export function modelWeights(model: ModelInput): Array<Float32Array | null> {
  if ('nodes' in model) return Object.values(model.constants).flatMap((c) => (c.dtype === 'float32' ? [c.data] : []));
  return model.layers.flatMap((l) => ('kernel' in l ? [l.kernel, l.bias] : []));
}

/** Engines and commands take either form; sequential specs are converted here, once. */
export type ModelInput = ModelSpec | ModelGraph;

const converted = new WeakMap<ModelSpec, ModelGraph>();

export function toModelGraph(model: ModelInput): ModelGraph {
  if ('nodes' in model) return model;
  let graph = converted.get(model);
  if (!graph) {
    graph = graphFromSequential(model);
    converted.set(model, graph);
  }
  return graph;
}
