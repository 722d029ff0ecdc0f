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
