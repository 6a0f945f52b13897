/**
 * An engine-neutral description of a sequential CNN classifier with its weights. The weight loaders
 * (Keras HDF5, TF.js Layers) produce it; the TF.js engine builds a `tf.LayersModel` from it and the
 * ONNX engine compiles it into a graph. Weights are float32 in Keras layouts.
 */

export type Activation = 'linear' | 'relu' | 'softmax' | 'sigmoid';
export type Padding = 'same' | 'valid';

export interface InputLayerSpec {
  type: 'input';
  name: string;
}

export interface Conv2DLayerSpec {
  type: 'conv2d';
  name: string;
  filters: number;
  kernelSize: [number, number];
  strides: [number, number];
  padding: Padding;
  activation: Activation;
  /** HWIO, i.e. `(kh, kw, in, out)`, row-major: `kernel[((y * kw + x) * in + i) * out + o]`. */
  kernel: Float32Array;
  /** `(out)`, or null when `use_bias` is false. */
  bias: Float32Array | null;
}

export interface MaxPool2DLayerSpec {
  type: 'maxpool2d';
  name: string;
  poolSize: [number, number];
  strides: [number, number];
  padding: Padding;
}

/** Flattens `(h, w, c)` in that order (a plain NHWC reshape, as Keras), which fc1's rows follow. */
export interface FlattenLayerSpec {
  type: 'flatten';
  name: string;
}

export interface GlobalAveragePoolingLayerSpec {
  type: 'gap';
  name: string;
}

export interface DenseLayerSpec {
  type: 'dense';
  name: string;
  units: number;
  activation: Activation;
  /** `(in, out)`, row-major: `kernel[i * units + o]`. */
  kernel: Float32Array;
  /** `(units)`, or null when `use_bias` is false. */
  bias: Float32Array | null;
}

export interface DropoutLayerSpec {
  type: 'dropout';
  name: string;
  rate: number;
}

export interface ActivationLayerSpec {
  type: 'activation';
  name: string;
  activation: Activation;
}

export type LayerSpec =
  | InputLayerSpec
  | Conv2DLayerSpec
  | MaxPool2DLayerSpec
  | FlattenLayerSpec
  | GlobalAveragePoolingLayerSpec
  | DenseLayerSpec
  | DropoutLayerSpec
  | ActivationLayerSpec;

export interface ModelSpec {
  /** e.g. `vgg16`, or the name from model.json. */
  name: string;
  /** `[height, width, channels]`, channels-last. */
  inputShape: [number, number, number];
  /** In execution order, input layer excluded. */
  layers: LayerSpec[];
  /** sha256 (hex) over the weight bytes as loaded, in layer order. */
  weightsHash: string;
  /** Where the weights came from (path, s3:// URI or URL), for provenance. */
  source: string;
}
