/**
 * A 3x3 stride-1 'same' convolution whose gradients the wasm backend can compute fast.
 *
 * tfjs-backend-wasm 4.22 has no `Conv2DBackpropFilter` kernel (training a Conv2D there throws
 * "Kernel 'Conv2DBackpropFilter' not registered"), and its `Conv2DBackpropInput` is a naive loop
 * (about 15x slower than the forward convolution). Both gradients of a stride-1 'same' convolution
 * are themselves convolutions, which XNNPACK runs fast:
 *  - dx = conv2d(dy, W rotated 180° with in/out swapped, 'same')
 *  - dW[i,j,c,o] = Σ_{n,h,w} xpad[n,h+i,w+j,c] · dy[n,h,w,o]: a 'valid' convolution of the padded
 *    input with channels as batch and the batch as channels, using dy as an (H×W) filter.
 * Both are checked against finite differences in test/unit/demo-model.
 */
import * as tf from '@tensorflow/tfjs';

function filterGradient(x: tf.Tensor4D, dy: tf.Tensor4D, kernelSize: number): tf.Tensor4D {
  const pad = (kernelSize - 1) / 2;
  const xp = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]]).transpose<tf.Tensor4D>([3, 1, 2, 0]);
  const filter = dy.transpose<tf.Tensor4D>([1, 2, 0, 3]);
  // [C, k, k, O] -> [k, k, C, O] (HWIO)
  return tf.conv2d(xp, filter, 1, 'valid').transpose<tf.Tensor4D>([1, 2, 0, 3]);
}

function inputGradient(dy: tf.Tensor4D, kernel: tf.Tensor4D): tf.Tensor4D {
  const flipped = tf.reverse(kernel, [0, 1]).transpose<tf.Tensor4D>([0, 1, 3, 2]);
  return tf.conv2d(dy, flipped, 1, 'same');
}

/**
 * Build the op. `inputGrad: false` returns a zero input gradient, for the first layer, whose input is
 * data and never needs one (that saves the most expensive backward convolution).
 */
export function makeSameConv(inputGrad: boolean): (x: tf.Tensor4D, kernel: tf.Tensor4D) => tf.Tensor4D {
  const op = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [x, kernel, save] = args as [tf.Tensor4D, tf.Tensor4D, tf.GradSaveFunc];
    const size = kernel.shape[0];
    if (size !== kernel.shape[1] || size % 2 !== 1) throw new RangeError(`square odd kernel expected, got ${kernel.shape}`);
    save([x, kernel]);
    return {
      value: tf.conv2d(x, kernel, 1, 'same'),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, sk] = saved as [tf.Tensor4D, tf.Tensor4D];
        const d = dy as tf.Tensor4D;
        return [inputGrad ? inputGradient(d, sk) : tf.zerosLike(sx), filterGradient(sx, d, size)];
      },
    };
  });
  return (x, kernel) => op(x, kernel) as tf.Tensor4D;
}
