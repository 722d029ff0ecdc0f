// The float64 reference dequantizers of the GGML block formats (test/reference/quant-formats.ts), checked on blocks
// whose values are worked out by hand from the format definitions, and against llama.cpp's own dequantize_row_* on
// random blocks when node-llama-cpp's libraries are installed (`npm run bench:peers`; skipped, loudly, without them).
import * as fs from 'fs';
import * as path from 'path';
import { f32ToF16Bits } from './reference/dtype';
import { Rng } from './reference/random';
import {
  dequantizeReference,
  e8m0HalfScale,
  IQ4_VALUES,
  MXFP4_VALUES,
  QUANT_FORMATS,
  QUANT_TYPES,
  QuantType,
  randomBlocks,
} from './reference/quant-formats';
import { f32Disagreements } from './quant-checks';
import { llamaCppUnavailable, runQuantTool } from './quant-fixtures';
import { tempDir } from './model-fixtures';

/** Little-endian fp16 bytes of `value` (exactly representable in the tests that use it). */
const fp16Bytes = (value: number) => {
  const half = f32ToF16Bits(value);
  return [half & 0xff, half >> 8];
};

describe('hand-worked blocks', () => {
  test('Q8_0: d times the signed byte', () => {
    const block = Uint8Array.from([...fp16Bytes(0.5), ...Array.from({ length: 32 }, (_, j) => (j * 9) & 0xff)]);
    const expected = Array.from({ length: 32 }, (_, j) => 0.5 * (((j * 9) << 24) >> 24));
    expect(Array.from(dequantizeReference('q8_0', block, 1, 32))).toEqual(expected);
  });

  test('Q4_1 and Q5_1: byte j holds elements j (low nibble) and j + 16; qh bit j is the fifth bit of element j', () => {
    const codes = Array.from({ length: 16 }, (_, j) => j | ((15 - j) << 4));
    const q41 = Uint8Array.from([...fp16Bytes(2), ...fp16Bytes(-1), ...codes]);
    const expected41 = [...Array.from({ length: 16 }, (_, j) => 2 * j - 1), ...Array.from({ length: 16 }, (_, j) => 2 * (15 - j) - 1)];
    expect(Array.from(dequantizeReference('q4_1', q41, 1, 32))).toEqual(expected41);
    // Fifth bits set for elements 0 and 31 only.
    const q51 = Uint8Array.from([...fp16Bytes(2), ...fp16Bytes(-1), 0x01, 0x00, 0x00, 0x80, ...codes]);
    const expected51 = expected41.map((v, i) => (i === 0 || i === 31 ? v + 32 : v));
    expect(Array.from(dequantizeReference('q5_1', q51, 1, 32))).toEqual(expected51);
  });

  test('IQ4_NL and MXFP4: code books, E8M0 scale 2^(e - 128) against doubled E2M1 values', () => {
    const codes = Array.from({ length: 16 }, (_, j) => j | (j << 4));
    const iq4 = dequantizeReference('iq4_nl', Uint8Array.from([...fp16Bytes(0.25), ...codes]), 1, 32);
    expect(Array.from(iq4)).toEqual([...IQ4_VALUES, ...IQ4_VALUES].map((v) => 0.25 * v));
    // e = 127: scale 2^-1, so the values are E2M1's own: 0, 0.5, 1, 1.5, 2, 3, 4, 6 and their negatives.
    const mxfp4 = dequantizeReference('mxfp4', Uint8Array.from([127, ...codes]), 1, 32);
    expect(Array.from(mxfp4.subarray(0, 8))).toEqual([0, 0.5, 1, 1.5, 2, 3, 4, 6]);
    expect(Array.from(mxfp4.subarray(16, 32))).toEqual(MXFP4_VALUES.map((v) => v / 2));
    expect([0, 1, 2, 254, 255].map(e8m0HalfScale)).toEqual([2 ** -128, 2 ** -127, 2 ** -126, 2 ** 126, 2 ** 127]);
  });

  test('Q3_K: 6-bit scales split into nibbles (bytes 0-7) and 2-bit pairs (bytes 8-11), offset 32', () => {
    const block = new Uint8Array(110);
    // Sub-block 9 (elements 144..159): low nibble in the high half of byte 1, top bits at bits 4-5 of byte 9.
    block[96 + 1] = 0x70; // low 4 bits 7
    block[96 + 9] = 0x30; // high 2 bits 3: scale (7 | 3 << 4) - 32 = 23
    block.set(fp16Bytes(1), 108);
    // Element 144 = 128 + 16: qs byte 32 + 16, bits 0-1; its high bit is bit 4 of hmask[16].
    block[32 + 32 + 16] = 0x02;
    block[16] = 0x10;
    const values = dequantizeReference('q3_k', block, 1, 256);
    expect(values[144]).toBe(23 * (2 + 4 - 4));
    // Element 145: no bits set: code 0 - 4.
    expect(values[145]).toBe(23 * -4);
    // Every sub-block but 9 has scale -32 and codes -4: 128 each.
    expect(values[0]).toBe(128);
  });

  test('Q4_K: sub-blocks 4-7 take their 6-bit scale and min from a shared byte and the top bits of two others', () => {
    const block = new Uint8Array(144);
    block.set([...fp16Bytes(1), ...fp16Bytes(0.5)], 0);
    // Sub-block 5: scale low 4 bits = low nibble of byte 9, high bits = top of byte 1; min from high nibble of
    // byte 9 and the top of byte 5.
    block[4 + 9] = 0x2a; // scale low 0xa, min low 0x2
    block[4 + 1] = 0xc0; // scale high 3 -> scale 0x3a = 58
    block[4 + 5] = 0x40; // min high 1 -> min 0x12 = 18
    // Element 160 (sub-block 5 starts at 160 = 128 + 32): qs byte 16 + 32 * 2 + 0, high nibble.
    block[16 + 64] = 0x70;
    const values = dequantizeReference('q4_k', block, 1, 256);
    expect(values[160]).toBe(58 * 7 - 0.5 * 18);
    expect(values[161]).toBe(-0.5 * 18);
  });

  test('IQ4_XS: 6-bit sub-block scales from scales_l nibbles and scales_h bit pairs, offset 32', () => {
    const block = new Uint8Array(136);
    block.set(fp16Bytes(0.5), 0);
    block[2] = 0x00; // scales_h bits for sub-blocks 0-3
    block[3] = 0x0c; // sub-block 5: bits 10-11 of scales_h = 3
    block[4 + 2] = 0x90; // sub-block 5: high nibble of scales_l[2] = 9 -> scale (9 | 3 << 4) - 32 = 25
    block[8 + 16 * 5] = 0xf0; // element 160 low nibble 0, element 176 high nibble 15
    const values = dequantizeReference('iq4_xs', block, 1, 256);
    expect(values[160]).toBe(0.5 * 25 * IQ4_VALUES[0]);
    expect(values[176]).toBe(0.5 * 25 * IQ4_VALUES[15]);
    expect(values[0]).toBe(0.5 * -32 * IQ4_VALUES[0]);
  });
});

