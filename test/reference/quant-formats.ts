// Float64 test reference: GGML's quantized block formats (ggml-common.h block_* layouts, dequantized as ggml's
// dequantize_row_* define them), written from the format definitions and independent of lib/ and native/.
// Every value is computed exactly in float64: an fp16 scale times a small integer code never needs more than 53 bits.
import { f16BitsToF32, f32ToF16Bits } from './dtype';
import { Rng } from './random';

export type QuantType =
  | 'q8_0' | 'q4_0' | 'q4_1' | 'q5_0' | 'q5_1' | 'q2_k' | 'q3_k' | 'q4_k' | 'q5_k' | 'q6_k' | 'iq4_nl' | 'iq4_xs' | 'mxfp4';

export const QUANT_TYPES: readonly QuantType[] =
  ['q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k', 'iq4_nl', 'iq4_xs', 'mxfp4'];

export interface QuantFormat {
  /** Elements per block. */
  blockElements: number;
  /** Bytes per block. */
  blockBytes: number;
  /** The type id in GGUF files (enum ggml_type). */
  ggmlType: number;
  /** Byte offsets of the fp16 scales (d, and m / dmin where the format has one) inside a block. */
  fp16Scales: readonly number[];
}

export const QUANT_FORMATS: Readonly<Record<QuantType, QuantFormat>> = {
  q8_0: { blockElements: 32, blockBytes: 34, ggmlType: 8, fp16Scales: [0] },
  q4_0: { blockElements: 32, blockBytes: 18, ggmlType: 2, fp16Scales: [0] },
  q4_1: { blockElements: 32, blockBytes: 20, ggmlType: 3, fp16Scales: [0, 2] },
  q5_0: { blockElements: 32, blockBytes: 22, ggmlType: 6, fp16Scales: [0] },
  q5_1: { blockElements: 32, blockBytes: 24, ggmlType: 7, fp16Scales: [0, 2] },
  q2_k: { blockElements: 256, blockBytes: 84, ggmlType: 10, fp16Scales: [80, 82] },
  q3_k: { blockElements: 256, blockBytes: 110, ggmlType: 11, fp16Scales: [108] },
  q4_k: { blockElements: 256, blockBytes: 144, ggmlType: 12, fp16Scales: [0, 2] },
  q5_k: { blockElements: 256, blockBytes: 176, ggmlType: 13, fp16Scales: [0, 2] },
  q6_k: { blockElements: 256, blockBytes: 210, ggmlType: 14, fp16Scales: [208] },
  iq4_nl: { blockElements: 32, blockBytes: 18, ggmlType: 20, fp16Scales: [0] },
  iq4_xs: { blockElements: 256, blockBytes: 136, ggmlType: 23, fp16Scales: [0] },
  mxfp4: { blockElements: 32, blockBytes: 17, ggmlType: 39, fp16Scales: [] },
};

/** IQ4_NL / IQ4_XS code book (kvalues_iq4nl): a non-uniform 4-bit grid, dense near zero. */
export const IQ4_VALUES: readonly number[] = [-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113];

/** MXFP4 code book: the E2M1 values doubled (kvalues_mxfp4); the E8M0 scale is halved to match. */
export const MXFP4_VALUES: readonly number[] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/** The MXFP4 block scale for E8M0 byte `e`, halved (the code book is doubled): 2^(e - 128). ggml has no NaN code. */
export function e8m0HalfScale(e: number): number {
  return 2 ** (e - 128);
}

type BlockDecoder = (b: Uint8Array, at: number, out: Float64Array, to: number) => void;

const fp16 = (b: Uint8Array, at: number) => f16BitsToF32(b[at] | (b[at + 1] << 8));
const u32 = (b: Uint8Array, at: number) => (b[at] | (b[at + 1] << 8) | (b[at + 2] << 16) | (b[at + 3] << 24)) >>> 0;
const int8 = (byte: number) => (byte << 24) >> 24;

