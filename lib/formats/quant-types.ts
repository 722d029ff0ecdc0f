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

// ggml type id -> [name, elements per block, bytes per block] (ggml's type traits; ids 4, 5, 31-33, 36-38 removed).
export const GGML_TYPES: Readonly<Record<number, readonly [string, number, number]>> = {
  0: ['F32', 1, 4], 1: ['F16', 1, 2], 2: ['Q4_0', 32, 18], 3: ['Q4_1', 32, 20], 6: ['Q5_0', 32, 22],
  7: ['Q5_1', 32, 24], 8: ['Q8_0', 32, 34], 9: ['Q8_1', 32, 36], 10: ['Q2_K', 256, 84], 11: ['Q3_K', 256, 110],
  12: ['Q4_K', 256, 144], 13: ['Q5_K', 256, 176], 14: ['Q6_K', 256, 210], 15: ['Q8_K', 256, 292],
  16: ['IQ2_XXS', 256, 66], 17: ['IQ2_XS', 256, 74], 18: ['IQ3_XXS', 256, 98], 19: ['IQ1_S', 256, 50],
  20: ['IQ4_NL', 32, 18], 21: ['IQ3_S', 256, 110], 22: ['IQ2_S', 256, 82], 23: ['IQ4_XS', 256, 136],
  24: ['I8', 1, 1], 25: ['I16', 1, 2], 26: ['I32', 1, 4], 27: ['I64', 1, 8], 28: ['F64', 1, 8],
  29: ['IQ1_M', 256, 56], 30: ['BF16', 1, 2], 34: ['TQ1_0', 256, 54], 35: ['TQ2_0', 256, 66], 39: ['MXFP4', 32, 17],
  40: ['NVFP4', 64, 36], 41: ['Q1_0', 128, 18],
};

/** Values per block and bytes per block of each quantized type dynamoe runs (from {@link GGML_TYPES}). */
export const QUANT_BLOCKS = Object.fromEntries(
  Object.entries(GGML_QUANT_TYPES).map(([id, type]) => {
    const [, elements, bytes] = GGML_TYPES[Number(id)];
    return [type, { elements, bytes }];
  }),
) as Readonly<Record<QuantType, { elements: number; bytes: number }>>;

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
