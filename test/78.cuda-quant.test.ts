// Quantized weights on CUDA, every GGUF type dynamoe reads:
// - the kernels (native quantMatmul on 'cuda': the upload and GEMM launch a model's quantized linear layers use)
//   against float64 references written here: the dequantizing GEMV (<= 16 rows: fp32 weights, bf16 activations) and
//   the tensor-core GEMM fed by tiles dequantized into shared memory (> 16 rows: bf16 weights and activations), on
//   one row, odd row and column counts, one block, many blocks, zero activations;
// - whole models: GGUF files with random blocks of each type in their experts and attention, and the quantized files
//   dynamoe writes, on CUDA against the same file on the CPU (exact f32 path).
// Needs a usable GPU and the CUDA addon (DYNAMOE_ADDON=build-cuda/Release/dynamoe.node). Without one the GPU tests are
// reported as skipped and one line says why; the refusal without a GPU is checked here.
import * as path from 'path';
import { backendInfo, cpuInfo, loadModel, Model, setQuantActivations } from '../lib';
import { native } from '../lib/addon/native';
import { quantizeGguf, QUANTIZE_TARGETS, rewriteGguf } from '../lib/formats/quantize-gguf';
import { tempDir, writeGgufCheckpoint } from './model-fixtures';
import { prefillThenDecode, worstRowError } from './model-steps';
import { cudaOnlySuite, isPresent } from './parity/backends';
import { wideTinyModel } from './quant-fixtures';
import { dequantizeReference, QUANT_FORMATS, QUANT_TYPES, QuantType, randomBlocks } from './reference/quant-formats';
import { Rng } from './reference/random';

const describeCuda = cudaOnlySuite('CUDA quantized-weight tests (test/78)');

// Rows the CUDA dense GEMM takes on the GEMV (cuda/moe_kernels.h kGemvMaxRows); more go to the tensor cores.
const GEMV_MAX_ROWS = 16;

/** f32 value rounded to bf16 (nearest even), as the kernels round activations (and, on tensor cores, weights). */
function bf16(value: number): number {
  const bits = new Uint32Array(new Float32Array([value]).buffer)[0];
  const rounded = (bits + 0x7fff + ((bits >>> 16) & 1)) & 0xffff0000;
  return new Float32Array(new Uint32Array([rounded >>> 0]).buffer)[0];
}

function cudaMatmul(type: QuantType, weights: Uint8Array, n: number, k: number, input: Float32Array, m: number): Float32Array {
  return native().quantMatmul(type, weights, n, k, input, m, 'cuda');
}

/**
 * input [m][k] x weights^T in float64 with the roundings the CUDA path makes by contract: activations to bf16, and
 * for more than 16 rows the dequantized weights too; what remains between it and the kernel is fp32 summation.
 * Also each output's error scale, sum over k of |w x|.
 */
function referenceProduct(type: QuantType, weights: Uint8Array, n: number, k: number, input: Float32Array, m: number) {
  const dequantized = dequantizeReference(type, weights, n, k);
  const w = m > GEMV_MAX_ROWS ? dequantized.map(bf16) : dequantized;
  const x = input.map(bf16);
  const values = new Float64Array(m * n);
  const scales = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let c = 0; c < n; c++) {
      let sum = 0;
      let scale = 0;
      for (let i = 0; i < k; i++) {
        const product = w[c * k + i] * x[r * k + i];
        sum += product;
        scale += Math.abs(product);
      }
      values[r * n + c] = sum;
      scales[r * n + c] = scale;
    }
  }
  return { values, scales };
}

// fp32 accumulation of up to 16,384 products in a fixed tree-like order: its error is a few times sqrt(k) * 2^-24 of
// the error scale, about 1e-5 at the largest k here. 4e-5 leaves a margin, and is 25x below what one wrongly decoded
// group of 16 values in a 16,384-value row gives (16 / 16384 of the scale, 1e-3).
const SUMMATION_TOLERANCE = 4e-5;