/**
 * The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block from its 12 packed bytes: sub-blocks 0-3 keep
 * theirs in the low 6 bits of bytes j and j + 4; sub-blocks 4-7 take their low 4 bits from byte j + 4 (scale low
 * nibble, min high nibble) and their top 2 bits from the spare top bits of bytes j - 4 (scale) and j (min).
 */
function kScaleMin(b: Uint8Array, scales: number, j: number): [number, number] {
  if (j < 4) return [b[scales + j] & 63, b[scales + j + 4] & 63];
  const packed = b[scales + j + 4];
  return [(packed & 15) | ((b[scales + j - 4] >> 6) << 4), (packed >> 4) | ((b[scales + j] >> 6) << 4)];
}

/**
 * The signed 6-bit scale of sub-block s (0..15) of a Q3_K block: low 4 bits in the nibbles of bytes 0-7 (s < 8: low
 * nibble of byte s; else high nibble of byte s - 8), top 2 bits in bytes 8-11 (byte 8 + s % 4, bits 2 * floor(s / 4)),
 * stored with an offset of 32.
 */
function q3kScale(b: Uint8Array, scales: number, s: number): number {
  const low = s < 8 ? b[scales + s] & 15 : b[scales + s - 8] >> 4;
  const high = (b[scales + 8 + (s % 4)] >> (2 * (s >> 2))) & 3;
  return (low | (high << 4)) - 32;
}

