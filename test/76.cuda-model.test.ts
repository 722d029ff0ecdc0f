// Whole models on CUDA against the CPU: every architecture the CPU runs, from the tests' tiny checkpoints, loaded on
// both devices with the same bf16 weights; prefill and decode logits, greedy generation, routing statistics and
// per-call policies. Quantized experts (loaded quantized, or quantized as they load) and gpt-oss (biases, clamped
// SwiGLU, sinks) must run and match. Architectures the CUDA executor may refuse (MLA, the families' sigmoid / group
// routers, zero-computation experts) must either run and match, or be refused with ERR_DYNAMOE_UNSUPPORTED naming
// what; the last test prints which were refused. Then the model's own
// behaviour on CUDA: streaming and stop strings, AbortSignal, concurrent generations, dispose, the default bf16
// upload of an f32 checkpoint, determinism, and a KV pool larger than the GPU.
// Needs a usable GPU and the CUDA addon (DYNAMOE_ADDON=build-cuda/Release/dynamoe.node). Without one the whole file
// is reported as skipped and one line says why.
import * as fs from 'fs';
import * as path from 'path';
import { cpuInfo, DynamoeError, loadModel, Model, setQuantActivations } from '../lib';
import type { LoadModelOptions, ModelInfo, RoutingStats } from '../lib';
import type { NativeMoeStepStats } from '../lib/addon/native-surface';
import { quantizeGguf } from '../lib/formats/quantize-gguf';
import { makeTinyGptOss, useMxfp4Experts, writeGptOssGguf, writeGptOssHf } from './gpt-oss-fixtures';
import { dequantizeReference } from './reference/quant-formats';
import { makeTinyGranite, writeGraniteHf } from './granite-moe-fixtures';
import { makeTinyLongcat, writeLongcatHf } from './longcat-fixtures';
import { makeTinyDeepseekV2, writeDeepseekHf } from './mla-fixtures';
import { ARCHITECTURES, makeTinyModel, tempDir, writeGgufCheckpoint, writeHfCheckpoint } from './model-fixtures';
import { bits, prefillThenDecode, worstRowError } from './model-steps';
import { cudaOnlySuite } from './parity/backends';
import { wideTinyModel } from './quant-fixtures';

// describe.skip: jest lists every test of this file as skipped (never silently green) when there is no GPU.
const describeCuda = cudaOnlySuite('CUDA whole-model tests (test/76)');

// ---- tolerances -------------------------------------------------------------------------------------------------------
// Both devices hold the same bf16 weights and keep activations in f32; they differ in summation order and, on CUDA,
// in the tensor-core GEMMs rounding their activation inputs to bf16 (8 significant bits: 2^-9 = 0.2% relative per
// rounding). Over the 2-4 layers of the tiny models (each rounding its inputs a few times: attention projections,
// experts, LM head) that grows to a few tenths of a percent of the logits' scale. 2e-2 of each row's largest |logit|
// leaves a margin of about 5x over that, and is still 50x below what a wrong op (a missing bias, a transposed matrix,
// a RoPE off by one position) gives: those move logits by their whole scale.
const BF16_RELATIVE = 2e-2;
// f32 weights on both devices (dtype 'f32'): SIMT f32 GEMMs, only summation order differs.
const F32_RELATIVE = 1e-3;
// Greedy generation: two logits can trade places when their gap is below twice the largest error either can have.
// That error is measured, not assumed: per position, the largest |cuda - cpu| over the row, of the one-step forward
// and of the prefill + decode steps generation runs (whichever is larger), times NEAR_TIE_SAFETY for what the two
// paths do not share. At the first position where the CPU's top two are closer than twice that, the sequences may
// fairly diverge, so the comparison stops there (and the test's log says where). A fixed margin of 2 x BF16_RELATIVE
// of the scale would stop at the first token on most tiny models (their top two logits are often that close).
const NEAR_TIE_SAFETY = 2;
// Routing on the two devices sees hidden states that differ by bf16 noise: a token whose router scores are nearly
// tied may pick another expert (top-k) or another number of experts (top-p). The model API exposes no router
// scores, so near ties cannot be told apart per token: per MoE layer at most NEAR_TIE_TOKENS of the tokens (and at
// least 1) may route differently; everything else must match exactly.
const NEAR_TIE_TOKENS = 0.05;

const PROMPT = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11];
// The prompt, then 8 decode steps.
const TOKENS = [...PROMPT, 9, 81, 44, 2, 190, 66, 13, 120];
const GENERATED = 32;

