/**
 * Architecture → Keras model JSON, as Keras 2 / TF.js serialise a Sequential model. The weight
 * writers embed it (TF.js `modelTopology`, HDF5 `model_config`) so generated files look like the
 * ones real tools write.
 */
import type { Architecture, LayerConfig } from '../../src/worker/model/architecture.js';

export type KerasJson = Record<string, unknown>;

export function kerasModelConfig(arch: Architecture): KerasJson {
  const input = {
    class_name: 'InputLayer',
    config: { batch_input_shape: [null, ...arch.inputShape], dtype: 'float32', sparse: false, ragged: false, name: 'input_1' },
  };
  return { class_name: 'Sequential', config: { name: arch.name, layers: [input, ...arch.layers.map(kerasLayer)] } };
}

function kerasLayer(layer: LayerConfig): KerasJson {
  const base = { name: layer.name, trainable: true, dtype: 'float32' };
  switch (layer.type) {
    case 'conv2d':
      return {
        class_name: 'Conv2D',
        config: {
          ...base,
          filters: layer.filters,
          kernel_size: layer.kernelSize,
          strides: layer.strides,
          padding: layer.padding,
          data_format: 'channels_last',
          dilation_rate: [1, 1],
          groups: 1,
          activation: layer.activation,
          use_bias: layer.useBias,
        },
      };
    case 'maxpool2d':
      return {
        class_name: 'MaxPooling2D',
        config: { ...base, pool_size: layer.poolSize, strides: layer.strides, padding: layer.padding, data_format: 'channels_last' },
      };
    case 'flatten':
      return { class_name: 'Flatten', config: { ...base, data_format: 'channels_last' } };
    case 'gap':
      return { class_name: 'GlobalAveragePooling2D', config: { ...base, data_format: 'channels_last', keepdims: false } };
    case 'dense':
      return { class_name: 'Dense', config: { ...base, units: layer.units, activation: layer.activation, use_bias: layer.useBias } };
    case 'dropout':
      return { class_name: 'Dropout', config: { ...base, rate: layer.rate, noise_shape: null, seed: null } };
    case 'activation':
      return { class_name: 'Activation', config: { ...base, activation: layer.activation } };
  }
}
