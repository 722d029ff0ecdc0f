// GGUF's quantized tensor types that dynamoe runs: their names, ggml type ids and block sizes. Quantized tensors
// are read as raw blocks and stay quantized in the native kernels (native/core/quant.h dequantizes them).

/** A quantized weight type, named as dynamoe's options and errors name it. */
export type QuantType =
  | 'q8_0'
  | 'q4_0'
  | 'q4_1'
  | 'q5_0'
  | 'q5_1'
  | 'q2_k'
  | 'q3_k'
  | 'q4_k'
  | 'q5_k'
  | 'q6_k'
  | 'iq4_nl'
  | 'iq4_xs'
  | 'mxfp4';

/** ggml type id -> the quantized type it is. */
export const GGML_QUANT_TYPES: Readonly<Record<number, QuantType>> = {
  2: 'q4_0',
  3: 'q4_1',
  6: 'q5_0',
  7: 'q5_1',
  8: 'q8_0',
  10: 'q2_k',
  11: 'q3_k',
  12: 'q4_k',
  13: 'q5_k',
  14: 'q6_k',
  20: 'iq4_nl',
  23: 'iq4_xs',
  39: 'mxfp4',
};

/** Values per block and bytes per block of each type. */
export const QUANT_BLOCKS: Readonly<Record<QuantType, { elements: number; bytes: number }>> = {
  q8_0: { elements: 32, bytes: 34 },
  q4_0: { elements: 32, bytes: 18 },
  q4_1: { elements: 32, bytes: 20 },
  q5_0: { elements: 32, bytes: 22 },
  q5_1: { elements: 32, bytes: 24 },
  q2_k: { elements: 256, bytes: 84 },
  q3_k: { elements: 256, bytes: 110 },
  q4_k: { elements: 256, bytes: 144 },
  q5_k: { elements: 256, bytes: 176 },
  q6_k: { elements: 256, bytes: 210 },
  iq4_nl: { elements: 32, bytes: 18 },
  iq4_xs: { elements: 256, bytes: 136 },
  mxfp4: { elements: 32, bytes: 17 },
};

// Byte offsets of each block's f16 scales (and mins) in each type; MXFP4's one scale is an E8M0 byte at 0.
const F16_SCALES: Readonly<Record<QuantType, readonly number[]>> = {
  q8_0: [0],
  q4_0: [0],
  q4_1: [0, 2],
  q5_0: [0],
  q5_1: [0, 2],
  q2_k: [80, 82],
  q3_k: [108],
  q4_k: [0, 2],
  q5_k: [0, 2],
  q6_k: [208],
  iq4_nl: [0],
  iq4_xs: [0],
  mxfp4: [],
};

/** The index of the first block whose scale is Infinity or NaN (f16 exponent all ones; E8M0 0xFF), or -1. */
export function firstNonFiniteBlock(type: QuantType, data: Uint8Array): number {
  const { bytes } = QUANT_BLOCKS[type];
  const offsets = F16_SCALES[type];
  const blocks = data.length / bytes;
  for (let b = 0, at = 0; b < blocks; b++, at += bytes) {
    if (type === 'mxfp4' && data[at] === 0xff) return b;
    for (const offset of offsets) {
      if ((data[at + offset + 1] & 0x7c) === 0x7c) return b;
    }
  }
  return -1;
}

/** The quantized types dynamoe writes (quantizing on load and `dynamoe quantize`). */
export type WritableQuantType = 'q8_0' | 'q4_0' | 'q4_k' | 'q6_k';
export const WRITABLE_QUANT_TYPES: readonly WritableQuantType[] = ['q8_0', 'q4_0', 'q4_k', 'q6_k'];

export function isWritableQuantType(value: unknown): value is WritableQuantType {
  return (WRITABLE_QUANT_TYPES as readonly unknown[]).includes(value);
}

export function isQuantType(value: unknown): value is QuantType {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(QUANT_BLOCKS, value);
}

/** Bytes of `rows` rows of `cols` values (cols a whole number of blocks). */
export function quantBytes(type: QuantType, rows: number, cols: number): number {
  const block = QUANT_BLOCKS[type];
  return rows * (cols / block.elements) * block.bytes;
}

/** A quantized [rows][cols] matrix as the native kernels take it: the file's blocks, row after row. */
export interface QuantizedMatrix {
  quant: QuantType;
  data: Uint8Array;
}
