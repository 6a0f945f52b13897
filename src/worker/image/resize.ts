/**
 * Bit-exact ports of PIL's `Image.resize(size, NEAREST)` and `Image.resize(size, BILINEAR)` for
 * packed 8-bit RGB. `keras.utils.load_img` resizes with PIL, so a model trained through Keras saw
 * exactly these pixels; libvips' kernels (sharp) sample at different positions and differ by whole
 * grey levels, so we do the resize ourselves on the decoded buffer.
 *
 * The arithmetic mirrors Pillow's C code step for step (double accumulation for NEAREST, fixed
 * point with 22 fractional bits for BILINEAR), because the rounding is where implementations that
 * are "the same algorithm" drift apart. Parity is tested against Pillow 9.4 outputs committed in
 * test/fixtures/images/reference/.
 */

/** Packed RGB pixels, 3 bytes per pixel, row-major. `DecodedImage` is one. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

const CHANNELS = 3;

/**
 * PIL NEAREST: output pixel x samples source column trunc(scale * (x + 0.5)), scale = in / out.
 * Pillow accumulates the position by repeated addition of `scale` in double precision (and so do
 * we); a closed-form product rounds differently for a few sizes.
 */
export function resizeNearestPil(src: RgbImage, outWidth: number, outHeight: number): RgbImage {
  checkSizes(src, outWidth, outHeight);
  const xs = nearestSourceIndices(src.width, outWidth);
  const ys = nearestSourceIndices(src.height, outHeight);
  const out = new Uint8Array(outWidth * outHeight * CHANNELS);
  const srcData = src.data;
  const srcStride = src.width * CHANNELS;
  // Column offsets in bytes, computed once: the inner loop is three loads and three stores.
  const xOffsets = new Int32Array(outWidth);
  for (let x = 0; x < outWidth; x++) xOffsets[x] = xs[x] * CHANNELS;
  let o = 0;
  for (let y = 0; y < outHeight; y++) {
    const rowStart = ys[y] * srcStride;
    for (let x = 0; x < outWidth; x++) {
      const i = rowStart + xOffsets[x];
      out[o] = srcData[i];
      out[o + 1] = srcData[i + 1];
      out[o + 2] = srcData[i + 2];
      o += CHANNELS;
    }
  }
  return { data: out, width: outWidth, height: outHeight };
}

/** Source index for every output index along one axis, as Pillow's `ImagingScaleAffine`. */
export function nearestSourceIndices(inSize: number, outSize: number): Int32Array {
  const scale = inSize / outSize;
  const indices = new Int32Array(outSize);
  let pos = scale * 0.5;
  for (let i = 0; i < outSize; i++) {
    // Pillow's COORD(): truncation toward zero; positions here are never negative.
    indices[i] = Math.min(Math.trunc(pos), inSize - 1);
    pos += scale;
  }
  return indices;
}

/** Fractional bits of Pillow's fixed-point resampling coefficients (32 - 8 - 2). */
const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);
const CLIP_HIGH = 255 * 2 ** PRECISION_BITS + 2 ** PRECISION_BITS; // (1 << PRECISION_BITS << 8)

/** Per-output-sample taps along one axis: first source index, tap count and weights. */
export interface ResampleTaps<W extends Float64Array | Int32Array> {
  /** Maximum taps per output sample; `weights` holds `outSize * ksize` entries. */
  ksize: number;
  start: Int32Array;
  count: Int32Array;
  weights: W;
}

/**
 * Pillow's `precompute_coeffs` for the triangle (bilinear) filter, as normalised doubles. When
 * shrinking, the filter's support widens by the scale factor, so every source pixel under an
 * output pixel contributes (an area-like average), unlike textbook 2-tap bilinear interpolation.
 * When enlarging this is plain half-pixel-centre bilinear interpolation with clamped edges.
 */
export function bilinearTaps(inSize: number, outSize: number): ResampleTaps<Float64Array> {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = 1.0 * filterScale; // bilinear filter support is 1
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Float64Array(outSize * ksize);
  const invFilterScale = 1.0 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const base = xx * ksize;
    let sum = 0;
    for (let x = 0; x < xmax; x++) {
      let d = (x + xmin - center + 0.5) * invFilterScale;
      if (d < 0) d = -d;
      const w = d < 1 ? 1 - d : 0;
      weights[base + x] = w;
      sum += w;
    }
    if (sum !== 0) for (let x = 0; x < xmax; x++) weights[base + x] /= sum;
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { ksize, start, count, weights };
}

/** `bilinearTaps` in Pillow's 8-bit fixed point (`normalize_coeffs_8bpc`). */
export function bilinearCoefficients(inSize: number, outSize: number): ResampleTaps<Int32Array> {
  const taps = bilinearTaps(inSize, outSize);
  const weights = new Int32Array(taps.weights.length);
  // Pillow rounds half away from zero with a C cast; bilinear weights are never negative.
  for (let i = 0; i < weights.length; i++) weights[i] = Math.trunc(0.5 + taps.weights[i] * (1 << PRECISION_BITS));
  return { ...taps, weights };
}

/** Pillow's clip8: drop the fractional bits, saturating to 0..255. */
function clip8(value: number): number {
  if (value >= CLIP_HIGH) return 255;
  if (value <= 0) return 0;
  return value >> PRECISION_BITS;
}

/**
 * PIL BILINEAR: separable, horizontal pass first into an 8-bit intermediate image (only the rows
 * the vertical pass will read), then the vertical pass. An axis whose size does not change is
 * skipped, as in Pillow.
 */
