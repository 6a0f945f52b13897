/**
 * `keras.applications.ResNet50` (tf.keras 2.x `applications/resnet.py`, include_top=True), with
 * Keras' layer names, so a weights-only .h5 of it loads by name:
 * - stem: `conv1_pad` (3), `conv1_conv` (7x7/2, 64, bias), `conv1_bn`, `conv1_relu`, `pool1_pad` (1),
 *   `pool1_pool` (3x3/2 max);
 * - stages conv2..conv5 of 3, 4, 6, 3 bottleneck blocks (64, 128, 256, 512 filters; 4x expansion),
 *   each `convS_blockB_{1,2,3}_{conv,bn}` with `_1_relu`, `_2_relu`, a projection shortcut
 *   `_0_conv`/`_0_bn` in the first block of a stage (stride 1 in conv2, else 2, on the 1x1
 *   convs), `_add` and `_out`;
 * - `avg_pool` (global average) and `predictions` (softmax).
 * BatchNormalization epsilon 1.001e-5. 25,636,712 parameters at 1000 classes, moving statistics included.
 */
import type { Json } from '../keras-config.js';
import { FunctionalConfig } from './functional-config.js';

const EPSILON = 1.001e-5;
const STAGES: ReadonlyArray<{ filters: number; blocks: number; stride: number }> = [
  { filters: 64, blocks: 3, stride: 1 },
  { filters: 128, blocks: 4, stride: 2 },
  { filters: 256, blocks: 6, stride: 2 },
  { filters: 512, blocks: 3, stride: 2 },
];

export function resnet50Config(inputShape: [number, number, number], classes: number): Json {
  const m = new FunctionalConfig('resnet50');
  const input = m.input('input_1', inputShape);
  let x = m.zeroPad('conv1_pad', input, [[3, 3], [3, 3]]);
  x = m.conv('conv1_conv', x, 64, 7, { strides: 2 });
  x = m.batchNorm('conv1_bn', x, EPSILON);
  x = m.activation('conv1_relu', x, 'relu');
  x = m.zeroPad('pool1_pad', x, [[1, 1], [1, 1]]);
  x = m.layer('MaxPooling2D', 'pool1_pool', { pool_size: [3, 3], strides: [2, 2], padding: 'valid', data_format: 'channels_last' }, [x]);
  STAGES.forEach(({ filters, blocks, stride }, s) => {
    for (let b = 1; b <= blocks; b++) {
      const name = `conv${s + 2}_block${b}`;
      const strides = b === 1 ? stride : 1;
      let shortcut = x;
      if (b === 1) {
        shortcut = m.conv(`${name}_0_conv`, x, 4 * filters, 1, { strides });
        shortcut = m.batchNorm(`${name}_0_bn`, shortcut, EPSILON);
      }
      let y = m.conv(`${name}_1_conv`, x, filters, 1, { strides });
      y = m.batchNorm(`${name}_1_bn`, y, EPSILON);
      y = m.activation(`${name}_1_relu`, y, 'relu');
      y = m.conv(`${name}_2_conv`, y, filters, 3, { padding: 'same' });
      y = m.batchNorm(`${name}_2_bn`, y, EPSILON);
      y = m.activation(`${name}_2_relu`, y, 'relu');
      y = m.conv(`${name}_3_conv`, y, 4 * filters, 1);
      y = m.batchNorm(`${name}_3_bn`, y, EPSILON);
      y = m.layer('Add', `${name}_add`, {}, [shortcut, y]);
      x = m.activation(`${name}_out`, y, 'relu');
    }
  });
  x = m.layer('GlobalAveragePooling2D', 'avg_pool', { data_format: 'channels_last', keepdims: false }, [x]);
  x = m.layer('Dense', 'predictions', { units: classes, activation: 'softmax', use_bias: true }, [x]);
  return m.build(input, x);
}