/** The first few outputs farther from the reference than the tolerance, described. */
function misses(actual: Float32Array, reference: ReturnType<typeof referenceProduct>, n: number): string[] {
  const found: string[] = [];
  for (let i = 0; i < actual.length && found.length < 5; i++) {
    const error = Math.abs(actual[i] - reference.values[i]);
    if (!(error <= SUMMATION_TOLERANCE * reference.scales[i] + 1e-30)) {
      found.push(`[${Math.floor(i / n)}, ${i % n}]: ${actual[i]}, expected ${reference.values[i]} (scale ${reference.scales[i]})`);
    }
  }
  return found;
}

// [rows m, outputs n, blocks per row]: one of everything, odd counts, a row either side of the GEMV / tensor-core
// boundary, whole and partial 128-row tiles, and the longest rows.
const SHAPES: ReadonlyArray<readonly [number, number, number]> = [
  [1, 1, 1],
  [1, 130, 3],
  [3, 7, 2],
  [16, 256, 4],
  [17, 128, 1],
  [64, 129, 2],
  [130, 257, 3],
  [2, 33, 64],
  [40, 8, 24],
];

describeCuda.each(QUANT_TYPES.map((type) => [type]))('%s kernels on CUDA', (type) => {
  const { blockElements } = QUANT_FORMATS[type];

  test.each(SHAPES.map((shape) => [...shape]))('%d rows x %d outputs x %d blocks against float64', (m, n, blocks) => {
    const k = blocks * blockElements;
    const rng = new Rng(78 + m * 131 + n * 7 + blocks);
    const weights = randomBlocks(type, n, k, rng);
    const input = Float32Array.from({ length: m * k }, () => rng.normal());
    const actual = cudaMatmul(type, weights, n, k, input, m);
    expect(actual.length).toBe(m * n);
    expect(misses(actual, referenceProduct(type, weights, n, k, input, m), n)).toEqual([]);
  });

  test('zero activations give exact zeros on both paths', () => {
    const k = 2 * blockElements;
    const weights = randomBlocks(type, 40, k, new Rng(7));
    for (const m of [1, 40]) expect(Array.from(cudaMatmul(type, weights, 40, k, new Float32Array(m * k), m)).every((v) => v === 0)).toBe(true);
  });

  test('a row has the same bits alone and beside other rows, on each path', () => {
    const k = 3 * blockElements;
    const rng = new Rng(79);
    const weights = randomBlocks(type, 96, k, rng);
    const input = Float32Array.from({ length: 48 * k }, () => rng.normal());
    // Rows 0-15 on the GEMV: once 16 at a time, once one at a time.
    const together = cudaMatmul(type, weights, 96, k, input.subarray(0, 16 * k), 16);
    const alone = cudaMatmul(type, weights, 96, k, input.subarray(5 * k, 6 * k), 1);
    expect(Buffer.from(alone.buffer).equals(Buffer.from(together.subarray(5 * 96, 6 * 96).slice().buffer))).toBe(true);
    // Tensor cores: a row's tile sums over k in the same order whatever rows share the tile.
    const tile = cudaMatmul(type, weights, 96, k, input, 48);
    const shifted = cudaMatmul(type, weights, 96, k, input.subarray(k), 47);
    expect(Buffer.from(tile.subarray(96).slice().buffer).equals(Buffer.from(shifted.buffer))).toBe(true);
  });
});

// ---- whole models --------------------------------------------------------------------------------------------------

// Both devices hold the same quantized weights; the CPU computes in exact f32 ('f32' activations), CUDA rounds the
// activations of every quantized GEMM to bf16 (and the weights too on tensor cores), as test/76 bounds: 2e-2 of each
// row's largest |logit|, far below what a wrongly decoded weight type gives (its whole scale).
const RELATIVE = 2e-2;
const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 9, 81, 44, 2, 190, 66];
const PROMPT_LENGTH = 12;

