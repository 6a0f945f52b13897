/**
 * Max-pool whose gradient goes to the FIRST maximum of each window (row-major), as TensorFlow's CPU
 * kernel and PyTorch do. Why: the target layer is ReLU'd, so whole pooling windows are often all
 * zero, and the gradient then lands on one of several tied positions. TF.js's wasm backend breaks
 * such ties inconsistently (first position for one window, last for another), which changes
 * Grad-CAM's channel weights (mean of dS/dA includes those positions) and makes results differ
 * by backend. Methods that multiply by A (hirescam, xgradcam, layercam) are unaffected, since
 * A is 0 at every tied position of an all-zero window.
 *
 * Only non-overlapping 'valid' pools (stride = pool size, VGG's 2x2/2) get the custom gradient;
 * other shapes keep TF.js's own.
 */
import * as tf from '@tensorflow/tfjs';

export function maxPoolFirstTie(x: tf.Tensor4D, pool: [number, number], strides: [number, number], padding: 'same' | 'valid'): tf.Tensor4D {
  const [ph, pw] = pool;
  if (padding !== 'valid' || strides[0] !== ph || strides[1] !== pw) return tf.maxPool(x, pool, strides, padding);
  const op = tf.customGrad((...args: Array<tf.Tensor | tf.GradSaveFunc>) => {
    const [input, save] = args as [tf.Tensor4D, tf.GradSaveFunc];
    const y = tf.maxPool(input, pool, strides, 'valid');
    save([input, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor4D, saved: tf.Tensor[]) => [firstMaxGradient(saved[0] as tf.Tensor4D, saved[1] as tf.Tensor4D, dy as tf.Tensor4D, ph, pw)],
    };
  });
  return op(x) as tf.Tensor4D;
}

function firstMaxGradient(x: tf.Tensor4D, y: tf.Tensor4D, dy: tf.Tensor4D, ph: number, pw: number): tf.Tensor4D {
  return tf.tidy(() => {
    const [n, h, w, c] = x.shape;
    const [, oh, ow] = y.shape;
    // One strided view per offset inside the window, each [n, oh, ow, c].
    let taken: tf.Tensor = tf.zerosLike(y);
    const parts: tf.Tensor[] = [];
    for (let di = 0; di < ph; di++) {
      for (let dj = 0; dj < pw; dj++) {
        const view = tf.stridedSlice(x, [0, di, dj, 0], [n, di + oh * ph, dj + ow * pw, c], [1, ph, pw, 1]);
        const hit = tf.mul(tf.cast(tf.equal(view, y), 'float32'), tf.sub(1, taken));
        taken = tf.add(taken, hit);
        parts.push(tf.mul(hit, dy));
      }
    }
    // [ph*pw, n, oh, ow, c] → [n, oh, ph, ow, pw, c] → [n, oh*ph, ow*pw, c]; rows/columns that
    // 'valid' pooling dropped get zero gradient.
    const stacked = tf.reshape(tf.stack(parts), [ph, pw, n, oh, ow, c]);
    const grad = tf.reshape(tf.transpose(stacked, [2, 3, 0, 4, 1, 5]), [n, oh * ph, ow * pw, c]);
    return tf.pad(grad, [[0, 0], [0, h - oh * ph], [0, w - ow * pw], [0, 0]]) as tf.Tensor4D;
  });
}