test('random blocks: whole blocks of the right size, realistic scales finite and bounded, extreme ones hitting the limits', () => {
  const rng = new Rng(3);
  for (const type of QUANT_TYPES) {
    const { blockElements, blockBytes } = QUANT_FORMATS[type];
    const bytes = randomBlocks(type, 3, 2 * blockElements, rng);
    expect(bytes.length).toBe(6 * blockBytes);
    const values = dequantizeReference(type, bytes, 3, 2 * blockElements);
    expect(values.every(Number.isFinite)).toBe(true);
    expect(values.some((v) => v !== 0)).toBe(true);
    const extreme = dequantizeReference(type, randomBlocks(type, 64, blockElements, rng, { scales: 'extreme' }), 64, blockElements);
    const largest = extreme.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(largest).toBeGreaterThan(type === 'mxfp4' ? 2 ** 126 : 65504);
  }
});

const unavailable = llamaCppUnavailable();
if (unavailable !== null) {
  test("against llama.cpp's dequantize_row_* (skipped)", () => {
    console.warn(`SKIPPED: the reference dequantizers were not checked against llama.cpp: ${unavailable}`);
  });
} else {
  // ggml's names for the types, as in dequantize_row_<name>.
  const GGML_NAMES: Record<QuantType, string> = {
    q8_0: 'q8_0', q4_0: 'q4_0', q4_1: 'q4_1', q5_0: 'q5_0', q5_1: 'q5_1', q2_k: 'q2_K', q3_k: 'q3_K', q4_k: 'q4_K',
    q5_k: 'q5_K', q6_k: 'q6_K', iq4_nl: 'iq4_nl', iq4_xs: 'iq4_xs', mxfp4: 'mxfp4',
  };
  const CASES = [
    { rows: 1, blocksPerRow: 1, scales: 'realistic' },
    { rows: 37, blocksPerRow: 3, scales: 'realistic' },
    { rows: 64, blocksPerRow: 16, scales: 'extreme' },
  ] as const;

  test("the reference gives llama.cpp's dequantize_row_* values, correctly rounded to f32, for every type", () => {
    const temp = tempDir('dynamoe-quant-reference-');
    try {
      const rng = new Rng(37);
      const jobs = QUANT_TYPES.flatMap((type) => CASES.map((c, i) => {
        const cols = c.blocksPerRow * QUANT_FORMATS[type].blockElements;
        const bytes = randomBlocks(type, c.rows, cols, rng, { scales: c.scales });
        const stem = path.join(temp.dir, `${type}-${i}`);
        fs.writeFileSync(`${stem}.in`, bytes);
        return { type, ...c, cols, bytes, stem };
      }));
      runQuantTool('ggml-dequantize.py', jobs.map((j) => `${GGML_NAMES[j.type]}:${j.rows * j.cols}:${j.stem}.in:${j.stem}.out`));
      const problems = jobs.flatMap((j) => {
        const out = fs.readFileSync(`${j.stem}.out`);
        const llama = new Float32Array(out.buffer, out.byteOffset, out.length / 4);
        const reference = dequantizeReference(j.type, j.bytes, j.rows, j.cols);
        return f32Disagreements(llama, reference, j.cols, 'correctly-rounded').map((d) => `${j.type} ${j.rows}x${j.cols} ${j.scales}: ${d}`);
      });
      expect(problems).toEqual([]);
    } finally {
      temp.cleanup();
    }
  });
}
