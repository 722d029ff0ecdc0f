// Element types: the one parser of dtype names, and conversions between f32 and the 16-bit formats (round to
// nearest, ties to even).
import { NameMessage, requireName, typeError } from './validate';

/** Weight element types. f16/bf16 weights are stored as 16-bit patterns; all math accumulates in fp32. */
export type DType = 'f32' | 'f16' | 'bf16';

/** The element type names, in the order messages list them. */
export const DTYPES: readonly DType[] = ['f32', 'f16', 'bf16'];

/** Whether `value` names an element type. */
export function isDType(value: unknown): value is DType {
  return (DTYPES as readonly unknown[]).includes(value);
}

/** `value` as a DType; otherwise ERR_DYNAMOE_DTYPE naming `what` ("dtype must be 'f32', 'f16' or 'bf16', ..."). */
export function parseDType(value: unknown, what: string, message?: NameMessage): DType {
  return requireName(value, DTYPES, what, 'ERR_DYNAMOE_DTYPE', message);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bf16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x40) & 0xffff; // NaN stays NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

function f16Bits(value: number): number {
  f32[0] = value;
  const bits = u32[0];
  const sign = (bits >>> 16) & 0x8000;
  const abs = bits & 0x7fffffff;
  if (abs >= 0x7f800000) return sign | (abs > 0x7f800000 ? 0x7e00 : 0x7c00);
  if (abs >= 0x477ff000) return sign | 0x7c00; // rounds past 65504
  if (abs < 0x38800000) {
    // Subnormal: |value| / 2^-24 rounded to the nearest integer, ties to even.
    f32[0] = Math.abs(f32[0]) * 16777216;
    const scaled = f32[0];
    let whole = Math.floor(scaled);
    const frac = scaled - whole;
    if (frac > 0.5 || (frac === 0.5 && (whole & 1) === 1)) whole++;
    return sign | whole;
  }
  let rebased = abs - (112 << 23);
  rebased += 0xfff + ((rebased >>> 13) & 1);
  return sign | (rebased >>> 13);
}

function f16Value(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) return mantissa ? NaN : sign * Infinity;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function requireArray(value: unknown, kind: typeof Float32Array | typeof Uint16Array, what: string): void {
  if (!(value instanceof kind)) typeError(what, `a ${kind.name}`, value);
}

/** Converts f32 values to bf16 bit patterns. */
export function toBf16(values: Float32Array): Uint16Array {
  requireArray(values, Float32Array, 'toBf16 values');
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = bf16Bits(values[i]);
  return out;
}

/** Widens bf16 bit patterns to f32 (exact). */
export function fromBf16(bits: Uint16Array): Float32Array {
  requireArray(bits, Uint16Array, 'fromBf16 bits');
  const out = new Float32Array(bits.length);
  const outBits = new Uint32Array(out.buffer);
  for (let i = 0; i < bits.length; i++) outBits[i] = bits[i] << 16;
  return out;
}

/** Converts f32 values to IEEE half-precision bit patterns. */
export function toF16(values: Float32Array): Uint16Array {
  requireArray(values, Float32Array, 'toF16 values');
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = f16Bits(values[i]);
  return out;
}

/** Widens half-precision bit patterns to f32 (exact). */
export function fromF16(bits: Uint16Array): Float32Array {
  requireArray(bits, Uint16Array, 'fromF16 bits');
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = f16Value(bits[i]);
  return out;
}
