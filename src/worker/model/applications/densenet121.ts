/**
 * `keras.applications.DenseNet121` (tf.keras 2.x `applications/densenet.py`, include_top=True),
 * with Keras' layer names, slashes included:
 * - stem: padding 3, `conv1/conv` (7x7/2, 64, no bias), `conv1/bn`, `conv1/relu`, padding 1,
 *   `pool1` (3x3/2 max);
 * - dense blocks `conv2`..`conv5` of 6, 12, 24, 16 layers, each `convS_blockB_0_bn`, `_0_relu`,
 *   `_1_conv` (1x1, 128), `_1_bn`, `_1_relu`, `_2_conv` (3x3, 32), `_concat` (growth 32);
 * - transitions `pool2`..`pool4` between them: `_bn`, `_relu`, `_conv` (1x1, half the channels),
 *   `_pool` (2x2 average);
 * - `bn`, `relu`, `avg_pool` (global average), `predictions` (softmax).
 * BatchNormalization epsilon 1.001e-5. 8,062,504 parameters at 1000 classes.
 */
import type { Json } from '../keras-config.js';
import { FunctionalConfig } from './functional-config.js';

const EPSILON = 1.001e-5;
const GROWTH = 32;
const BLOCKS = [6, 12, 24, 16];

export function densenet121Config(inputShape: [number, number, number], classes: number): Json {
  const m = new FunctionalConfig('densenet121');
  const input = m.input('input_1', inputShape);
  let x = m.zeroPad('zero_padding2d', input, [[3, 3], [3, 3]]);
  x = m.conv('conv1/conv', x, 64, 7, { strides: 2, useBias: false });
  x = m.batchNorm('conv1/bn', x, EPSILON);
  x = m.activation('conv1/relu', x, 'relu');
  x = m.zeroPad('zero_padding2d_1', x, [[1, 1], [1, 1]]);
  x = m.layer('MaxPooling2D', 'pool1', { pool_size: [3, 3], strides: [2, 2], padding: 'valid', data_format: 'channels_last' }, [x]);
  let channels = 64;
  BLOCKS.forEach((blocks, s) => {
    for (let b = 1; b <= blocks; b++) {
      const name = `conv${s + 2}_block${b}`;
      let y = m.batchNorm(`${name}_0_bn`, x, EPSILON);
      y = m.activation(`${name}_0_relu`, y, 'relu');
      y = m.conv(`${name}_1_conv`, y, 4 * GROWTH, 1, { useBias: false });
      y = m.batchNorm(`${name}_1_bn`, y, EPSILON);
      y = m.activation(`${name}_1_relu`, y, 'relu');
      y = m.conv(`${name}_2_conv`, y, GROWTH, 3, { padding: 'same', useBias: false });
      x = m.layer('Concatenate', `${name}_concat`, { axis: 3 }, [x, y]);
      channels += GROWTH;
    }
    if (s < BLOCKS.length - 1) {
      const name = `pool${s + 2}`;
      x = m.batchNorm(`${name}_bn`, x, EPSILON);
      x = m.activation(`${name}_relu`, x, 'relu');
      channels = Math.floor(channels * 0.5);
      x = m.conv(`${name}_conv`, x, channels, 1, { useBias: false });
      x = m.layer('AveragePooling2D', `${name}_pool`, { pool_size: [2, 2], strides: [2, 2], padding: 'valid', data_format: 'channels_last' }, [x]);
    }
  });
  x = m.batchNorm('bn', x, EPSILON);
  x = m.activation('relu', x, 'relu');
  x = m.layer('GlobalAveragePooling2D', 'avg_pool', { data_format: 'channels_last', keepdims: false }, [x]);
  x = m.layer('Dense', 'predictions', { units: classes, activation: 'softmax', use_bias: true }, [x]);
  return m.build(input, x);
}
