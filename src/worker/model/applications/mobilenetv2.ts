/**
 * `keras.applications.MobileNetV2` at alpha 1.0 (tf.keras 2.x `applications/mobilenet_v2.py`,
 * include_top=True), with Keras' layer names:
 * - `Conv1` (3x3/2 'same', 32, no bias), `bn_Conv1`, `Conv1_relu` (ReLU 6);
 * - 17 inverted residual blocks: `expanded_conv_` (block 0, no expansion) then `block_1_`..`block_16_`,
 *   each `expand`/`expand_BN`/`expand_relu` (1x1, 6x), `pad` (before stride-2 depthwise convs),
 *   `depthwise`/`depthwise_BN`/`depthwise_relu`, `project`/`project_BN`, and `add` when the block
 *   keeps its shape;
 * - `Conv_1` (1x1, 1280, no bias), `Conv_1_bn`, `out_relu`, `global_average_pooling2d`, `predictions`.
 * BatchNormalization epsilon 1e-3, momentum 0.999. 3,538,984 parameters at 1000 classes.
 */
import type { Json } from '../keras-config.js';
import { FunctionalConfig } from './functional-config.js';

const EPSILON = 1e-3;
const MOMENTUM = 0.999;
/** (filters, stride, expansion) per block, as `MobileNetV2()` calls `_inverted_res_block`. */
const BLOCKS: ReadonlyArray<[number, number, number]> = [
  [16, 1, 1],
  [24, 2, 6], [24, 1, 6],
  [32, 2, 6], [32, 1, 6], [32, 1, 6],
  [64, 2, 6], [64, 1, 6], [64, 1, 6], [64, 1, 6],
  [96, 1, 6], [96, 1, 6], [96, 1, 6],
  [160, 2, 6], [160, 1, 6], [160, 1, 6],
  [320, 1, 6],
];

export function mobilenetV2Config(inputShape: [number, number, number], classes: number): Json {
  const m = new FunctionalConfig('mobilenetv2_1.00_224');
  const input = m.input('input_1', inputShape);
  const relu6 = (name: string, x: string): string => m.layer('ReLU', name, { max_value: 6, negative_slope: 0, threshold: 0 }, [x]);
  let x = m.conv('Conv1', input, 32, 3, { strides: 2, padding: 'same', useBias: false });
  x = m.batchNorm('bn_Conv1', x, EPSILON, MOMENTUM);
  x = relu6('Conv1_relu', x);
  let channels = 32;
  let size: [number, number] = [Math.ceil(inputShape[0] / 2), Math.ceil(inputShape[1] / 2)];
  BLOCKS.forEach(([filters, stride, expansion], id) => {
    const prefix = id === 0 ? 'expanded_conv_' : `block_${id}_`;
    const input = x;
    let y = x;
    if (id > 0) {
      y = m.conv(`${prefix}expand`, y, expansion * channels, 1, { padding: 'same', useBias: false });
      y = m.batchNorm(`${prefix}expand_BN`, y, EPSILON, MOMENTUM);
      y = relu6(`${prefix}expand_relu`, y);
    }
    if (stride === 2) {
      // imagenet_utils.correct_pad: one pixel less before than after on even sizes.
      const pad = (n: number): [number, number] => [1 - (1 - (n % 2)), 1];
      y = m.zeroPad(`${prefix}pad`, y, [pad(size[0]), pad(size[1])]);
      size = [Math.ceil(size[0] / 2), Math.ceil(size[1] / 2)];
    }
    y = m.layer(
      'DepthwiseConv2D',
      `${prefix}depthwise`,
      { kernel_size: [3, 3], strides: [stride, stride], padding: stride === 1 ? 'same' : 'valid', data_format: 'channels_last', dilation_rate: [1, 1], depth_multiplier: 1, activation: 'linear', use_bias: false },
      [y],
    );
    y = m.batchNorm(`${prefix}depthwise_BN`, y, EPSILON, MOMENTUM);
    y = relu6(`${prefix}depthwise_relu`, y);
    y = m.conv(`${prefix}project`, y, filters, 1, { padding: 'same', useBias: false });
    y = m.batchNorm(`${prefix}project_BN`, y, EPSILON, MOMENTUM);
    x = channels === filters && stride === 1 ? m.layer('Add', `${prefix}add`, {}, [input, y]) : y;
    channels = filters;
  });
  x = m.conv('Conv_1', x, 1280, 1, { useBias: false });
  x = m.batchNorm('Conv_1_bn', x, EPSILON, MOMENTUM);
  x = relu6('out_relu', x);
  x = m.layer('GlobalAveragePooling2D', 'global_average_pooling2d', { data_format: 'channels_last', keepdims: false }, [x]);
  x = m.layer('Dense', 'predictions', { units: classes, activation: 'softmax', use_bias: true }, [x]);
  return m.build(input, x);
}
