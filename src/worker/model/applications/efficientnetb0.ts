/**
 * `keras.applications.EfficientNetB0` (tf.keras 2.9+ / Keras 3 `applications/efficientnet.py`,
 * include_top=True, weights='imagenet'), with Keras' layer names:
 * - `rescaling` (1/255), `normalization` (mean and variance stored as weights), `rescaling_1`
 *   (1/sqrt of ImageNet's RGB standard deviations: Keras adds it when built for the ImageNet
 *   weights, to reproduce the original implementation's division by the variance);
 * - `stem_conv_pad`, `stem_conv` (3x3/2 'valid', 32, no bias), `stem_bn`, `stem_activation` (swish);
 * - 16 MBConv blocks `block1a_` .. `block7a_`: `expand_conv`/`expand_bn`/`expand_activation`
 *   (1x1, 6x; not in stage 1), `dwconv_pad` (before stride-2 depthwise convs), `dwconv`/`bn`/
 *   `activation`, squeeze-excitation `se_squeeze` (GlobalAveragePooling2D), `se_reshape` (to
 *   1x1xC), `se_reduce` (1x1, swish), `se_expand` (1x1, sigmoid), `se_excite` (Multiply),
 *   `project_conv`/`project_bn`, and `drop` (Dropout, noise shape (None, 1, 1, 1)) + `add` when
 *   the block keeps its shape;
 * - `top_conv` (1x1, 1280, no bias), `top_bn`, `top_activation`, `avg_pool`, `top_dropout`,
 *   `predictions`.
 * BatchNormalization epsilon 1e-3 (Keras' default), momentum 0.99. 5,330,571 parameters at 1000
 * classes (the normalization layer's mean, variance and count included).
 *
 * A model built with `weights=None` has no `rescaling_1`; load its full-model .h5 (which carries
 * its own topology) instead of its weights-only file.
 */
import type { Json } from '../keras-config.js';
import { FunctionalConfig } from './functional-config.js';

const EPSILON = 1e-3;
/** keras.applications' IMAGENET_STDDEV_RGB. */
const IMAGENET_STDDEV_RGB = [0.229, 0.224, 0.225];
/** (kernel, repeats, filters in, filters out, expansion, stride) per stage; squeeze ratio 0.25 throughout (DEFAULT_BLOCKS_ARGS). */
const STAGES: ReadonlyArray<[number, number, number, number, number, number]> = [
  [3, 1, 32, 16, 1, 1],
  [3, 2, 16, 24, 6, 2],
  [5, 2, 24, 40, 6, 2],
  [3, 3, 40, 80, 6, 2],
  [5, 3, 80, 112, 6, 1],
  [5, 4, 112, 192, 6, 2],
  [3, 1, 192, 320, 6, 1],
];
const SE_RATIO = 0.25;
const DROP_CONNECT_RATE = 0.2;

