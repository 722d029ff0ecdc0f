// Whole quantized models, loaded as they are, against the float64 reference model built from the file's tensors
// dequantized by the reference written from the format definitions. dynamoe computes in f32 from exactly dequantized
// weights, so the logits must match as closely as an f32 model's do (test 94). Files come from three places:
// - made here with every type's random blocks in the experts and attention (runs everywhere);
// - dynamoe's own quantizer (`dynamoe quantize`: q8_0, q4_0, q4_k, q6_k, q4_k_m), also checked for its error;
// - llama.cpp's quantizer, one per llama.cpp file type (needs node-llama-cpp's libraries and python3; skipped,
//   loudly, without).
import * as fs from 'fs/promises';
import { cpuInfo, loadModel, setCpuIsa, setQuantActivations } from '../lib';
import type { Model } from '../lib';
import type { CpuIsa } from '../lib';
import { GgufFile, openGguf } from '../lib/formats/gguf';
import { f16BitsToF32 } from './reference/dtype';
import { maxRelativeError } from './reference/layer';
import { RefDecoderLayer, RefModel, refModelForward } from './reference/model';
import { dequantizeReference, QUANT_TYPES, QuantType } from './reference/quant-formats';
import { ArchName, GGUF_ARCHITECTURES, tempDir, TinyModel } from './model-fixtures';
import { llamaCppUnavailable, makeQuantizedGguf, QuantizedFileType, wideTinyModel } from './quant-fixtures';
import { quantizeGguf, QUANTIZE_TARGETS, rewriteGguf } from '../lib/formats/quantize-gguf';
import { randomBlocks } from './reference/quant-formats';
import { Rng } from './reference/random';
import { writeGgufCheckpoint } from './model-fixtures';
import * as path from 'path';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11];
const SEED = 39;

// The logits are held to the float64 model of the dequantized weights on the exact f32 path ('f32' activations).
// The default 'q8' path (Q8_0, Q4_0, MXFP4, Q4_K, Q5_K and Q6_K weights on 8-bit activations; its kernels are held to
// their own float64 reference in test 41) is held to the same model within the error of rounding the activations of
// every such matrix to 8 bits: about 1-6% of the largest logit on these tiny random models, checked below 0.1 (a
// scale or code read wrongly is off by more than the logits themselves).
const QUANT_ACTIVATIONS = cpuInfo().quantActivations;
const Q8_LOGIT_ERROR = 0.1;
beforeAll(() => setQuantActivations('f32'));
afterAll(() => setQuantActivations(QUANT_ACTIVATIONS));

/** The model's logits of TOKENS on the 'q8' path (restoring 'f32'). */
async function q8Logits(model: Model): Promise<Float32Array> {
  setQuantActivations('q8');
  try {
    return (await model.forward(TOKENS)).logits;
  } finally {
    setQuantActivations('f32');
  }
}

/** A tensor of the file as the f32 values it exactly dequantizes to (f32/f16 as stored, quantized types by the reference). */
async function readDequantized(gguf: GgufFile, name: string): Promise<Float32Array> {
  const info = gguf.tensors.get(name);
  if (info === undefined) throw new Error(`the quantized file has no tensor '${name}'`);
  const bytes = new Uint8Array(info.byteLength);
  const handle = await fs.open(info.file, 'r');
  try {
    await handle.read(bytes, 0, info.byteLength, info.byteOffset);
  } finally {
    await handle.close();
  }
  const cols = info.shape[info.shape.length - 1];
  const rows = info.shape.reduce((n, d) => n * d, 1) / cols;
  if (info.dtype === 'f32') return new Float32Array(bytes.buffer);
  if (info.dtype === 'f16') return Float32Array.from(new Uint16Array(bytes.buffer), f16BitsToF32);
  const type = info.dtype.toLowerCase() as QuantType;
  if (!QUANT_TYPES.includes(type)) throw new Error(`tensor '${name}' has type ${info.dtype}, which the reference cannot read`);
  return Float32Array.from(dequantizeReference(type, bytes, rows, cols));
}

