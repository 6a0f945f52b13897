/**
 * IEEE 754 binary16 ("half") encoding for graph initializers. Node 20 has no Float16Array, and
 * weights are converted once per compile, so a scalar bit-twiddling loop is enough.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The float16 bit pattern nearest to `value` (round to nearest, ties to even; overflow → ±inf). */
export function float16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal half: value / 2^-24, from the 24-bit significand (implicit bit included).
    if (e < -10) return sign;
    const significand = mantissa | 0x800000;
    const shift = 14 - e;
    return sign | roundShift(significand, shift);
  }
  // A carry out of the mantissa bumps the exponent, which is the correctly rounded result (up to inf).
  return sign | (((e << 10) | (mantissa >>> 13)) + roundingCarry(mantissa, 13, (mantissa >>> 13) & 1));
}

function roundShift(bits: number, shift: number): number {
  const kept = bits >>> shift;
  return kept + roundingCarry(bits, shift, kept & 1);
}

/** 1 when the `shift` dropped low bits round the kept part up (nearest, ties to even). */
function roundingCarry(bits: number, shift: number, lowestKept: number): number {
  const dropped = bits & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return dropped > half || (dropped === half && lowestKept === 1) ? 1 : 0;
}

/** float32 values → float16 bit patterns. */
export function toFloat16(values: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = float16Bits(values[i]);
  return out;
}

/** The number a float16 bit pattern stands for (the inverse, for checks and tests). */
export function float16Value(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0x1f) return mantissa !== 0 ? Number.NaN : sign * Infinity;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