export function efficientNetB0Config(inputShape: [number, number, number], classes: number): Json {
  const m = new FunctionalConfig('efficientnetb0');
  const input = m.input('input_1', inputShape);
  const swish = (name: string, x: string): string => m.activation(name, x, 'swish');
  let x = m.layer('Rescaling', 'rescaling', { scale: 1 / 255, offset: 0 }, [input]);
  x = m.layer('Normalization', 'normalization', { axis: [3], mean: null, variance: null, invert: false }, [x]);
  x = m.layer('Rescaling', 'rescaling_1', { scale: IMAGENET_STDDEV_RGB.map((s) => 1 / Math.sqrt(s)), offset: 0 }, [x]);
  let size: [number, number] = [inputShape[0], inputShape[1]];
  // imagenet_utils.correct_pad: for a kernel k, (k//2 - 1, k//2) on even sizes, (k//2, k//2) on odd ones.
  const pad = (k: number): [[number, number], [number, number]] => [0, 1].map((a) => [Math.floor(k / 2) - (size[a] % 2 === 0 ? 1 : 0), Math.floor(k / 2)]) as [[number, number], [number, number]];
  const halve = (k: number): void => {
    size = [0, 1].map((a) => Math.floor((size[a] + pad(k)[a][0] + pad(k)[a][1] - k) / 2) + 1) as [number, number];
  };
  x = m.zeroPad('stem_conv_pad', x, pad(3));
  halve(3);
  x = m.conv('stem_conv', x, 32, 3, { strides: 2, padding: 'valid', useBias: false });
  x = m.batchNorm('stem_bn', x, EPSILON);
  x = swish('stem_activation', x);

  const total = STAGES.reduce((n, s) => n + s[1], 0);
  let b = 0;
  STAGES.forEach(([kernel, repeats, stageIn, filtersOut, expansion, stageStride], i) => {
    for (let j = 0; j < repeats; j++) {
      const prefix = `block${i + 1}${String.fromCharCode(97 + j)}_`;
      const filtersIn = j === 0 ? stageIn : filtersOut;
      const stride = j === 0 ? stageStride : 1;
      const dropRate = (DROP_CONNECT_RATE * b) / total;
      const inputs = x;
      const filters = filtersIn * expansion;
      let y = x;
      if (expansion !== 1) {
        y = m.conv(`${prefix}expand_conv`, y, filters, 1, { padding: 'same', useBias: false });
        y = m.batchNorm(`${prefix}expand_bn`, y, EPSILON);
        y = swish(`${prefix}expand_activation`, y);
      }
      if (stride === 2) {
        y = m.zeroPad(`${prefix}dwconv_pad`, y, pad(kernel));
        halve(kernel);
      }
      y = m.layer(
        'DepthwiseConv2D',
        `${prefix}dwconv`,
        { kernel_size: [kernel, kernel], strides: [stride, stride], padding: stride === 2 ? 'valid' : 'same', data_format: 'channels_last', dilation_rate: [1, 1], depth_multiplier: 1, activation: 'linear', use_bias: false },
        [y],
      );
      y = m.batchNorm(`${prefix}bn`, y, EPSILON);
      y = swish(`${prefix}activation`, y);
      const filtersSe = Math.max(1, Math.floor(filtersIn * SE_RATIO));
      let se = m.layer('GlobalAveragePooling2D', `${prefix}se_squeeze`, { data_format: 'channels_last', keepdims: false }, [y]);
      se = m.layer('Reshape', `${prefix}se_reshape`, { target_shape: [1, 1, filters] }, [se]);
      se = m.conv(`${prefix}se_reduce`, se, filtersSe, 1, { padding: 'same', activation: 'swish' });
      se = m.conv(`${prefix}se_expand`, se, filters, 1, { padding: 'same', activation: 'sigmoid' });
      y = m.layer('Multiply', `${prefix}se_excite`, {}, [y, se]);
      y = m.conv(`${prefix}project_conv`, y, filtersOut, 1, { padding: 'same', useBias: false });
      y = m.batchNorm(`${prefix}project_bn`, y, EPSILON);
      if (stride === 1 && filtersIn === filtersOut) {
        if (dropRate > 0) y = m.layer('Dropout', `${prefix}drop`, { rate: dropRate, noise_shape: [null, 1, 1, 1], seed: null }, [y]);
        y = m.layer('Add', `${prefix}add`, {}, [y, inputs]);
      }
      x = y;
      b++;
    }
  });
  x = m.conv('top_conv', x, 1280, 1, { padding: 'same', useBias: false });
  x = m.batchNorm('top_bn', x, EPSILON);
  x = swish('top_activation', x);
  x = m.layer('GlobalAveragePooling2D', 'avg_pool', { data_format: 'channels_last', keepdims: false }, [x]);
  x = m.layer('Dropout', 'top_dropout', { rate: 0.2, noise_shape: null, seed: null }, [x]);
  x = m.layer('Dense', 'predictions', { units: classes, activation: 'softmax', use_bias: true }, [x]);
  return m.build(input, x);
}