/** Undoes llama.cpp's converter permutation of q/k rows (RoPE on adjacent pairs) back to Hugging Face's halves. */
function pairsToHalves(w: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * headDim + i * 2 + j;
        const to = h * headDim + j * half + i;
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

/** Splits stacked expert matrices [experts, rows, cols] into one array per expert. */
const perExpert = (stacked: Float32Array, experts: number) =>
  Array.from({ length: experts }, (_, e) => stacked.slice((e * stacked.length) / experts, ((e + 1) * stacked.length) / experts));

/**
 * The float64 reference model of a quantized file: `model`'s structure (the model the file was quantized from) with
 * every weight replaced by the file's dequantized tensor; also the names of the file's tensors it did not use.
 */
async function dequantizedModel(file: string, model: TinyModel): Promise<{ reference: RefModel; unused: string[] }> {
  const gguf = await openGguf(file);
  const unused = new Set(gguf.tensors.keys());
  const read = (name: string) => {
    unused.delete(name);
    return readDequantized(gguf, name);
  };
  const pairs = GGUF_ARCHITECTURES[model.arch] === 'llama';
  const unpermute = (w: Float32Array, heads: number) => (pairs ? pairsToHalves(w, heads, model.headDim, model.hidden) : w);
  // q, k and v: their own tensors, or the rows [q | k | v] of one attn_qkv (bailingmoe2).
  const qkv = async (i: number): Promise<Float32Array[]> => {
    if (!gguf.tensors.has(`blk.${i}.attn_qkv.weight`)) {
      return Promise.all(['q', 'k', 'v'].map((part) => read(`blk.${i}.attn_${part}.weight`)));
    }
    const fused = await read(`blk.${i}.attn_qkv.weight`);
    const qRows = model.heads * model.headDim * model.hidden;
    const kvRows = model.kvHeads * model.headDim * model.hidden;
    return [fused.slice(0, qRows), fused.slice(qRows, qRows + kvRows), fused.slice(qRows + kvRows)];
  };
  try {
    const layers: RefDecoderLayer[] = [];
    for (const [i, l] of model.layers.entries()) {
      const at = (s: string) => read(`blk.${i}.${s}`);
      const f = l.ffn;
      const ffn: RefDecoderLayer['ffn'] = f.kind === 'dense'
        ? { ...f, gate: await at('ffn_gate.weight'), up: await at('ffn_up.weight'), down: await at('ffn_down.weight') }
        : {
            ...f, router: await at('ffn_gate_inp.weight'), gate: perExpert(await at('ffn_gate_exps.weight'), f.experts),
            ...(f.routerRule?.selectionBias ? { routerRule: { ...f.routerRule, selectionBias: await at('exp_probs_b.bias') } } : {}),
            up: perExpert(await at('ffn_up_exps.weight'), f.experts), down: perExpert(await at('ffn_down_exps.weight'), f.experts),
            ...(f.shared ? { shared: { ...f.shared, gate: await at('ffn_gate_shexp.weight'), up: await at('ffn_up_shexp.weight'),
              down: await at('ffn_down_shexp.weight'), ...(f.shared.gateWeight ? { gateWeight: await at('ffn_gate_inp_shexp.weight') } : {}) } } : {}),
          };
      const [q, k, v] = await qkv(i);
      layers.push({
        ...l, attnNorm: await at('attn_norm.weight'), mlpNorm: await at('ffn_norm.weight'),
        q: unpermute(q, model.heads), k: unpermute(k, model.kvHeads), v, o: await at('attn_output.weight'), ffn,
        ...(l.qBias ? { qBias: await at('attn_q.bias'), kBias: await at('attn_k.bias'), vBias: await at('attn_v.bias') } : {}),
        ...(l.qNorm ? { qNorm: await at('attn_q_norm.weight'), kNorm: await at('attn_k_norm.weight') } : {}),
      });
    }
    const reference: RefModel = {
      ...model, embed: await read('token_embd.weight'), finalNorm: await read('output_norm.weight'),
      ...(model.lmHead ? { lmHead: await read('output.weight') } : {}), layers,
    };
    return { reference, unused: [...unused] };
  } finally {
    await gguf.close();
  }
}

/** Relative RMS difference of every f32 weight of `actual` from the same weight of `original`, by property path. */
function weightErrors(actual: unknown, original: unknown, path = 'model'): Array<[string, number]> {
  if (actual instanceof Float32Array && original instanceof Float32Array) {
    let squaredDifference = 0;
    let squares = 0;
    original.forEach((v, i) => {
      squaredDifference += (actual[i] - v) ** 2;
      squares += v ** 2;
    });
    return [[path, actual.length === original.length ? Math.sqrt(squaredDifference / squares) : Infinity]];
  }
  if (typeof actual !== 'object' || actual === null) return [];
  const others = original as Record<string, unknown>;
  return Object.entries(actual).flatMap(([key, value]) => weightErrors(value, others[key], `${path}.${key}`));
}

// File type -> the tensor type its expert matrices get (compared in lower case: the reader may name either way) (llama.cpp mixes others in: Q6_K output, Q8_0 attention, ...).
const FILE_TYPES: ReadonlyArray<readonly [QuantizedFileType, QuantType]> = [
  ['Q8_0', 'q8_0'], ['Q4_0', 'q4_0'], ['Q4_1', 'q4_1'], ['Q5_0', 'q5_0'], ['Q5_1', 'q5_1'], ['Q2_K', 'q2_k'],
  ['Q3_K_M', 'q3_k'], ['Q4_K_M', 'q4_k'], ['Q5_K_M', 'q5_k'], ['Q6_K', 'q6_k'], ['IQ4_NL', 'iq4_nl'], ['IQ4_XS', 'iq4_xs'],
  ['MXFP4_MOE', 'mxfp4'],
];
// Every file type on the llama-architecture model; the usual download and gpt-oss's experts on the other GGUF
// architectures (shared experts and a dense layer in qwen2moe, q/k norms in qwen3moe and olmoe); bailingmoe2's
// quantized attn_qkv, split into q, k and v as its rows are read.
const CASES: ReadonlyArray<readonly [ArchName, QuantizedFileType, QuantType]> = [
  ...FILE_TYPES.map(([fileType, expertType]) => ['mixtral', fileType, expertType] as const),
  ...(['qwen2-moe', 'qwen3-moe', 'olmoe'] as const).flatMap((arch) => [[arch, 'Q4_K_M', 'q4_k'], [arch, 'MXFP4_MOE', 'mxfp4']] as const),
  ['bailing-moe-v2', 'Q4_K_M', 'q4_k'],
];

describe('files quantized here (every type, no llama.cpp needed)', () => {
  let temp: ReturnType<typeof tempDir>;
  let f32File: string;
  const model = wideTinyModel('mixtral', SEED);
  beforeAll(async () => {
    temp = tempDir('dynamoe-quant-here-');
    f32File = path.join(temp.dir, 'mixtral-f32.gguf');
    await writeGgufCheckpoint(f32File, model, 'f32');
  });
  afterAll(() => temp.cleanup());

  const expectMatch = async (file: string, q8 = false) => {
    const { reference, unused } = await dequantizedModel(file, model);
    expect(unused).toEqual([]);
    const expected = refModelForward(reference, TOKENS).logits;
    const loaded = await loadModel(file);
    try {
      const { logits } = await loaded.forward(TOKENS);
      expect(maxRelativeError(logits, expected)).toBeLessThan(1e-4);
      if (q8) expect(maxRelativeError(await q8Logits(loaded), expected)).toBeLessThan(Q8_LOGIT_ERROR);
    } finally {
      loaded.dispose();
    }
    return reference;
  };

  test.each(QUANT_TYPES.map((t) => [t] as [QuantType]))('%s random blocks in the experts and attention', async (type) => {
    const rng = new Rng(SEED + QUANT_TYPES.indexOf(type));
    const file = path.join(temp.dir, `random-${type}.gguf`);
    await rewriteGguf(f32File, file, async (tensor) => {
      const cols = tensor.shape[tensor.shape.length - 1];
      const rows = tensor.shape.reduce((n, d) => n * d, 1) / cols;
      const quantize = /_exps\.|attn_(q|k|v|output)\./.test(tensor.name);
      return quantize
        ? { name: tensor.name, dtype: type, shape: tensor.shape, data: randomBlocks(type, rows, cols, rng) }
        : { name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, data: tensor.data };
    });
    await expectMatch(file);
  });

  test.each(QUANTIZE_TARGETS.map((t) => [t]))('dynamoe quantize --type %s: logits match, weights near the originals', async (target) => {
    const file = path.join(temp.dir, `ours-${target}.gguf`);
    const report = await quantizeGguf(f32File, file, target);
    expect(Object.values(report.quantized).reduce((a, b) => a + b, 0)).toBeGreaterThan(0);
    const reference = await expectMatch(file, true);
    // Quantization error only: a scale or code written in the wrong place would be far off.
    const limit = target === 'q8_0' ? 0.02 : target === 'q6_k' ? 0.05 : 0.2;
    expect(weightErrors(reference, model).filter(([, error]) => !(error < limit))).toEqual([]);
  });

  test.each(cpuInfo().supportedIsas.map((isa) => [isa] as [CpuIsa]))(
    '%s: quantized requests batched together have the bits they have alone',
    async (isa) => {
      const file = path.join(temp.dir, `invariance-${isa}.gguf`);
      await quantizeGguf(f32File, file, 'q4_k_m');
      const active = cpuInfo().isa;
      setCpuIsa(isa);
      const alone = await loadModel(file, { maxSequences: 1 });
      const batched = await loadModel(file, { maxSequences: 16, tokensPerStep: 7 });
      try {
        for (const mode of ['q8', 'f32'] as const) {
          setQuantActivations(mode);
          const requests = Array.from({ length: 6 }, (_, i) => TOKENS.slice(0, 2 + i * 2));
          const lone: Float32Array[] = [];
          for (const ids of requests) lone.push((await alone.forward(ids)).logits);
          const together = await Promise.all(requests.map((ids) => batched.forward(ids)));
          together.forEach(({ logits }, i) => expect(Buffer.from(logits.buffer).equals(Buffer.from(lone[i].buffer))).toBe(true));
        }
      } finally {
        alone.dispose();
        batched.dispose();
        setCpuIsa(active);
        setQuantActivations('f32');
      }
    },
  );
});

const unavailable = llamaCppUnavailable();
if (unavailable !== null) {
  test('quantized models against the float64 reference (skipped)', () => {
    console.warn(`SKIPPED: no quantized GGUF fixtures can be made: ${unavailable}`);
  });
} else {
  let temp: ReturnType<typeof tempDir>;
  beforeAll(() => {
    temp = tempDir('dynamoe-quant-models-');
  });
  afterAll(() => temp.cleanup());

  const originals = new Map<ArchName, TinyModel>();
  /** The model of `arch` the fixtures are quantized from (made once per architecture). */
  const original = (arch: ArchName) => {
    const model = originals.get(arch) ?? wideTinyModel(arch, SEED);
    originals.set(arch, model);
    return model;
  };

  test.each(CASES)('%s %s: logits match the float64 model of the dequantized weights (max rel. error <= 1e-4)', async (arch, fileType, expertType) => {
    const model = original(arch);
    const file = await makeQuantizedGguf(temp.dir, arch, fileType, SEED);
    if (file === null) throw new Error('makeQuantizedGguf made no file although llama.cpp is available');
    const { reference, unused } = await dequantizedModel(file, model);
    expect(unused).toEqual([]);
    const gguf = await openGguf(file);
    const expertTypes = new Set([...gguf.tensors.values()].filter((t) => t.name.includes('_exps.')).map((t) => t.dtype.toLowerCase()));
    await gguf.close();
    expect([...expertTypes]).toContain(expertType);
    const expected = refModelForward(reference, TOKENS).logits;
    // The reference builder's own check: each weight is the original's up to quantization error (a weight read from
    // the wrong tensor or in the wrong row order would be off by about sqrt(2)).
    const errors = weightErrors(reference, model);
    expect(errors.filter(([, error]) => !(error < 0.5))).toEqual([]);
    const loaded = await loadModel(file);
    try {
      const { logits } = await loaded.forward(TOKENS);
      expect(logits.length).toBe(TOKENS.length * model.vocab);
      expect(maxRelativeError(logits, expected)).toBeLessThan(1e-4);
      const q8 = await q8Logits(loaded);
      if (!model.layers.some((l) => l.ffn.kind === 'moe' && l.ffn.routerRule)) {
        expect(maxRelativeError(q8, expected)).toBeLessThan(Q8_LOGIT_ERROR);
      } else {
        // A sigmoid router picks 3 of 8 experts from close scores (and groups by their sums): the q8 path's ~2e-2
        // error flips a near tie in a token or two, a whole expert's difference; the other tokens hold the bound.
        const within = TOKENS.filter((_, t) =>
          maxRelativeError(q8.subarray(t * model.vocab, (t + 1) * model.vocab), expected.subarray(t * model.vocab, (t + 1) * model.vocab)) < Q8_LOGIT_ERROR);
        expect(within.length).toBeGreaterThanOrEqual(TOKENS.length - 2);
      }
    } finally {
      loaded.dispose();
    }
  });
}
