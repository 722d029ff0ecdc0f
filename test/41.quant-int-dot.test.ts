// The quantized GEMM kernels of every kernel family against float64 references, through the same GEMM driver the
// models use (native quantMatmul):
// - 'q8' activations (the default): Q8_0, Q4_0, MXFP4, Q4_K, Q5_K and Q6_K weights multiply 8-bit activations. The
//   reference quantizes each activation row as ggml defines its blocks (written here from the definitions, not
//   from the addon): Q8_0 blocks of 32 for Q8_0, Q4_0 and MXFP4 weights, d = max|x| / 127 and q = roundf(x * (1/d))
//   (f32 arithmetic, halves away from zero); Q8_K blocks of 256 for Q4_K, Q5_K and Q6_K, iscale = -127 / (the value of
//   largest magnitude), q = min(127, nearest-even(iscale * x)), d = 1 / iscale. Then out = sum over k of
//   w[k] * q[k] * d in float64, with w the reference dequantization of the weights.
// - 'f32' activations: every quantized type's exact f32 dot products of the dequantized weights.
// Both paths must give a row the same bits whatever other rows share its call (batch invariance).
import { cpuInfo, setCpuIsa, setQuantActivations } from '../lib';
import type { CpuIsa } from '../lib';
import { native } from '../lib/addon/native';
import { dequantizeReference, QUANT_TYPES, QuantType, randomBlocks } from './reference/quant-formats';
import { Rng } from './reference/random';

const INTEGER_TYPES: readonly QuantType[] = ['q8_0', 'q4_0', 'mxfp4', 'q4_k', 'q5_k', 'q6_k'];
const isSuperBlock = (type: QuantType) => type === 'q4_k' || type === 'q5_k' || type === 'q6_k';

/** Half-away-from-zero rounding (C roundf) and nearest-even rounding (nearbyint in the default mode). */
const roundAway = (v: number) => Math.sign(v) * Math.round(Math.abs(v));
function roundEven(v: number): number {
  const r = Math.round(v); // halves toward +Infinity
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** One activation row as the weights of `type` see it on the integer path: the dequantized 8-bit values. */
export function quantizedActivations(type: QuantType, x: ArrayLike<number>): Float64Array {
  const f = Math.fround;
  const block = isSuperBlock(type) ? 256 : 32;
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length; b += block) {
    let amax = 0;
    let max = 0;
    for (let j = b; j < b + block; j++) {
      if (Math.abs(x[j]) > amax) {
        amax = Math.abs(x[j]);
        max = x[j];
      }
    }
    if (!isSuperBlock(type)) {
      const d = f(amax / 127);
      const id = d !== 0 ? f(1 / d) : 0;
      for (let j = b; j < b + block; j++) out[j] = roundAway(f(x[j] * id)) * d;
    } else if (amax !== 0) {
      const iscale = f(-127 / max);
      const d = f(1 / iscale);
      for (let j = b; j < b + block; j++) out[j] = Math.min(127, roundEven(f(iscale * x[j]))) * d;
    }
  }
  return out;
}

/** input [m][k] times dequantized weights [n][k] transposed, in float64; and the sums of |products| (error scale). */
function referenceProduct(weights: Float64Array, rows: Float64Array[], n: number, k: number) {
  const values = new Float64Array(rows.length * n);
  const magnitudes = new Float64Array(rows.length * n);
  rows.forEach((row, r) => {
    for (let c = 0; c < n; c++) {
      let sum = 0;
      let magnitude = 0;
      let largest = 0;
      for (let i = 0; i < k; i++) {
        sum += weights[c * k + i] * row[i];
        magnitude += Math.abs(row[i]);
        largest = Math.max(largest, Math.abs(weights[c * k + i]));
      }
      values[r * n + c] = sum;
      magnitudes[r * n + c] = magnitude * largest;
    }
  });
  return { values, magnitudes };
}

function matmul(type: QuantType, weights: Uint8Array, n: number, k: number, input: Float32Array, m: number): Float32Array {
  return native().quantMatmul(type, weights, n, k, input, m);
}

/** The first few elements farther from the reference than `tolerance` times their error scale. */
function misses(actual: Float32Array, reference: ReturnType<typeof referenceProduct>, tolerance: number): string[] {
  const found: string[] = [];
  actual.forEach((v, i) => {
    const error = Math.abs(v - reference.values[i]);
    if (!(error <= tolerance * reference.magnitudes[i] + 1e-30) && found.length < 5) {
      found.push(`[${i}] ${v}, expected ${reference.values[i]} (error ${error}, scale ${reference.magnitudes[i]})`);
    }
  });
  return found;
}

const ISAS = cpuInfo().supportedIsas;
const ORIGINAL = cpuInfo();
afterAll(() => {
  setCpuIsa(ORIGINAL.isa);
  setQuantActivations(ORIGINAL.quantActivations);
});