let temp: ReturnType<typeof tempDir>;
// Quantized cases: the CPU on its exact f32 path, so the two differ by CUDA's bf16 roundings only (test/78).
const activeQuantActivations = cpuInfo().quantActivations;
beforeAll(() => {
  temp = tempDir('dynamoe-cuda-model-');
  setQuantActivations('f32');
});
afterAll(() => {
  setQuantActivations(activeQuantActivations);
  temp.cleanup();
});

// ---- helpers --------------------------------------------------------------------------------------------------------

/**
 * The device a model runs on. ASSUMED API: ModelInfo gains `device: 'cpu' | 'cuda'` with the CUDA backend (it has no
 * such field today); `model.device` is read when that is what lands instead.
 */
function deviceOf(model: Model): string | undefined {
  const info = model.info as ModelInfo & { device?: string };
  return info.device ?? (model as Model & { device?: string }).device;
}

/** Largest |a - b| of one row. */
function rowDifference(a: Float32Array, b: Float32Array, row: number, vocab: number): number {
  let diff = 0;
  for (let i = row * vocab; i < (row + 1) * vocab; i++) diff = Math.max(diff, Math.abs(a[i] - b[i]));
  return diff;
}

/** The gap between the two largest logits of a row. */
function topTwoGap(logits: Float32Array, row: number, vocab: number): number {
  let first = -Infinity;
  let second = -Infinity;
  for (let i = row * vocab; i < (row + 1) * vocab; i++) {
    const v = logits[i];
    if (v > first) {
      second = first;
      first = v;
    } else if (v > second) {
      second = v;
    }
  }
  return first - second;
}

async function greedy(model: Model, prompt: readonly number[], maxTokens: number): Promise<number[]> {
  const ids: number[] = [];
  for await (const token of model.generate(prompt as number[], { maxTokens })) ids.push(token.id);
  return ids;
}

/** Architectures CUDA refused, with its message: printed by the last test. */
const unsupported: Array<{ name: string; message: string }> = [];

/**
 * Loads `location` on CUDA; resolves to null (and records the refusal) when the load rejects with
 * ERR_DYNAMOE_UNSUPPORTED and `mayRefuse` is set, its message matching `names` (what is unsupported).
 */
async function loadOnCudaOrUnsupported(
  name: string,
  location: string,
  options: LoadModelOptions,
  mayRefuse: boolean,
  names: RegExp,
): Promise<Model | null> {
  try {
    return await loadModel(location, { ...options, device: 'cuda' });
  } catch (error) {
    if (!mayRefuse || !(error instanceof DynamoeError) || error.code !== 'ERR_DYNAMOE_UNSUPPORTED') throw error;
    expect(error.message).toMatch(names);
    unsupported.push({ name, message: error.message });
    return null;
  }
}

/** The tokens whose routed-slot counts differ, per MoE layer, between two native step statistics. */
function countMismatches(cuda: NativeMoeStepStats[], cpu: NativeMoeStepStats[]): number[] {
  expect(cuda.length).toBe(cpu.length);
  return cpu.map((layer, slot) => {
    expect(cuda[slot].counts.length).toBe(layer.counts.length);
    let differ = 0;
    for (let t = 0; t < layer.counts.length; t++) if (cuda[slot].counts[t] !== layer.counts[t]) differ++;
    return differ;
  });
}

const allowedMismatches = (tokens: number) => Math.max(1, Math.floor(NEAR_TIE_TOKENS * tokens));