describeCuda('quantized GGUF models on CUDA against the CPU', () => {
  let temp: ReturnType<typeof tempDir>;
  let f32File: string;
  const activeMode = cpuInfo().quantActivations;
  beforeAll(async () => {
    temp = tempDir('dynamoe-cuda-quant-');
    f32File = path.join(temp.dir, 'mixtral-f32.gguf');
    await writeGgufCheckpoint(f32File, wideTinyModel('mixtral', 78), 'f32');
    setQuantActivations('f32');
  });
  afterAll(() => {
    setQuantActivations(activeMode);
    temp.cleanup();
  });

  const expectSameLogits = async (file: string) => {
    const cpu = await loadModel(file, { device: 'cpu' });
    const cuda = await loadModel(file, { device: 'cuda' });
    try {
      expect(cuda.info.device).toBe('cuda');
      const vocab = cpu.spec.vocab;
      const expected = (await cpu.forward(TOKENS)).logits;
      expect(worstRowError((await cuda.forward(TOKENS)).logits, expected, vocab)).toBeLessThan(RELATIVE);
      const stepped = await prefillThenDecode(cuda, TOKENS, PROMPT_LENGTH);
      expect(worstRowError(stepped, await prefillThenDecode(cpu, TOKENS, PROMPT_LENGTH), vocab)).toBeLessThan(RELATIVE);
    } finally {
      cpu.dispose();
      cuda.dispose();
    }
  };

  test.each(QUANT_TYPES.map((t) => [t] as [QuantType]))('%s random blocks in the experts, attention, embedding and LM head', async (type) => {
    const rng = new Rng(780 + QUANT_TYPES.indexOf(type));
    const file = path.join(temp.dir, `random-${type}.gguf`);
    await rewriteGguf(f32File, file, async (tensor) => {
      const cols = tensor.shape[tensor.shape.length - 1];
      const rows = tensor.shape.reduce((n, d) => n * d, 1) / cols;
      const quantize = /_exps\.|attn_(q|k|v|output)\.|^token_embd\.|^output\./.test(tensor.name);
      return quantize
        ? { name: tensor.name, dtype: type, shape: tensor.shape, data: randomBlocks(type, rows, cols, rng) }
        : { name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, data: tensor.data };
    });
    await expectSameLogits(file);
  });

  test.each(QUANTIZE_TARGETS.map((t) => [t]))('dynamoe quantize --type %s', async (target) => {
    const file = path.join(temp.dir, `ours-${target}.gguf`);
    await quantizeGguf(f32File, file, target);
    await expectSameLogits(file);
  });

  test('weights stay quantized on the GPU: the model holds less than its bf16 copy', async () => {
    const file = path.join(temp.dir, 'size-q4_k_m.gguf');
    await quantizeGguf(f32File, file, 'q4_k_m');
    const [quantized, plain]: Model[] = [await loadModel(file, { device: 'cuda' }), await loadModel(f32File, { device: 'cuda' })];
    try {
      expect(plain.info.dtype).toBe('bf16');
      expect(quantized.info.weightBytes).toBeLessThan(0.6 * plain.info.weightBytes);
    } finally {
      quantized.dispose();
      plain.dispose();
    }
  });
});

// Without a GPU, asking for the CUDA kernels says why (the CPU-only binary, or no usable device).
(isPresent('cuda') ? test.skip : test)('without a usable GPU, quantMatmul on cuda is refused with ERR_DYNAMOE_DEVICE', () => {
  const weights = randomBlocks('q8_0', 1, 32, new Rng(1));
  let code: unknown = 'returned';
  try {
    cudaMatmul('q8_0', weights, 1, 32, new Float32Array(32), 1);
  } catch (error) {
    code = (error as { code?: unknown }).code;
  }
  expect(code).toBe('ERR_DYNAMOE_DEVICE');
  expect(backendInfo().backend).toBe('cpu');
});