test("the default is 'q8' (unless DYNAMOE_QUANT_ACTIVATIONS=f32), and other modes are refused", () => {
  expect(ORIGINAL.quantActivations).toBe(process.env.DYNAMOE_QUANT_ACTIVATIONS === 'f32' ? 'f32' : 'q8');
  expect(() => setQuantActivations('int8' as never)).toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_TYPE' }));
});

describe.each(ISAS.map((isa) => [isa] as [CpuIsa]))('%s', (isa) => {
  beforeAll(() => setCpuIsa(isa));

  // Shapes: one row (decode), rows that fill and split the kernels' 8-row groups, columns past one 32-wide panel.
  const SHAPES: ReadonlyArray<readonly [number, number, number]> = [[1, 33, 1], [11, 40, 2], [20, 64, 4]];

  test.each(INTEGER_TYPES.map((t) => [t]))("%s, 'q8': the float64 product with activations quantized per row as ggml defines", (type) => {
    setQuantActivations('q8');
    for (const [m, n, superBlocks] of SHAPES) {
      const k = 256 * superBlocks;
      const rng = new Rng(41 + m * 31 + n + QUANT_TYPES.indexOf(type));
      const weights = randomBlocks(type, n, k, rng);
      const input = Float32Array.from(rng.normalArray(m * k, 1.5));
      // A row of zeros and a row with one large value per block: zero scales, and codes that round to 0 nearby.
      if (m > 2) input.fill(0, k, 2 * k);
      if (m > 3) for (let i = 2 * k; i < 3 * k; i += 32) input[i] = 1e4;
      const rows = Array.from({ length: m }, (_, r) => quantizedActivations(type, input.subarray(r * k, (r + 1) * k)));
      const reference = referenceProduct(dequantizeReference(type, weights, n, k), rows, n, k);
      expect(misses(matmul(type, weights, n, k, input, m), reference, 2e-6)).toEqual([]);
    }
  });

  test.each(INTEGER_TYPES.map((t) => [t]))("%s, 'q8': halves round as each block type defines (away from zero / to even)", (type) => {
    setQuantActivations('q8');
    // max|x| = 127 makes d = 1 (Q8_0) and iscale = -1 (Q8_K): the values 2.5 and -0.5 land exactly on halves.
    const k = 256;
    const input = new Float32Array(k).map((_, i) => (i % 32 === 0 ? 127 : i % 3 === 0 ? 2.5 : i % 3 === 1 ? -0.5 : 1.5));
    const weights = randomBlocks(type, 32, k, new Rng(7));
    const row = quantizedActivations(type, input);
    expect(row[3]).toBe(isSuperBlock(type) ? 2 : 3);
    expect(row[1] === (isSuperBlock(type) ? 0 : -1)).toBe(true); // -0 for Q8_K: 0 times d = -1
    const reference = referenceProduct(dequantizeReference(type, weights, 32, k), [row], 32, k);
    expect(misses(matmul(type, weights, 32, k, input, 1), reference, 2e-6)).toEqual([]);
  });

  test.each(QUANT_TYPES.map((t) => [t]))("%s, 'f32': the float64 product of the dequantized weights and f32 rows", (type) => {
    setQuantActivations('f32');
    const [m, n, k] = [9, 40, 512];
    const rng = new Rng(4100 + QUANT_TYPES.indexOf(type));
    const weights = randomBlocks(type, n, k, rng);
    const input = Float32Array.from(rng.normalArray(m * k, 1.5));
    const rows = Array.from({ length: m }, (_, r) => Float64Array.from(input.subarray(r * k, (r + 1) * k)));
    const reference = referenceProduct(dequantizeReference(type, weights, n, k), rows, n, k);
    expect(misses(matmul(type, weights, n, k, input, m), reference, 1e-6)).toEqual([]);
  });

  test.each(QUANT_TYPES.map((t) => [t]))('%s: a row has the same bits alone and among 13 rows, on both paths', (type) => {
    const [m, n, k] = [13, 36, 512];
    const rng = new Rng(4200 + QUANT_TYPES.indexOf(type));
    const weights = randomBlocks(type, n, k, rng);
    const input = Float32Array.from(rng.normalArray(m * k, 1));
    for (const mode of ['q8', 'f32'] as const) {
      setQuantActivations(mode);
      const together = matmul(type, weights, n, k, input, m);
      for (const r of [0, 7, 8, 12]) {
        const alone = matmul(type, weights, n, k, input.slice(r * k, (r + 1) * k), 1);
        expect(Buffer.from(alone.buffer).equals(Buffer.from(together.slice(r * n, (r + 1) * n).buffer))).toBe(true);
      }
    }
  });
});