/** Routing statistics of the two devices: the same policies and token counts, loads within the near-tie allowance. */
function expectSameRouting(cuda: RoutingStats, cpu: RoutingStats, tokens: number): void {
  expect(cuda.policy).toBe(cpu.policy);
  expect(cuda.tokens).toBe(cpu.tokens);
  expect(cuda.layers.map((l) => [l.layer, l.policy, l.tokens])).toEqual(cpu.layers.map((l) => [l.layer, l.policy, l.tokens]));
  const allowed = allowedMismatches(tokens);
  cpu.layers.forEach((layer, i) => {
    const other = cuda.layers[i];
    // top-k routes exactly k slots per token on any device, near ties or not: equal histograms and means.
    if (layer.policy.startsWith('top-k')) {
      expect(other.histogram).toEqual(layer.histogram);
      expect(other.expertsPerToken).toBe(layer.expertsPerToken);
    }
    // A token that routes differently moves at most its whole slot count between experts (and histogram bins).
    const moved = layer.expertLoad.reduce((s, n, e) => s + Math.abs(n - other.expertLoad[e]), 0);
    const maxSlots = Math.max(layer.histogram.length, other.histogram.length) - 1;
    expect(moved).toBeLessThanOrEqual(2 * allowed * Math.max(1, maxSlots));
    const bins = Math.max(layer.histogram.length, other.histogram.length);
    let binsMoved = 0;
    for (let c = 0; c < bins; c++) binsMoved += Math.abs((layer.histogram[c] ?? 0) - (other.histogram[c] ?? 0));
    expect(binsMoved).toBeLessThanOrEqual(2 * allowed);
    expect(Math.abs(other.expertsPerToken - layer.expertsPerToken)).toBeLessThanOrEqual((allowed * maxSlots) / tokens + 1e-12);
    // Mean router entropy and the load-balance loss come from the full softmax: bf16 noise, not flips.
    expect(Math.abs(other.entropy - layer.entropy)).toBeLessThanOrEqual(BF16_RELATIVE * Math.max(1, layer.entropy));
    expect(Math.abs(other.loadBalanceLoss - layer.loadBalanceLoss)).toBeLessThanOrEqual(
      2 * BF16_RELATIVE * Math.max(1, layer.loadBalanceLoss) + (2 * allowed * Math.max(1, maxSlots)) / tokens,
    );
  });
}

// ---- the architectures ----------------------------------------------------------------------------------------------

interface ArchCase {
  name: string;
  /** Writes the checkpoint under `dir`; resolves to what loadModel opens. */
  write(dir: string): Promise<string>;
  /** Load options on both devices besides the device (every case pins the weights' dtype). */
  options: LoadModelOptions;
  /** CUDA may refuse it with ERR_DYNAMOE_UNSUPPORTED, the message matching `names`. */
  mayRefuse: boolean;
  names: RegExp;
  /** A per-call dynamic policy (top-p:0.4) is run too (the architectures whose router takes every policy). */
  dynamicPolicy: boolean;
}

const BF16: LoadModelOptions = { dtype: 'bf16' };
const MLA_NAMES = /mla|latent/i;