export function resizeBilinearPil(src: RgbImage, outWidth: number, outHeight: number): RgbImage {
  checkSizes(src, outWidth, outHeight);
  const needHorizontal = outWidth !== src.width;
  const needVertical = outHeight !== src.height;
  if (!needHorizontal && !needVertical) return { data: src.data.slice(), width: src.width, height: src.height };

  const vert = bilinearCoefficients(src.height, outHeight);
  let current: RgbImage = src;
  let rowOffset = 0;
  if (needHorizontal) {
    // Rows first..last are all the vertical pass touches (all rows when height is unchanged).
    const first = needVertical ? vert.start[0] : 0;
    const last = needVertical ? vert.start[outHeight - 1] + vert.count[outHeight - 1] : src.height;
    current = horizontalPass(src, outWidth, first, last);
    rowOffset = first;
  }
  if (needVertical) current = verticalPass(current, vert, rowOffset);
  return current;
}

function horizontalPass(src: RgbImage, outWidth: number, firstRow: number, lastRow: number): RgbImage {
  const { ksize, start, count, weights } = bilinearCoefficients(src.width, outWidth);
  const rows = lastRow - firstRow;
  const out = new Uint8Array(outWidth * rows * CHANNELS);
  const data = src.data;
  const srcStride = src.width * CHANNELS;
  let o = 0;
  for (let y = 0; y < rows; y++) {
    const rowBase = (y + firstRow) * srcStride;
    for (let xx = 0; xx < outWidth; xx++) {
      const n = count[xx];
      const kBase = xx * ksize;
      let i = rowBase + start[xx] * CHANNELS;
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let t = 0; t < n; t++, i += CHANNELS) {
        const k = weights[kBase + t];
        s0 += data[i] * k;
        s1 += data[i + 1] * k;
        s2 += data[i + 2] * k;
      }
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
      o += CHANNELS;
    }
  }
  return { data: out, width: outWidth, height: rows };
}

function verticalPass(src: RgbImage, coeffs: ResampleTaps<Int32Array>, rowOffset: number): RgbImage {
  const { ksize, start, count, weights } = coeffs;
  const outHeight = start.length;
  const width = src.width;
  const stride = width * CHANNELS;
  const out = new Uint8Array(width * outHeight * CHANNELS);
  const data = src.data;
  let o = 0;
  for (let yy = 0; yy < outHeight; yy++) {
    const n = count[yy];
    const kBase = yy * ksize;
    const firstRow = (start[yy] - rowOffset) * stride;
    for (let xb = 0; xb < stride; xb += CHANNELS) {
      let i = firstRow + xb;
      let s0 = HALF;
      let s1 = HALF;
      let s2 = HALF;
      for (let t = 0; t < n; t++, i += stride) {
        const k = weights[kBase + t];
        s0 += data[i] * k;
        s1 += data[i + 1] * k;
        s2 += data[i + 2] * k;
      }
      out[o] = clip8(s0);
      out[o + 1] = clip8(s1);
      out[o + 2] = clip8(s2);
      o += CHANNELS;
    }
  }
  return { data: out, width, height: outHeight };
}

/**
 * torchvision `Resize(size)` with an int size: the shorter side becomes `size` and the longer one
 * `int(size * long / short)` (truncated, as Python's `int()`), keeping the aspect ratio.
 */
export function shorterSideSize(width: number, height: number, size: number): { width: number; height: number } {
  if (width <= height) return { width: size, height: Math.trunc((size * height) / width) };
  return { width: Math.trunc((size * width) / height), height: size };
}

/**
 * Offsets of torchvision's `CenterCrop` along one axis: `int(round((size - crop) / 2))` with
 * Python's round-half-to-even, or, when the crop is larger than the image, the negative of the
 * zero padding torchvision adds first (`(crop - size) // 2` before, the rest after).
 */
export function centerCropOffset(size: number, crop: number): number {
  if (crop > size) return -Math.floor((crop - size) / 2);
  const twice = size - crop; // offset = twice / 2, rounded half to even
  const half = twice >> 1;
  return twice % 2 === 0 ? half : half % 2 === 0 ? half : half + 1;
}

/** The `width` x `height` window at (left, top) of `src`; pixels outside the source are 0 (black). */
export function cropRgb(src: RgbImage, left: number, top: number, width: number, height: number): RgbImage {
  checkSizes(src, width, height);
  if (left === 0 && top === 0 && width === src.width && height === src.height) return src;
  const out = new Uint8Array(width * height * CHANNELS);
  const x0 = Math.max(0, -left);
  const x1 = Math.min(width, src.width - left);
  for (let y = 0; y < height; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= src.height || x1 <= x0) continue;
    const from = (sy * src.width + left + x0) * CHANNELS;
    out.set(src.data.subarray(from, from + (x1 - x0) * CHANNELS), (y * width + x0) * CHANNELS);
  }
  return { data: out, width, height };
}

function checkSizes(src: RgbImage, outWidth: number, outHeight: number): void {
  if (!(Number.isInteger(outWidth) && Number.isInteger(outHeight) && outWidth > 0 && outHeight > 0)) {
    throw new RangeError(`resize target must be positive integers, got ${outWidth}x${outHeight}`);
  }
  if (!(src.width > 0 && src.height > 0) || src.data.length < src.width * src.height * CHANNELS) {
    throw new RangeError(`resize source ${src.width}x${src.height} needs ${src.width * src.height * CHANNELS} bytes, has ${src.data.length}`);
  }
}
