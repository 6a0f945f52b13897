/**
 * Eigen-CAM: the target activation of one image projected onto its first principal component.
 *
 * With A the activation as an (h·w)×C matrix (one row per position) and X = A − column means
 * (centred, as a principal component is defined and as pytorch-grad-cam's `get_2d_projection`
 * does), the map is p = X·v₁, v₁ the first right singular vector of X. An SVD fixes v₁ only up to
 * sign, so the sign is chosen to make p covary positively with the total activation Σ_k A_k at each
 * position: the map points at where the layer fires, never at where it is quiet. Then ReLU, like
 * every other method, before the shared normalisation.
 *
 * v₁ comes from the smaller Gram matrix (XXᵀ when h·w ≤ C, else XᵀX) by power iteration in float64,
 * sped up by squaring the matrix first (Gram⁽²ˢ⁾ separates λ₁ from λ₂ as (λ₂/λ₁)^(2ˢ)): VGG16's
 * block5_conv3 (196 positions × 512 channels) costs about 25 M multiply-adds per image.
 */

/** Squarings before power iteration, applied while the Gram side is at most `SQUARE_MAX_SIDE`. */
const SQUARINGS = 2;
const SQUARE_MAX_SIDE = 256;
const MAX_ITERATIONS = 2000;
/** Stop when 1 − |cos| between successive iterates falls below this. */
const TOLERANCE = 1e-15;

/**
 * The raw (ReLU'd, unnormalised) Eigen-CAM of one image.
 * @param activation channels-last `[h, w, c]` values of the target layer
 * @returns row-major `h*w` map
 */
export function eigenCamMap(activation: Float32Array, height: number, width: number, channels: number): Float32Array {
  const n = height * width;
  if (activation.length !== n * channels) throw new RangeError(`activation has ${activation.length} values, expected ${height}x${width}x${channels}`);
  const x = centred(activation, n, channels);
  const projection = n <= channels ? projectViaPositions(x, n, channels) : projectViaChannels(x, n, channels);
  // Sign: covary with the per-position total activation (p sums to zero, so this is a covariance).
  let agreement = 0;
  for (let i = 0; i < n; i++) {
    let total = 0;
    for (let k = 0; k < channels; k++) total += activation[i * channels + k];
    agreement += projection[i] * total;
  }
  const sign = agreement < 0 ? -1 : 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.max(0, sign * projection[i]);
  return out;
}

function centred(a: Float32Array, n: number, c: number): Float64Array {
  const mean = new Float64Array(c);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) mean[k] += a[i * c + k];
  for (let k = 0; k < c; k++) mean[k] /= n;
  const x = new Float64Array(n * c);
  for (let i = 0; i < n; i++) for (let k = 0; k < c; k++) x[i * c + k] = a[i * c + k] - mean[k];
  return x;
}

/** XXᵀ's top eigenvector u₁ (unit) and eigenvalue σ²: p = X·v₁ = σ·u₁. */
function projectViaPositions(x: Float64Array, n: number, c: number): Float64Array {
  const gram = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let s = 0;
      for (let k = 0; k < c; k++) s += x[i * c + k] * x[j * c + k];
      gram[i * n + j] = s;
      gram[j * n + i] = s;
    }
  }
  const u = topEigenvector(gram, n);
  if (!u) return new Float64Array(n);
  const sigma = Math.sqrt(Math.max(0, rayleigh(gram, u, n)));
  return u.map((v) => v * sigma);
}

/** XᵀX's top eigenvector v₁: p = X·v₁. */
function projectViaChannels(x: Float64Array, n: number, c: number): Float64Array {
  const gram = new Float64Array(c * c);
  for (let i = 0; i < n; i++) {
    const row = i * c;
    for (let k = 0; k < c; k++) {
      const xk = x[row + k];
      if (xk === 0) continue;
      for (let l = k; l < c; l++) gram[k * c + l] += xk * x[row + l];
    }
  }
  for (let k = 0; k < c; k++) for (let l = 0; l < k; l++) gram[k * c + l] = gram[l * c + k];
  const v = topEigenvector(gram, c);
  const p = new Float64Array(n);
  if (!v) return p;
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let k = 0; k < c; k++) s += x[i * c + k] * v[k];
    p[i] = s;
  }
  return p;
}

/** Top eigenvector of a symmetric positive semi-definite matrix, or null when it is zero. */
export function topEigenvector(matrix: Float64Array, n: number): Float64Array | null {
  let m = matrix;
  if (n <= SQUARE_MAX_SIDE) {
    for (let s = 0; s < SQUARINGS; s++) {
      const sq = multiply(m, m, n);
      // Rescale by the trace so repeated squaring neither overflows nor underflows.
      let trace = 0;
      for (let i = 0; i < n; i++) trace += sq[i * n + i];
      if (!(trace > 0) || !Number.isFinite(trace)) break;
      for (let i = 0; i < sq.length; i++) sq[i] /= trace;
      m = sq;
    }
  }
  // Start from the column with the largest diagonal: never orthogonal to every direction of m's range.
  let best = 0;
  for (let i = 1; i < n; i++) if (m[i * n + i] > m[best * n + best]) best = i;
  if (!(m[best * n + best] > 0)) return null;
  let v: Float64Array = new Float64Array(n);
  for (let i = 0; i < n; i++) v[i] = m[i * n + best];
  if (!normalise(v)) return null;
  for (let it = 0; it < MAX_ITERATIONS; it++) {
    const next = multiplyVector(m, v, n);
    if (!normalise(next)) return null;
    let cos = 0;
    for (let i = 0; i < n; i++) cos += next[i] * v[i];
    v = next;
    if (1 - Math.abs(cos) < TOLERANCE) break;
  }
  return v;
}

function multiply(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      const bRow = k * n;
      const oRow = i * n;
      for (let j = 0; j < n; j++) out[oRow + j] += aik * b[bRow + j];
    }
  }
  return out;
}

function multiplyVector(m: Float64Array, v: Float64Array, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = 0; j < n; j++) s += m[i * n + j] * v[j];
    out[i] = s;
  }
  return out;
}

function rayleigh(m: Float64Array, v: Float64Array, n: number): number {
  const mv = multiplyVector(m, v, n);
  let s = 0;
  for (let i = 0; i < n; i++) s += v[i] * mv[i];
  return s;
}

function normalise(v: Float64Array): boolean {
  let norm = 0;
  for (let i = 0; i < v.length; i++) norm += v[i] * v[i];
  norm = Math.sqrt(norm);
  if (!(norm > 0) || !Number.isFinite(norm)) return false;
  for (let i = 0; i < v.length; i++) v[i] /= norm;
  return true;
}