const CASES: ArchCase[] = [
  // The standard-attention families: the CUDA executor must run all of these, except GLM-4.5's sigmoid router with
  // groups and a selection bias, which it may refuse.
  ...ARCHITECTURES.map((arch): ArchCase => ({
    name: arch,
    write: async (dir) => {
      await writeHfCheckpoint(dir, makeTinyModel(arch, 76), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: arch === 'glm4-moe',
    names: /sigmoid|group|router|selection|bias/i,
    dynamicPolicy: true,
  })),
  {
    // llama.cpp's layout: q/k rows permuted, RoPE on adjacent pairs.
    name: 'mixtral (GGUF, RoPE on pairs)',
    write: async (dir) => {
      const file = path.join(dir, 'mixtral.gguf');
      await writeGgufCheckpoint(file, makeTinyModel('mixtral', 77), 'bf16');
      return file;
    },
    options: BF16,
    mayRefuse: false,
    names: /$^/,
    dynamicPolicy: true,
  },
  {
    name: 'granite-moe (multipliers, tied embeddings, attention biases)',
    write: async (dir) => {
      await writeGraniteHf(dir, makeTinyGranite(76, { tied: true, attentionBias: true }), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: false,
    names: /$^/,
    dynamicPolicy: true,
  },
  {
    name: 'granitemoeshared (shared MLP)',
    write: async (dir) => {
      await writeGraniteHf(dir, makeTinyGranite(77, { sharedFfn: 40 }), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: false,
    names: /$^/,
    dynamicPolicy: true,
  },
  {
    name: 'gpt-oss (sliding window, sinks, YaRN, router and expert biases, clamped SwiGLU)',
    write: async (dir) => {
      await writeGptOssHf(dir, makeTinyGptOss(76), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: false,
    names: /bias|swiglu|clamp|activation|sink|window|yarn/i,
    dynamicPolicy: false,
  },
  {
    // MXFP4 experts as the released conversions have them, with gpt-oss's biases and clamped SwiGLU around them.
    name: 'gpt-oss GGUF with MXFP4 experts',
    write: async (dir) => {
      const m = makeTinyGptOss(77, { limit: 7, ffn: 64 });
      const blocks = useMxfp4Experts(m, 78, (bytes, rows, cols) => dequantizeReference('mxfp4', bytes, rows, cols));
      const file = path.join(dir, 'gpt-oss-mxfp4.gguf');
      await writeGptOssGguf(file, m, [], blocks);
      return file;
    },
    options: BF16,
    mayRefuse: false,
    names: /mxfp4|bias|quant/i,
    dynamicPolicy: false,
  },
  {
    name: 'deepseek-v2 (MLA, low-rank query, group-limited greedy)',
    write: async (dir) => {
      await writeDeepseekHf(dir, makeTinyDeepseekV2(76, { qLoraRank: 32, routing: 'group_limited_greedy' }), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: true,
    names: /mla|latent|group|router/i,
    dynamicPolicy: false,
  },
  {
    name: 'deepseek-v2-lite (MLA, one q_proj)',
    write: async (dir) => {
      await writeDeepseekHf(dir, makeTinyDeepseekV2(77), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: true,
    names: MLA_NAMES,
    dynamicPolicy: false,
  },
  {
    name: 'deepseek-v3 (MLA, noaux_tc sigmoid router)',
    write: async (dir) => {
      await writeDeepseekHf(dir, makeTinyDeepseekV2(78, { routing: 'noaux_tc', qLoraRank: 32 }), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: true,
    names: /mla|latent|sigmoid|group|router|selection|bias/i,
    dynamicPolicy: false,
  },
  {
    name: 'longcat-flash (MLA, shortcut layers, identity zero experts)',
    write: async (dir) => {
      await writeLongcatHf(dir, makeTinyLongcat(76), 'bf16');
      return dir;
    },
    options: BF16,
    mayRefuse: true,
    names: /mla|latent|zero|identity|shortcut|router|sigmoid|bias/i,
    dynamicPolicy: false,
  },
  {
    // Experts quantized as they load (the other matrices stay bf16); rows of 256: whole k-quant super-blocks.
    name: 'mixtral, experts quantized to q8_0 at load',
    write: async (dir) => {
      await writeHfCheckpoint(dir, wideTinyModel('mixtral', 76), 'bf16');
      return dir;
    },
    options: { dtype: 'q8_0' },
    mayRefuse: false,
    names: /q8_0|quant/i,
    dynamicPolicy: false,
  },
  {
    name: 'qwen2-moe GGUF, experts quantized to q4_k at load',
    write: async (dir) => {
      const file = path.join(dir, 'wide-qwen2moe.gguf');
      await writeGgufCheckpoint(file, wideTinyModel('qwen2-moe', 77), 'bf16');
      return file;
    },
    options: { dtype: 'q4_k' },
    mayRefuse: false,
    names: /q4_k|quant/i,
    dynamicPolicy: false,
  },
  {
    // A quantized GGUF (dynamoe's own quantizer: q4_k experts, q6_k where llama.cpp's Q4_K_M puts it); its f32
    // non-quantized matrices are packed as bf16 on both devices.
    name: 'mixtral GGUF quantized q4_k_m',
    write: async (dir) => {
      const source = path.join(dir, 'wide-f32.gguf');
      const file = path.join(dir, 'wide-q4_k_m.gguf');
      await writeGgufCheckpoint(source, wideTinyModel('mixtral', 78), 'f32');
      await quantizeGguf(source, file, 'q4_k_m');
      return file;
    },
    options: BF16,
    mayRefuse: false,
    names: /q4_k|q6_k|quant/i,
    dynamicPolicy: false,
  },
];

describeCuda.each(CASES.map((c) => [c.name, c] as const))('%s on CUDA against the CPU', (name, c) => {
  let cpu: Model;
  let cuda: Model | null = null;
  let vocab: number;

  beforeAll(async () => {
    const dir = path.join(temp.dir, name.replace(/[^a-z0-9]+/gi, '-'));
    fs.mkdirSync(dir, { recursive: true });
    const location = await c.write(dir);
    cpu = await loadModel(location, { ...c.options, device: 'cpu' });
    vocab = cpu.spec.vocab;
    cuda = await loadOnCudaOrUnsupported(name, location, c.options, c.mayRefuse, c.names);
  });
  afterAll(() => {
    cpu?.dispose();
    cuda?.dispose();
  });

  test('loads on CUDA (or is refused with ERR_DYNAMOE_UNSUPPORTED naming what), with the CPU\'s spec and dtype', () => {
    if (cuda === null) {
      expect(c.mayRefuse).toBe(true);
      return;
    }
    expect(deviceOf(cuda)).toBe('cuda');
    expect(deviceOf(cpu)).toBe('cpu');
    expect(cuda.info.dtype).toBe(cpu.info.dtype);
    expect(cuda.spec).toEqual(cpu.spec);
    expect(cuda.info.weightBytes).toBeGreaterThan(0);
  });

  test(`forward, and prefill + ${TOKENS.length - PROMPT.length} decode steps: logits within ${BF16_RELATIVE} of each row's scale`, async () => {
    if (cuda === null) return;
    const expected = (await cpu.forward(TOKENS)).logits;
    const actual = (await cuda.forward(TOKENS)).logits;
    expect(actual.length).toBe(TOKENS.length * vocab);
    expect(worstRowError(actual, expected, vocab)).toBeLessThan(BF16_RELATIVE);
    const steppedCpu = await prefillThenDecode(cpu, TOKENS, PROMPT.length);
    const steppedCuda = await prefillThenDecode(cuda, TOKENS, PROMPT.length);
    expect(worstRowError(steppedCuda, steppedCpu, vocab)).toBeLessThan(BF16_RELATIVE);
    // The decode steps read the cache the prefill wrote: on CUDA they agree with the one-step forward too.
    expect(worstRowError(steppedCuda, actual, vocab)).toBeLessThan(BF16_RELATIVE);
    // score() takes the logits' path to log-probabilities on the device: same tolerance, in nats of the scale.
    const [scoreCpu, scoreCuda] = await Promise.all([cpu.score(TOKENS), cuda.score(TOKENS)]);
    const scale = expected.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    scoreCpu.logProbs.forEach((lp, i) => expect(Math.abs(scoreCuda.logProbs[i] - lp)).toBeLessThan(2 * BF16_RELATIVE * scale));
  });

  test(`greedy generation of ${GENERATED} tokens equals the CPU's up to the first near tie`, async () => {
    if (cuda === null) return;
    const cpuIds = await greedy(cpu, PROMPT, GENERATED);
    const cudaIds = await greedy(cuda, PROMPT, GENERATED);
    // Both devices' logits at every generated position (the row before each token chose it), by the one-step
    // forward and by prefill + decode steps as generation runs them.
    const sequence = [...PROMPT, ...cpuIds];
    const expected = (await cpu.forward(sequence)).logits;
    const [forward, stepped] = [(await cuda.forward(sequence)).logits, await prefillThenDecode(cuda, sequence, PROMPT.length)];
    const steppedCpu = await prefillThenDecode(cpu, sequence, PROMPT.length);
    const nearTie = (row: number) => {
      const error = Math.max(rowDifference(forward, expected, row, vocab), rowDifference(stepped, steppedCpu, row, vocab));
      return topTwoGap(steppedCpu, row, vocab) <= 2 * NEAR_TIE_SAFETY * error;
    };
    let compared = 0;
    let tie = -1;
    for (let i = 0; i < cpuIds.length; i++) {
      if (nearTie(PROMPT.length - 1 + i)) {
        tie = i;
        break;
      }
      expect([i, cudaIds[i]]).toEqual([i, cpuIds[i]]);
      compared++;
    }
    if (tie < 0 && cpuIds.length < GENERATED) {
      // The CPU stopped at end-of-sequence (chosen from the last row): CUDA must too, unless that was a near tie.
      if (!nearTie(PROMPT.length - 1 + cpuIds.length)) expect(cudaIds.length).toBe(cpuIds.length);
    }
    console.log(
      `${name}: greedy tokens compared ${compared} of ${cpuIds.length}` +
        (tie >= 0 ? ` (stopped at a near tie at token ${tie})` : ''),
    );
  });

  test('routing statistics of a forward equal the CPU\'s (within the near-tie allowance)', async () => {
    if (cuda === null) return;
    const [a, b] = [await cpu.forward(TOKENS, { stats: true }), await cuda.forward(TOKENS, { stats: true })];
    expectSameRouting(b.stats!, a.stats!, TOKENS.length);
    // Per token, through the native step statistics: routed-slot counts.
    const policies = cpu.policies(undefined);
    const stepCpu = await cpu.step(null, Int32Array.from(TOKENS), policies, false, true);
    const stepCuda = await cuda.step(null, Int32Array.from(TOKENS), cuda.policies(undefined), false, true);
    for (const differ of countMismatches(stepCuda.stats!, stepCpu.stats!)) {
      expect(differ).toBeLessThanOrEqual(allowedMismatches(TOKENS.length));
    }
  });

  test('a per-call top-p:0.4 policy routes the same counts as on the CPU (within the near-tie allowance)', async () => {
    if (cuda === null || !c.dynamicPolicy) return;
    const policy = { kind: 'top-p', p: 0.4 } as const;
    const policiesCpu = cpu.policies(policy);
    const policiesCuda = cuda.policies(policy);
    const stepCpu = await cpu.step(null, Int32Array.from(TOKENS), policiesCpu, false, true);
    const stepCuda = await cuda.step(null, Int32Array.from(TOKENS), policiesCuda, false, true);
    for (const differ of countMismatches(stepCuda.stats!, stepCpu.stats!)) {
      expect(differ).toBeLessThanOrEqual(allowedMismatches(TOKENS.length));
    }
    const [a, b] = [await cpu.forward(TOKENS, { policy, stats: true }), await cuda.forward(TOKENS, { policy, stats: true })];
    expect(b.stats!.policy).toBe('top-p:0.4');
    expectSameRouting(b.stats!, a.stats!, TOKENS.length);
    expect(worstRowError(b.logits, a.logits, vocab)).toBeLessThan(BF16_RELATIVE);
    // Per-layer policies: one per MoE layer, the first top-k:1.
    const moeLayers = cpu.spec.layers.filter((l) => l.kind === 'moe').length;
    const perLayer = Array.from({ length: moeLayers }, (_, i) => (i === 0 ? 'top-k:1' : 'top-p:0.4'));
    const [pa, pb] = [await cpu.forward(TOKENS, { policy: perLayer, stats: true }), await cuda.forward(TOKENS, { policy: perLayer, stats: true })];
    expect(pb.stats!.layers[0].expertsPerToken).toBe(1);
    expectSameRouting(pb.stats!, pa.stats!, TOKENS.length);
    expect(worstRowError(pb.logits, pa.logits, vocab)).toBeLessThan(BF16_RELATIVE);
  });
});

// ---- the model's behaviour on CUDA (one tiny mixtral) -----------------------------------------------------------------
describeCuda('a model on CUDA', () => {
  let dir: string;
  let f32Dir: string;
  let model: Model;
  beforeAll(async () => {
    dir = path.join(temp.dir, 'behaviour-bf16');
    f32Dir = path.join(temp.dir, 'behaviour-f32');
    await writeHfCheckpoint(dir, makeTinyModel('mixtral', 11), 'bf16');
    await writeHfCheckpoint(f32Dir, makeTinyModel('mixtral', 11), 'f32');
    model = await loadModel(dir, { device: 'cuda' });
  });
  afterAll(() => model?.dispose());

  async function collect(generation: AsyncIterable<{ id: number; text: string }>): Promise<number[]> {
    const ids: number[] = [];
    for await (const token of generation) ids.push(token.id);
    return ids;
  }

  test("device 'auto' picks CUDA where whole models run on it", async () => {
    const auto = await loadModel(dir, { device: 'auto' });
    try {
      expect(deviceOf(auto)).toBe('cuda');
    } finally {
      auto.dispose();
    }
  });

  test('streaming and stop strings: the stream is the summary\'s text, a stop string cuts it', async () => {
    const free = model.generate('hello', { maxTokens: 24 });
    let freeStream = '';
    for await (const token of free) freeStream += token.text;
    const text = free.summary!.text;
    expect(freeStream).toBe(text);
    expect(text.length).toBeGreaterThanOrEqual(3); // enough text to cut
    const stop = text.slice(1, 3);
    const cut = model.generate('hello', { maxTokens: 24, stop: [stop] });
    let streamed = '';
    for await (const token of cut) streamed += token.text;
    expect(cut.summary!.stopReason).toBe('stop');
    expect(cut.summary!.text).toBe(text.slice(0, text.indexOf(stop)));
    expect(streamed).toBe(cut.summary!.text);
    expect(cut.summary!.stats.tokens).toBeGreaterThan(0);
  });

  test('an AbortSignal aborts a running generation with ERR_DYNAMOE_ABORTED; the model stays usable', async () => {
    const controller = new AbortController();
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const token of model.generate('abort me', { maxTokens: 50, signal: controller.signal })) {
          seen.push(token.id);
          if (seen.length === 3) controller.abort();
        }
      })(),
    ).rejects.toMatchObject({ code: 'ERR_DYNAMOE_ABORTED' });
    expect(seen.length).toBe(3);
    // An already aborted signal rejects forward and score too.
    await expect(model.forward([1, 2, 3], { signal: AbortSignal.abort() })).rejects.toMatchObject({ code: 'ERR_DYNAMOE_ABORTED' });
    expect((await model.forward([1, 2, 3])).logits.length).toBe(3 * model.spec.vocab);
    expect(model.load.reservedBlocks).toBe(0);
  });

  test('4 concurrent generations and forwards batched with them give what they give one by one (bf16 tolerance)', async () => {
    // CUDA is deterministic per step shape but not batch-invariant (SECURITY.md): a batched step may take the
    // tensor-core GEMM where a lone one takes the GEMV, so batched logits match within bf16 tolerance, not bits.
    const prompts = [[1, 40, 41, 42], [5, 6, 7, 8, 9, 10, 11], [200], [3, 250, 3, 250, 3]];
    const sequential: number[][] = [];
    for (const p of prompts) sequential.push(await collect(model.generate(p, { maxTokens: 16 })));
    const concurrent = await Promise.all(prompts.map((p) => collect(model.generate(p, { maxTokens: 16 }))));
    concurrent.forEach((ids, i) => {
      expect(ids.length).toBe(sequential[i].length);
      expect(ids[0]).toBe(sequential[i][0]); // the first id follows the prompt's prefill alone: no drift yet
    });
    const alone = (await model.forward(TOKENS)).logits;
    const mixed = await Promise.all([
      model.forward(TOKENS),
      ...prompts.map((p) => collect(model.generate(p, { maxTokens: 16 }))),
      model.forward(TOKENS),
    ]);
    for (const result of [mixed[0], mixed[mixed.length - 1]]) {
      expect(worstRowError((result as { logits: Float32Array }).logits, alone, model.spec.vocab)).toBeLessThanOrEqual(BF16_RELATIVE);
    }
  });

  test('dispose ends running and waiting requests with ERR_DYNAMOE_DISPOSED', async () => {
    const own = await loadModel(dir, { device: 'cuda', maxSequences: 1 });
    const codeOf = async (promise: Promise<unknown>): Promise<string> =>
      promise.then(
        () => 'no error',
        (error: unknown) => (error instanceof DynamoeError ? error.code : String(error)),
      );
    const running = (async () => {
      for await (const token of own.generate([1, 2, 3, 4], { maxTokens: 60 })) void token;
    })();
    const waiting = own.forward([5, 6, 7, 8, 9, 10]);
    while (own.load.steps < 2) await new Promise((resolve) => setImmediate(resolve));
    own.dispose();
    expect(own.disposed).toBe(true);
    expect(await codeOf(running)).toBe('ERR_DYNAMOE_DISPOSED');
    expect(await codeOf(waiting)).toBe('ERR_DYNAMOE_DISPOSED');
    expect(await codeOf(own.forward([1]))).toBe('ERR_DYNAMOE_DISPOSED');
    expect(() => own.dispose()).not.toThrow();
  });

  test("an f32 checkpoint loads as bf16 on CUDA by default, as f32 with dtype 'f32' (then within 1e-3 of the CPU)", async () => {
    const byDefault = await loadModel(f32Dir, { device: 'cuda' });
    try {
      expect(byDefault.info.dtype).toBe('bf16');
      expect(deviceOf(byDefault)).toBe('cuda');
      // bf16 weights: half the bytes of f32 ones (at least the embedding and LM head differ).
      const cpuBf16 = await loadModel(f32Dir, { device: 'cpu', dtype: 'bf16' });
      try {
        const [a, b] = [(await cpuBf16.forward(TOKENS)).logits, (await byDefault.forward(TOKENS)).logits];
        expect(worstRowError(b, a, byDefault.spec.vocab)).toBeLessThan(BF16_RELATIVE);
      } finally {
        cpuBf16.dispose();
      }
    } finally {
      byDefault.dispose();
    }
    const f32 = await loadModel(f32Dir, { device: 'cuda', dtype: 'f32' });
    const cpuF32 = await loadModel(f32Dir, { device: 'cpu' });
    try {
      expect(f32.info.dtype).toBe('f32');
      expect(cpuF32.info.dtype).toBe('f32');
      const [a, b] = [(await cpuF32.forward(TOKENS)).logits, (await f32.forward(TOKENS)).logits];
      expect(worstRowError(b, a, f32.spec.vocab)).toBeLessThan(F32_RELATIVE);
      const [sa, sb] = [await prefillThenDecode(cpuF32, TOKENS, PROMPT.length), await prefillThenDecode(f32, TOKENS, PROMPT.length)];
      expect(worstRowError(sb, sa, f32.spec.vocab)).toBeLessThan(F32_RELATIVE);
    } finally {
      f32.dispose();
      cpuF32.dispose();
    }
  });

  test('determinism: the same forward, score and prefill + decode twice give the same bits', async () => {
    const first = await model.forward(TOKENS, { stats: true });
    const second = await model.forward(TOKENS, { stats: true });
    expect(bits(second.logits)).toEqual(bits(first.logits));
    expect(second.stats).toEqual(first.stats);
    const [s1, s2] = [await model.score(TOKENS), await model.score(TOKENS)];
    expect(bits(s2.logProbs)).toEqual(bits(s1.logProbs));
    const [d1, d2] = [await prefillThenDecode(model, TOKENS, 5), await prefillThenDecode(model, TOKENS, 5)];
    expect(bits(d2)).toEqual(bits(d1));
    // Nothing of another shape run between changes them (scratch reuse).
    await model.forward(Array.from({ length: 300 }, (_, i) => (i * 7) % 250));
    expect(bits((await model.forward(TOKENS)).logits)).toEqual(bits(first.logits));
  });

  test('seeded sampling on the GPU (top-k, top-p, temperature): a seed repeats its tokens, captured steps included', async () => {
    const sample = (seed: number, topP = 0.9) =>
      collect(model.generate('sampled', { maxTokens: 24, temperature: 1.3, topK: 40, topP, seed }));
    const first = await sample(7);
    expect(first.length).toBeGreaterThan(0);
    expect(await sample(7)).toEqual(first);
    const others = await Promise.all([sample(8), sample(9), sample(10, 1)]);
    expect(others.some((ids) => ids.join() !== first.join())).toBe(true);
    expect(await sample(10, 1)).toEqual(others[2]);
  });

  test('the KV cache is bf16 for 16-bit models on CUDA (half the CPU\'s f32 bytes for the same positions), f32 for f32', async () => {
    const options = { kvPoolTokens: 4096, maxSequences: 4 };
    const [cpu, gpu, gpuF32] = [
      await loadModel(dir, { ...options, device: 'cpu' }),
      await loadModel(dir, { ...options, device: 'cuda' }),
      await loadModel(f32Dir, { ...options, device: 'cuda', dtype: 'f32' }),
    ];
    try {
      expect(gpu.info.kvPool.positions).toBe(cpu.info.kvPool.positions);
      expect(gpu.info.kvPool.bytes * 2).toBe(cpu.info.kvPool.bytes);
      expect(gpuF32.info.kvPool.bytes).toBe(cpu.info.kvPool.bytes);
    } finally {
      cpu.dispose();
      gpu.dispose();
      gpuF32.dispose();
    }
  });

  test('a KV pool larger than the GPU is refused with ERR_DYNAMOE_OUT_OF_MEMORY naming the sizes', async () => {
    // 2^30 positions of 2 layers x (keys + values) x 2 kv heads x 16 floats: hundreds of GiB, more than any GPU.
    const error = await loadModel(dir, { device: 'cuda', kvPoolTokens: 1 << 30 }).then(
      (loaded) => {
        loaded.dispose();
        return undefined;
      },
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(DynamoeError);
    expect((error as DynamoeError).code).toBe('ERR_DYNAMOE_OUT_OF_MEMORY');
    // Names what it needed and what the GPU has, in bytes people read.
    expect((error as Error).message).toMatch(/\d+(\.\d)? (KiB|MiB|GiB|TiB)/);
    // The refusal leaves the GPU usable: the shared model still runs.
    expect((await model.forward([1, 2, 3])).logits.length).toBe(3 * model.spec.vocab);
  });
});

// Last: which architectures CUDA refused, so the GPU run's log shows them.
describeCuda('architectures CUDA refused', () => {
  test('are listed (ERR_DYNAMOE_UNSUPPORTED, each with its message)', () => {
    const mayRefuse = new Set(CASES.filter((c) => c.mayRefuse).map((c) => c.name));
    for (const { name } of unsupported) expect(mayRefuse.has(name)).toBe(true);
    console.log(
      unsupported.length === 0
        ? 'CUDA ran every architecture of test/76'
        : `CUDA refused ${unsupported.length} of ${CASES.length} architectures:\n` +
            unsupported.map((u) => `  ${u.name}: ${u.message}`).join('\n'),
    );
  });
});