// Blocks of 32 (Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL, MXFP4): byte j holds element j in its low nibble, j + 16 in its high.
const DECODERS: Readonly<Record<QuantType, BlockDecoder>> = {
  q8_0: (b, at, out, to) => {
    const d = fp16(b, at);
    for (let j = 0; j < 32; j++) out[to + j] = d * int8(b[at + 2 + j]);
  },
  q4_0: (b, at, out, to) => {
    const d = fp16(b, at);
    for (let j = 0; j < 16; j++) {
      out[to + j] = d * ((b[at + 2 + j] & 15) - 8);
      out[to + j + 16] = d * ((b[at + 2 + j] >> 4) - 8);
    }
  },
  q4_1: (b, at, out, to) => {
    const d = fp16(b, at);
    const m = fp16(b, at + 2);
    for (let j = 0; j < 16; j++) {
      out[to + j] = d * (b[at + 4 + j] & 15) + m;
      out[to + j + 16] = d * (b[at + 4 + j] >> 4) + m;
    }
  },
  // The fifth bit of element j is bit j of the little-endian u32 qh.
  q5_0: (b, at, out, to) => {
    const d = fp16(b, at);
    const qh = u32(b, at + 2);
    for (let j = 0; j < 16; j++) {
      out[to + j] = d * (((b[at + 6 + j] & 15) | (((qh >>> j) & 1) << 4)) - 16);
      out[to + j + 16] = d * (((b[at + 6 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16);
    }
  },
  q5_1: (b, at, out, to) => {
    const d = fp16(b, at);
    const m = fp16(b, at + 2);
    const qh = u32(b, at + 4);
    for (let j = 0; j < 16; j++) {
      out[to + j] = d * ((b[at + 8 + j] & 15) | (((qh >>> j) & 1) << 4)) + m;
      out[to + j + 16] = d * ((b[at + 8 + j] >> 4) | (((qh >>> (j + 16)) & 1) << 4)) + m;
    }
  },
  // scales[16] (low nibble: scale, high nibble: min, per 16 elements), qs[64], d, dmin. In each half of 128 elements,
  // element 32 * k + l has its 2 bits at bits 2k of qs[32 * half + l].
  q2_k: (b, at, out, to) => {
    const d = fp16(b, at + 80);
    const dmin = fp16(b, at + 82);
    for (let e = 0; e < 256; e++) {
      const q = (b[at + 16 + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
      const sc = b[at + (e >> 4)];
      out[to + e] = d * (sc & 15) * q - dmin * (sc >> 4);
    }
  },
  // hmask[32], qs[64], scales[12], d. Low 2 bits as Q2_K; the third bit of element e is bit floor(e / 32) of
  // hmask[e % 32]; codes are (low | high << 2) - 4.
  q3_k: (b, at, out, to) => {
    const d = fp16(b, at + 108);
    for (let e = 0; e < 256; e++) {
      const low = (b[at + 32 + 32 * (e >> 7) + (e & 31)] >> (2 * ((e >> 5) & 3))) & 3;
      const high = (b[at + (e & 31)] >> (e >> 5)) & 1;
      out[to + e] = d * q3kScale(b, at + 96, e >> 4) * ((low | (high << 2)) - 4);
    }
  },
  // d, dmin, scales[12], qs[128]. Each 64 elements share 32 bytes: the first 32 elements the low nibbles.
  q4_k: (b, at, out, to) => {
    const d = fp16(b, at);
    const dmin = fp16(b, at + 2);
    for (let e = 0; e < 256; e++) {
      const [sc, m] = kScaleMin(b, at + 4, e >> 5);
      const q = (b[at + 16 + 32 * (e >> 6) + (e & 31)] >> (4 * ((e >> 5) & 1))) & 15;
      out[to + e] = d * sc * q - dmin * m;
    }
  },
  // d, dmin, scales[12], qh[32], qs[128]: Q4_K's nibbles plus a fifth bit, bit floor(e / 32) of qh[e % 32].
  q5_k: (b, at, out, to) => {
    const d = fp16(b, at);
    const dmin = fp16(b, at + 2);
    for (let e = 0; e < 256; e++) {
      const [sc, m] = kScaleMin(b, at + 4, e >> 5);
      const low = (b[at + 48 + 32 * (e >> 6) + (e & 31)] >> (4 * ((e >> 5) & 1))) & 15;
      const high = (b[at + 16 + (e & 31)] >> (e >> 5)) & 1;
      out[to + e] = d * sc * (low | (high << 4)) - dmin * m;
    }
  },
  // ql[128], qh[64], int8 scales[16], d. In each half of 128 elements, element 32 * k + l: low 4 bits in
  // ql[64 * half + l + 32 * (k & 1)] (low nibble for k < 2), top 2 bits at bits 2k of qh[32 * half + l]; codes - 32.
  q6_k: (b, at, out, to) => {
    const d = fp16(b, at + 208);
    for (let e = 0; e < 256; e++) {
      const half = e >> 7;
      const k = (e >> 5) & 3;
      const l = e & 31;
      const low = (b[at + 64 * half + l + 32 * (k & 1)] >> (4 * (k >> 1))) & 15;
      const high = (b[at + 128 + 32 * half + l] >> (2 * k)) & 3;
      out[to + e] = d * int8(b[at + 192 + (e >> 4)]) * ((low | (high << 4)) - 32);
    }
  },
  iq4_nl: (b, at, out, to) => {
    const d = fp16(b, at);
    for (let j = 0; j < 16; j++) {
      out[to + j] = d * IQ4_VALUES[b[at + 2 + j] & 15];
      out[to + j + 16] = d * IQ4_VALUES[b[at + 2 + j] >> 4];
    }
  },
  // d, u16 scales_h, scales_l[4], qs[128]. Sub-block s (32 elements) has the 6-bit scale (low nibble s % 2 of
  // scales_l[s / 2]) | (bits 2s of scales_h) << 4, offset 32; its 16 bytes pair element j with j + 16 like IQ4_NL.
  iq4_xs: (b, at, out, to) => {
    const d = fp16(b, at);
    const scalesHigh = b[at + 2] | (b[at + 3] << 8);
    for (let s = 0; s < 8; s++) {
      const low = (b[at + 4 + (s >> 1)] >> (4 * (s & 1))) & 15;
      const scale = d * ((low | (((scalesHigh >> (2 * s)) & 3) << 4)) - 32);
      for (let j = 0; j < 16; j++) {
        const byte = b[at + 8 + 16 * s + j];
        out[to + 32 * s + j] = scale * IQ4_VALUES[byte & 15];
        out[to + 32 * s + j + 16] = scale * IQ4_VALUES[byte >> 4];
      }
    }
  },
  mxfp4: (b, at, out, to) => {
    const scale = e8m0HalfScale(b[at]);
    for (let j = 0; j < 16; j++) {
      out[to + j] = scale * MXFP4_VALUES[b[at + 1 + j] & 15];
      out[to + j + 16] = scale * MXFP4_VALUES[b[at + 1 + j] >> 4];
    }
  },
};

function checkShape(type: QuantType, rows: number, cols: number): QuantFormat {
  const format = QUANT_FORMATS[type];
  if (format === undefined) throw new Error(`unknown quantized type ${String(type)}`);
  if (!Number.isSafeInteger(rows) || rows < 0 || !Number.isSafeInteger(cols) || cols % format.blockElements !== 0) {
    throw new Error(`${type}: ${rows} x ${cols} is not whole rows of ${format.blockElements}-element blocks`);
  }
  return format;
}

/** Bytes of a rows x cols matrix of `type`. */
export function quantizedBytes(type: QuantType, rows: number, cols: number): number {
  const format = checkShape(type, rows, cols);
  return ((rows * cols) / format.blockElements) * format.blockBytes;
}

/** The exact values of a rows x cols matrix stored as `type` (rows of whole blocks, as in a GGUF tensor). */
export function dequantizeReference(type: QuantType, bytes: Uint8Array, rows: number, cols: number): Float64Array {
  const { blockElements, blockBytes } = checkShape(type, rows, cols);
  const blocks = (rows * cols) / blockElements;
  if (bytes.length !== blocks * blockBytes) {
    throw new Error(`${type}: ${rows} x ${cols} takes ${blocks * blockBytes} bytes, got ${bytes.length}`);
  }
  const out = new Float64Array(rows * cols);
  const decode = DECODERS[type];
  for (let i = 0; i < blocks; i++) decode(bytes, i * blockBytes, out, i * blockElements);
  return out;
}

export interface RandomBlockOptions {
  /**
   * 'realistic' (default): fp16 scales of magnitude 1e-3..1e-1 with random signs, E8M0 exponents for 2^-17..2^3.
   * 'extreme': each scale one of ±65504 (largest fp16), ±2^-14 (smallest normal), the largest and smallest
   * subnormals, ±0; E8M0 bytes 0, 1, 2, 254, 255 (its two subnormal and two largest scales).
   */
  scales?: 'realistic' | 'extreme';
}

const EXTREME_FP16_BITS: readonly number[] = [0x7bff, 0xfbff, 0x0400, 0x8400, 0x03ff, 0x0001, 0x8001, 0x0000, 0x8000];
const EXTREME_E8M0: readonly number[] = [0, 1, 2, 254, 255];

/** Valid random blocks for a rows x cols matrix: random codes (every bit pattern is a valid code) and chosen scales. */
export function randomBlocks(type: QuantType, rows: number, cols: number, rng: Rng, options: RandomBlockOptions = {}): Uint8Array {
  const { blockBytes, fp16Scales } = QUANT_FORMATS[type];
  const bytes = new Uint8Array(quantizedBytes(type, rows, cols));
  for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(0, 255);
  const extreme = options.scales === 'extreme';
  const randomFp16 = () => {
    if (extreme) return rng.pick(EXTREME_FP16_BITS);
    const magnitude = 10 ** rng.uniform(-3, -1);
    return f32ToF16Bits(rng.next() < 0.5 ? -magnitude : magnitude);
  };
  for (let at = 0; at < bytes.length; at += blockBytes) {
    for (const offset of fp16Scales) {
      const bits = randomFp16();
      bytes[at + offset] = bits & 0xff;
      bytes[at + offset + 1] = bits >> 8;
    }
    if (type === 'mxfp4') bytes[at] = extreme ? rng.pick(EXTREME_E8M0) : rng.int(111, 131);
  }
  return bytes;
}
