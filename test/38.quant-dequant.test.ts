// The addon's dequantizer of every GGML quantized type against the float64 reference written from the format
// definitions (test/reference/quant-formats.ts), on random blocks of many shapes and scales; and its refusals.
import { native } from '../lib/addon/native';
import { Rng } from './reference/random';
import { QUANT_FORMATS, QUANT_TYPES, QuantType, dequantizeReference, quantizedBytes, randomBlocks } from './reference/quant-formats';
import { f32Disagreements } from './quant-checks';

/** The addon's dequantizer: `data` holds rows x cols values of `type` in whole blocks; returns them as f32. */
type Dequantize = (type: string, data: Uint8Array, rows: number, cols: number) => Float32Array;
const dequantize: Dequantize = (type, data, rows, cols) =>
  (native() as unknown as { dequantize: Dequantize }).dequantize(type, data, rows, cols);

/** The code of the error `fn` throws ('returned' when it throws none); addon errors are checked by shape. */
function errorCode(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    return String((error as { code?: unknown }).code);
  }
  return 'returned';
}

// Every value is exact in float64 and at most one rounding from f32 (a scale product of <= 25 significant bits), so
// the addon must give an exact f32 value exactly, and any other within 1 ulp.
function expectMatchesReference(type: QuantType, bytes: Uint8Array, rows: number, cols: number): void {
  const values = dequantize(type, bytes, rows, cols);
  expect(Object.prototype.toString.call(values)).toBe('[object Float32Array]');
  expect(f32Disagreements(values, dequantizeReference(type, bytes, rows, cols), cols, 'within-1-ulp')).toEqual([]);
}

describe.each(QUANT_TYPES.map((type) => [type]))('%s', (type) => {
  const { blockElements } = QUANT_FORMATS[type];
  // Rows x blocks per row: one block, one row of several, odd row counts, and the largest (2^20 values).
  const SHAPES: ReadonlyArray<readonly [number, number]> = [[1, 1], [1, 7], [3, 1], [5, 3], [17, 2], [33, 5], [2 ** 20 / blockElements / 16, 16]];

  test.each(SHAPES.map(([rows, blocks]) => [rows, blocks * blockElements]))('%d x %d random blocks, realistic scales', (rows, cols) => {
    const rng = new Rng(rows * 7919 + cols);
    expectMatchesReference(type, randomBlocks(type, rows, cols, rng), rows, cols);
  });

  test('extreme scales: largest and smallest fp16 (normal and subnormal), signed zeros; E8M0 0, 1, 2, 254, 255', () => {
    const rng = new Rng(38);
    expectMatchesReference(type, randomBlocks(type, 257, 4 * blockElements, rng, { scales: 'extreme' }), 257, 4 * blockElements);
  });

  test('a block that is all zero bytes', () => {
    expectMatchesReference(type, new Uint8Array(QUANT_FORMATS[type].blockBytes), 1, blockElements);
  });

  test('blocks at an odd byte offset of their buffer (scales read unaligned)', () => {
    const blocks = randomBlocks(type, 3, 2 * blockElements, new Rng(5));
    const buffer = new Uint8Array(blocks.length + 3);
    buffer.set(blocks, 3);
    expectMatchesReference(type, buffer.subarray(3), 3, 2 * blockElements);
  });

  test('data that is not the whole blocks of rows x cols, and cols that are not whole blocks: ERR_DYNAMOE_SHAPE', () => {
    const bytes = randomBlocks(type, 2, 2 * blockElements, new Rng(1));
    expect(errorCode(() => dequantize(type, bytes.subarray(0, bytes.length - 1), 2, 2 * blockElements))).toBe('ERR_DYNAMOE_SHAPE');
    expect(errorCode(() => dequantize(type, Uint8Array.from([...bytes, 0]), 2, 2 * blockElements))).toBe('ERR_DYNAMOE_SHAPE');
    expect(errorCode(() => dequantize(type, bytes, 2, blockElements))).toBe('ERR_DYNAMOE_SHAPE');
    // 8 rows of half a block: as many values as the bytes hold, but rows that split blocks.
    expect(errorCode(() => dequantize(type, bytes, 8, blockElements / 2))).toBe('ERR_DYNAMOE_SHAPE');
  });
});

test('an unknown type name (not a ggml type, a llama.cpp file type, empty): ERR_DYNAMOE_DTYPE', () => {
  const bytes = new Uint8Array(quantizedBytes('q8_0', 1, 32));
  for (const name of ['q7_0', 'q4_k_m', '']) expect(errorCode(() => dequantize(name, bytes, 1, 32))).toBe('ERR_DYNAMOE_DTYPE');
});
