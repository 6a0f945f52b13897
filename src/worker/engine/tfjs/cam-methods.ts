/**
 * The five CAM methods as batched TF.js ops. `a` and `g` are `[M,h,w,c]`: M (image, target) rows
 * of the target activation and of dS/dA. Every reduction runs over a row's own h×w positions, never
 * across rows, so an image's map does not depend on what else is in the batch.
 *
 * Formulas (design notes §4); the final ReLU keeps only positive evidence:
 * - gradcam:   w_k = mean_ij G_k;                      map = ReLU(Σ_k w_k A_k)
 * - hirescam:  map = ReLU(Σ_k G_k ⊙ A_k)
 * - xgradcam:  w_k = Σ_ij(G_k ⊙ A_k) / (Σ_ij A_k + ε); map = ReLU(Σ_k w_k A_k)
 * - layercam:  map = ReLU(Σ_k ReLU(G_k) ⊙ A_k)
 * - gradcam++: α = G² / (2G² + (Σ_ij A_k)·G³ + ε), α = 0 where G = 0 (the paper's closed form for an
 *              exponential score, applied to S as pytorch-grad-cam does);
 *              w_k = Σ_ij α·ReLU(G_k);                 map = ReLU(Σ_k w_k A_k)
 */
import * as tf from '@tensorflow/tfjs';
import type { CamMethod } from '../../../shared/explain-options.js';

/** ε in the xgradcam and gradcam++ denominators (the reference script uses the same value). */
export const CAM_EPSILON = 1e-7;

/** Raw maps `[M,h,w]` (ReLU applied, not normalised). Call inside `tf.tidy`. */
export function camMaps(method: CamMethod, a: tf.Tensor4D, g: tf.Tensor4D): tf.Tensor3D {
  const weighted = (w: tf.Tensor): tf.Tensor3D => tf.relu(tf.sum(tf.mul(w, a), 3)) as tf.Tensor3D;
  switch (method) {
    case 'gradcam':
      return weighted(tf.mean(g, [1, 2], true));
    case 'hirescam':
      return tf.relu(tf.sum(tf.mul(g, a), 3)) as tf.Tensor3D;
    case 'xgradcam': {
      const num = tf.sum(tf.mul(g, a), [1, 2], true);
      const den = tf.add(tf.sum(a, [1, 2], true), CAM_EPSILON);
      return weighted(tf.div(num, den));
    }
    case 'layercam':
      return tf.relu(tf.sum(tf.mul(tf.relu(g), a), 3)) as tf.Tensor3D;
    case 'gradcam++': {
      const g2 = tf.square(g);
      const g3 = tf.mul(g2, g);
      const sumA = tf.sum(a, [1, 2], true);
      const den = tf.add(tf.add(tf.mul(g2, 2), tf.mul(sumA, g3)), CAM_EPSILON);
      const alpha = tf.where(tf.equal(g, 0), tf.zerosLike(g), tf.div(g2, den));
      return weighted(tf.sum(tf.mul(alpha, tf.relu(g)), [1, 2], true));
    }
    case 'eigencam':
    case 'scorecam':
      throw new RangeError(`${method} reads no gradient; the engine runs it through gradient-free/explain.ts`);
  }
}
