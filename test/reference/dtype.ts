// Float64 test reference: bf16 / f16: our own round-to-nearest-even conversions (cross-checked against lib's in the tests)

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function f32ToBf16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0];
}

export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | (mantissa !== 0 ? 0x7e00 : 0x7c00);
  const magnitude = Math.abs(f32Scratch[0]);
  if (magnitude >= 65520) return sign | 0x7c00; // 65520 is the tie between 65504 and 2^16: even -> infinity
  if (magnitude < 2 ** -14) {
    // subnormal f16: units of 2^-24; magnitude * 2^24 is exact in float64
    const units = magnitude * 2 ** 24;
    let rounded = Math.floor(units);
    const rest = units - rounded;
    if (rest > 0.5 || (rest === 0.5 && (rounded & 1) === 1)) rounded++;
    return sign | rounded;
  }
  const halfMantissa = mantissa >>> 13;
  const rest = mantissa & 0x1fff;
  let half = ((exponent - 127 + 15) << 10) | halfMantissa;
  if (rest > 0x1000 || (rest === 0x1000 && (halfMantissa & 1) === 1)) half++;
  return sign | half;
}

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export type WeightDtype = 'f32' | 'f16' | 'bf16';

export function toBitsArray(values: Float32Array, dtype: 'f16' | 'bf16'): Uint16Array {
  const convert = dtype === 'bf16' ? f32ToBf16Bits : f32ToF16Bits;
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = convert(values[i]);
  return out;
}

export function fromBitsArray(bits: Uint16Array, dtype: 'f16' | 'bf16'): Float32Array {
  const convert = dtype === 'bf16' ? bf16BitsToF32 : f16BitsToF32;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = convert(bits[i]);
  return out;
}

/** The values a layer of `dtype` actually holds for these f32 weights (identity for f32). */
export function quantise(values: Float32Array, dtype: WeightDtype): Float32Array {
  return dtype === 'f32' ? values : fromBitsArray(toBitsArray(values, dtype), dtype);
}
