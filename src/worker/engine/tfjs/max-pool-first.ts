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

/**
 * The gradient in plain JS over the downloaded values. It runs only in the head, where tensors are
 * small (VGG16: 14x14x512 per image), and is several times faster than composing it from TF.js ops
 * on wasm (strided slices and a 6-D transpose cost more than the whole head backward).
 */
function firstMaxGradient(x: tf.Tensor4D, y: tf.Tensor4D, dy: tf.Tensor4D, ph: number, pw: number): tf.Tensor4D {
  const [n, h, w, c] = x.shape;
  const [, oh, ow] = y.shape;
  const xv = x.dataSync();
  const yv = y.dataSync();
  const dv = dy.dataSync();
  const grad = new Float32Array(n * h * w * c);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < oh; i++) {
      for (let j = 0; j < ow; j++) {
        const out = ((b * oh + i) * ow + j) * c;
        for (let k = 0; k < c; k++) {
          const max = yv[out + k];
          // Row-major scan of the window: the first position equal to the max takes the gradient.
          search: for (let di = 0; di < ph; di++) {
            for (let dj = 0; dj < pw; dj++) {
              const at = ((b * h + i * ph + di) * w + j * pw + dj) * c + k;
              if (xv[at] === max) {
                grad[at] = dv[out + k];
                break search;
              }
            }
          }
        }
      }
    }
  }
  return tf.tensor4d(grad, [n, h, w, c]);
}
