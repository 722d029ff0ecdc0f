// DeepSeek-V2 / V3: multi-head latent attention (MLA) from the compressed cache, against a float64 reference of the
// plain (non-absorbed) HF math, from safetensors and both GGUF layouts; prefill + decode, batching and chunking
// bit-identity, the cache's size, and bad checkpoints.
import * as path from 'path';
import { cpuInfo, loadModel, Model, setCpuIsa, setQuantActivations } from '../lib';
import type { CpuIsa } from '../lib';
import { DynamoeError } from '../lib/errors';
import type { GgufTypedValue } from '../lib/formats/gguf';
import { architectureForHfConfig } from '../lib/model/architectures';
import { ConfigReader } from '../lib/model/config-reader';
import { ggufNaming } from '../lib/model/naming';
import { maxRelativeError } from './reference/layer';
import { refMlaForward } from './reference/mla-model';
import { dequantizeReference } from './reference/quant-formats';
import { tempDir } from './model-fixtures';
import { makeTinyDeepseekV2, TinyMlaModel, writeDeepseekGguf, writeDeepseekHf } from './mla-fixtures';
import { bits, prefillThenDecode } from './model-steps';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11];
// 37 positions: past one 32-position KV block.
const LONG_TOKENS = Array.from({ length: 37 }, (_, i) => 1 + ((i * 104729 + 13) % 270));

let temp: ReturnType<typeof tempDir>;
// Quantized weights are held to the float64 reference of their dequantized values: the exact f32 path (the 8-bit
// activations of the default 'q8' path are held to their own reference in test 41 and test 39).
const QUANT_ACTIVATIONS = cpuInfo().quantActivations;
beforeAll(() => setQuantActivations('f32'));
afterAll(() => setQuantActivations(QUANT_ACTIVATIONS));
beforeAll(() => {
  temp = tempDir('dynamoe-mla-');
});
afterAll(() => temp.cleanup());


async function expectCode(promise: Promise<unknown>, code: string, mention: string): Promise<void> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DynamoeError);
  expect((error as DynamoeError).code).toBe(code);
  expect((error as Error).message).toContain(mention);
}

describe.each([
  ['with a low-rank query (q_lora_rank 32)', { qLoraRank: 32 }],
  ['with one q_proj (V2-Lite style)', {}],
] as const)('DeepSeek-V2 %s', (_label, options) => {
  const model = makeTinyDeepseekV2(5, options);
  const reference = refMlaForward(model, TOKENS);
  const tag = 'qLoraRank' in options ? 'qa' : 'q';

  test('f32 safetensors: logits and routing match the float64 reference (max rel. error <= 1e-4)', async () => {
    const dir = path.join(temp.dir, `v2-${tag}-hf`);
    await writeDeepseekHf(dir, model);
    const loaded = await loadModel(dir);
    try {
      expect(loaded.info.architecture).toBe('deepseek-v2');
      expect(loaded.info.mla).toEqual({ ...options, kvLoraRank: 24, nopeDim: 16, ropeDim: 8, valueDim: 12 });
      const { logits, stats } = await loaded.forward(TOKENS, { stats: true });
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
      expect(stats!.layers.map((l) => l.histogram.reduce((s, n, c) => s + n * c, 0))).toEqual(
        reference.counts.map((c) => c.reduce((s, n) => s + n, 0)),
      );
    } finally {
      loaded.dispose();
    }
  });

  test.each([
    ['split attn_k_b / attn_v_b (today\'s converter)', true],
    ['whole attn_kv_b (older converters)', false],
  ])('f32 GGUF with %s matches the float64 reference', async (_name, split) => {
    const file = path.join(temp.dir, `v2-${tag}-${split ? 'split' : 'whole'}.gguf`);
    await writeDeepseekGguf(file, model, 'f32', split);
    const loaded = await loadModel(file);
    try {
      expect(loaded.info.architecture).toBe('deepseek-v2');
      expect(loaded.info.mla).toEqual({ ...options, kvLoraRank: 24, nopeDim: 16, ropeDim: 8, valueDim: 12 });
      const { logits } = await loaded.forward(TOKENS);
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  });
});

// Q8_0 attention matrices (as llama.cpp's Q8_0 files hold them): split k_b/v_b rows are nopeDim and kvLoraRank long,
// whole kv_b rows kvLoraRank; the reference runs on the values the file holds.
describe.each([true, false])('Q8_0 MLA matrices in a GGUF (split k_b/v_b: %s)', (split) => {
  test('logits match the float64 reference of the dequantized file', async () => {
    const { native } = await import('../lib/addon/native');
    const model = makeTinyDeepseekV2(14, { qLoraRank: 64, kvLoraRank: 64, nopeDim: 32, ropeDim: 32, valueDim: 32 });
    const file = path.join(temp.dir, `q8-${split}.gguf`);
    const R = model.kvLoraRank;
    const N = model.nopeDim;
    const V = model.valueDim;
    let quantized = 0;
    await writeDeepseekGguf(file, model, 'f32', split, async (_metadata, tensors) => {
      for (const t of tensors) {
        const match = /^blk\.(\d+)\.(attn_q_a|attn_q_b|attn_kv_a_mqa|attn_kv_b|attn_k_b|attn_v_b|attn_output)\.weight$/.exec(t.name);
        if (!match) continue;
        const cols = t.shape[t.shape.length - 1];
        const rows = t.shape.reduce((n, d) => n * d, 1) / cols;
        const blocks = await native().quantize('q8_0', t.data as Float32Array, rows, cols);
        const values = Float32Array.from(dequantizeReference('q8_0', blocks, rows, cols));
        Object.assign(t, { dtype: 'q8_0', data: blocks });
        quantized++;
        const layer = model.layers[Number(match[1])];
        const kind = match[2];
        if (kind === 'attn_q_a') layer.qA = values;
        if (kind === 'attn_q_b') layer.qB = values;
        if (kind === 'attn_kv_a_mqa') layer.kvA = values;
        if (kind === 'attn_kv_b') layer.kvB = values;
        if (kind === 'attn_output') layer.o = values;
        // k_b [heads][rank][nope] and v_b [heads][value][rank] back into kv_b's [heads][nope + value][rank].
        for (let h = 0; h < model.heads; h++) {
          const head = h * (N + V) * R;
          if (kind === 'attn_k_b') {
            for (let n = 0; n < N; n++) for (let r = 0; r < R; r++) layer.kvB[head + n * R + r] = values[(h * R + r) * N + n];
          }
          if (kind === 'attn_v_b') layer.kvB.set(values.subarray(h * V * R, (h + 1) * V * R), head + N * R);
        }
      }
    });
    // q_a, q_b, kv_a, output, and k_b + v_b or kv_b, in each of 3 layers.
    expect(quantized).toBe(3 * (split ? 6 : 5));
    const reference = refMlaForward(model, TOKENS);
    const loaded = await loadModel(file);
    try {
      const { logits } = await loaded.forward(TOKENS);
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  });
});

// The routers of V2's group_limited_greedy and V3's noaux_tc, run natively, against the reference's router rules.
describe.each([
  ['group_limited_greedy (V2)', 'group_limited_greedy', 'deepseek-v2'],
  ['noaux_tc (V3: sigmoid, selection bias, groups by their two best)', 'noaux_tc', 'deepseek-v3'],
] as const)('DeepSeek routing %s', (_name, routing, architecture) => {
  const model = makeTinyDeepseekV2(15, { qLoraRank: 32, routing });
  const reference = refMlaForward(model, TOKENS);
  const moe = model.layers[1].ffn;
  const rule = moe.kind === 'moe' ? moe.routerRule! : undefined;
  const expected = {
    scoring: rule!.scoring,
    ...(rule!.selectionBias ? { selectionBias: true, normalize: true, scale: model.routedScale } : {}),
    groups: { count: 4, keep: 2, score: rule!.groupScore },
  };

  test.each([
    ['safetensors', false],
    ['GGUF', true],
  ])('from %s: the router spec, logits and routing match the float64 reference', async (format, gguf) => {
    const location = path.join(temp.dir, `${routing}-${format}${gguf ? '.gguf' : ''}`);
    if (gguf) await writeDeepseekGguf(location, model);
    else await writeDeepseekHf(location, model);
    const loaded = await loadModel(location);
    try {
      expect(loaded.info.architecture).toBe(architecture);
      const layer = loaded.info.layers[1];
      expect(layer.kind === 'moe' && layer.router).toEqual(expected);
      const { logits, stats } = await loaded.forward(TOKENS, { stats: true });
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
      expect(stats!.layers.map((l) => l.histogram.reduce((sum, n, c) => sum + n * c, 0))).toEqual(
        reference.counts.map((c) => c.reduce((sum, n) => sum + n, 0)),
      );
    } finally {
      loaded.dispose();
    }
  });
});

// DeepSeek's YaRN: the RoPE parts rotate by the blended frequency table, cos/sin times mscale / mscale_all_dim's
// ratio, and the softmax scale times mscale_all_dim's mscale squared. A ramp inside the 8 rotated pairs, and a
// cos/sin factor that is not 1.
test('DeepSeek-V2 with YaRN rope_scaling matches the float64 reference of HF\'s YaRN', async () => {
  const yarn = { factor: 40, originalContext: 4096, betaFast: 32, betaSlow: 1, mscale: 1, mscaleAllDim: 0.8 };
  const base = makeTinyDeepseekV2(9, { qLoraRank: 32, ropeDim: 16 });
  const model: TinyMlaModel = {
    ...base,
    yarn,
    config: {
      ...base.config,
      rope_scaling: { type: 'yarn', factor: 40, original_max_position_embeddings: 4096, beta_fast: 32, beta_slow: 1, mscale: 1, mscale_all_dim: 0.8 },
    },
  };
  const reference = refMlaForward(model, LONG_TOKENS);
  // The plain RoPE is not the answer: the test would pass without YaRN otherwise.
  const plain = refMlaForward(base, LONG_TOKENS);
  expect(maxRelativeError(plain.logits, reference.logits)).toBeGreaterThan(1e-2);
  const dir = path.join(temp.dir, 'v2-yarn-hf');
  await writeDeepseekHf(dir, model);
  const loaded = await loadModel(dir);
  try {
    const { logits } = await loaded.forward(LONG_TOKENS);
    expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

// A deepseek2 GGUF keeps DeepSeek's YaRN in llama.cpp's keys: rope.scaling.{type, factor, original_context_length}
// and yarn_log_multiplier = 0.1 x mscale_all_dim (llama.cpp takes mscale == mscale_all_dim, as the released
// checkpoints have it: cos/sin factor 1, softmax times mscale_all_dim's mscale squared). Without that key, YaRN's
// default cos/sin factor and no softmax factor, as Hugging Face reads a config without mscale_all_dim.
describe('YaRN in a deepseek2 GGUF', () => {
  const yarnKeys = (logMultiplier?: number, attnFactor?: number) => (metadata: Array<[string, GgufTypedValue]>) => {
    metadata.push(
      ['deepseek2.rope.scaling.type', { type: 'string', value: 'yarn' }],
      ['deepseek2.rope.scaling.factor', { type: 'f32', value: 40 }],
      ['deepseek2.rope.scaling.original_context_length', { type: 'u32', value: 4096 }],
      ...(logMultiplier === undefined ? [] : [['deepseek2.rope.scaling.yarn_log_multiplier', { type: 'f32', value: logMultiplier }] as [string, GgufTypedValue]]),
      ...(attnFactor === undefined ? [] : [['deepseek2.rope.scaling.attn_factor', { type: 'f32', value: attnFactor }] as [string, GgufTypedValue]]),
    );
  };

  test.each([
    ['with yarn_log_multiplier (DeepSeek-V2\'s mscale = mscale_all_dim = 0.707)', 0.707, 0.707, 0.0707],
    ['without it (no mscale_all_dim)', 1, 0, undefined],
  ])('%s: logits match the float64 reference of HF\'s YaRN', async (_name, mscale, mscaleAllDim, logMultiplier) => {
    const base = makeTinyDeepseekV2(9, { qLoraRank: 32, ropeDim: 16 });
    const model: TinyMlaModel = { ...base, yarn: { factor: 40, originalContext: 4096, betaFast: 32, betaSlow: 1, mscale, mscaleAllDim } };
    const reference = refMlaForward(model, LONG_TOKENS);
    expect(maxRelativeError(refMlaForward(base, LONG_TOKENS).logits, reference.logits)).toBeGreaterThan(1e-2);
    const file = path.join(temp.dir, `v2-yarn-${mscaleAllDim}.gguf`);
    await writeDeepseekGguf(file, model, 'f32', true, yarnKeys(logMultiplier));
    const loaded = await loadModel(file);
    try {
      const { logits } = await loaded.forward(LONG_TOKENS);
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  });

  test('an attention factor other than 1 is refused, naming the key', async () => {
    const file = path.join(temp.dir, 'v2-yarn-attn-factor.gguf');
    await writeDeepseekGguf(file, makeTinyDeepseekV2(9), 'f32', true, yarnKeys(0.0707, 1.5));
    await expectCode(loadModel(file), 'ERR_DYNAMOE_UNSUPPORTED', 'rope.scaling.attn_factor');
  });
});

describe('the latent cache', () => {
  let model: TinyMlaModel;
  let dir: string;
  beforeAll(async () => {
    model = makeTinyDeepseekV2(8, { qLoraRank: 32 });
    dir = path.join(temp.dir, 'v2-cache-hf');
    await writeDeepseekHf(dir, model);
  });

  test('holds kvLoraRank + ropeDim floats per token and layer, and no values', async () => {
    const loaded = await loadModel(dir, { kvPoolTokens: 256 });
    try {
      const pool = loaded.info.kvPool;
      const perTokenPerLayer = pool.bytes / pool.positions / model.layers.length;
      expect(perTokenPerLayer).toBe((model.kvLoraRank + model.ropeDim) * 4);
    } finally {
      loaded.dispose();
    }
  });

  test.each(cpuInfo().supportedIsas.map((isa) => [isa] as [CpuIsa]))(
    '%s: prefill then one-token decode steps equal the one-shot forward and the reference',
    async (isa) => {
      const active = cpuInfo().isa;
      setCpuIsa(isa);
      const reference = refMlaForward(model, LONG_TOKENS);
      const loaded = await loadModel(dir);
      try {
        const { logits } = await loaded.forward(LONG_TOKENS);
        expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
        const prefill = 30;
        const steppedLogits = await prefillThenDecode(loaded, LONG_TOKENS, prefill);
        expect(maxRelativeError(steppedLogits, reference.logits)).toBeLessThan(1e-4);
        // Decode rows of the absorbed form read the cache the prefill wrote: the same bits as the one-shot rows.
        expect(bits(steppedLogits.subarray(prefill * model.vocab)).equals(bits(logits.subarray(prefill * model.vocab)))).toBe(true);
      } finally {
        loaded.dispose();
        setCpuIsa(active);
      }
    },
  );
});

describe('batching and chunking', () => {
  let alone: Model;
  let chunked: Model;
  beforeAll(async () => {
    const dir = path.join(temp.dir, 'v2-batch-hf');
    await writeDeepseekHf(dir, makeTinyDeepseekV2(9, { qLoraRank: 32 }), 'bf16');
    alone = await loadModel(dir, { maxSequences: 1 });
    // Prompts cut in chunks of 5 tokens and batched with the others.
    chunked = await loadModel(dir, { maxSequences: 16, tokensPerStep: 5 });
  });
  afterAll(() => {
    alone.dispose();
    chunked.dispose();
  });

  test('forwards, scores and generations are the same bits alone and batched with others', async () => {
    const prompts = Array.from({ length: 6 }, (_, i) => Array.from({ length: 3 + i * 5 }, (_, j) => 1 + ((i * 7919 + j * 104729) % 270)));
    const lone: { logits: Float32Array }[] = [];
    for (const ids of prompts) lone.push(await alone.forward(ids));
    const scoreAlone = await alone.score(prompts[5]);
    const collect = async (ids: number[]) => {
      const out: number[] = [];
      for await (const token of alone.generate(ids, { maxTokens: 8 })) out.push(token.id);
      return out;
    };
    const greedyAlone = await collect(prompts[2]);
    // The most sequences any step of `chunked` held while the batch ran: they must really share steps.
    let largestStep = 0;
    let running = true;
    const watch = (async () => {
      while (running) {
        largestStep = Math.max(largestStep, chunked.load.lastStepSequences);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const together = await Promise.all([
      ...prompts.map((ids) => chunked.forward(ids)),
      chunked.score(prompts[5]),
      (async () => {
        const out: number[] = [];
        for await (const token of chunked.generate(prompts[2], { maxTokens: 8 })) out.push(token.id);
        return out;
      })(),
    ]);
    running = false;
    await watch;
    expect(largestStep).toBeGreaterThan(1);
    prompts.forEach((_, i) => {
      const result = together[i] as { logits: Float32Array };
      expect(bits(result.logits).equals(bits(lone[i].logits))).toBe(true);
    });
    expect(bits((together[prompts.length] as { logProbs: Float64Array }).logProbs).equals(bits(scoreAlone.logProbs))).toBe(true);
    expect(together[prompts.length + 1]).toEqual(greedyAlone);
  });
});

describe('DeepSeek-V2/V3 configs', () => {
  const read = (config: Record<string, unknown>) => {
    const c = ConfigReader.fromJson(config, 'config.json');
    return architectureForHfConfig(c).fromHfConfig(c);
  };
  const base = makeTinyDeepseekV2(1, { qLoraRank: 32 }).config;

  test('group_limited_greedy (V2) becomes a softmax router over groups ranked by their best expert', () => {
    const spec = read({ ...base, topk_method: 'group_limited_greedy', n_group: 4, topk_group: 2 });
    const moe = spec.layers[1];
    expect(moe.kind === 'moe' && moe.router).toEqual({ scoring: 'softmax', groups: { count: 4, keep: 2, score: 'max' } });
    expect(moe.kind === 'moe' && moe.policy).toEqual({ kind: 'top-k', k: 3, normalize: false, scale: 1.5 });
  });

  test('DeepSeek-V3 (noaux_tc, sigmoid) becomes a sigmoid router with selection bias and top-2-sum groups', () => {
    const spec = read({
      ...base, model_type: 'deepseek_v3', topk_method: 'noaux_tc', scoring_func: 'sigmoid', n_group: 4, topk_group: 2,
      norm_topk_prob: true, routed_scaling_factor: 2.5,
    });
    expect(spec.architecture).toBe('deepseek-v3');
    expect(spec.layers[0].kind).toBe('dense');
    const moe = spec.layers[2];
    expect(moe.kind === 'moe' && moe.policy).toEqual({ kind: 'top-k', k: 3 });
    expect(moe.kind === 'moe' && moe.router).toEqual({
      scoring: 'sigmoid', selectionBias: true, normalize: true, scale: 2.5, groups: { count: 4, keep: 2, score: 'top2-sum' },
    });
  });

  test('the selection bias tensor is named as HF and llama.cpp write it', () => {
    const c = ConfigReader.fromJson({ ...base, model_type: 'deepseek_v3' }, 'config.json');
    expect(architectureForHfConfig(c).hfNaming.layer(3, 'router_selection_bias')).toBe('model.layers.3.mlp.gate.e_score_correction_bias');
    expect(ggufNaming.layer(3, 'router_selection_bias')).toBe('blk.3.exp_probs_b.bias');
  });

  test.each([
    ['rope_scaling other than YaRN', { rope_scaling: { type: 'linear', factor: 4 } }, 'ERR_DYNAMOE_UNSUPPORTED', 'rope_scaling'],
    ['an odd qk_rope_head_dim', { qk_rope_head_dim: 7 }, 'ERR_DYNAMOE_UNSUPPORTED', 'qk_rope_head_dim'],
    ['an unknown topk_method', { topk_method: 'random' }, 'ERR_DYNAMOE_UNSUPPORTED', 'topk_method'],
    ['a missing kv_lora_rank', { kv_lora_rank: null }, 'ERR_DYNAMOE_FORMAT', 'kv_lora_rank'],
  ])('%s is refused', (_name, change, code, mention) => {
    let error: unknown;
    try {
      read({ ...base, ...change });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DynamoeError);
    expect((error as DynamoeError).code).toBe(code);
    expect((error as Error).message).toContain(mention);
  });
});

describe('bad checkpoints fail with a code naming the tensor', () => {
  const model = makeTinyDeepseekV2(3, { qLoraRank: 32 });
  test.each([
    ['a missing kv_b_proj', (name: string) => name === 'model.layers.1.self_attn.kv_b_proj.weight', undefined, 'kv_b_proj'],
    ['a missing kv_a_layernorm', (name: string) => name === 'model.layers.0.self_attn.kv_a_layernorm.weight', undefined, 'kv_a_layernorm'],
    ['a kv_a_proj_with_mqa of the wrong rank', undefined, 'model.layers.2.self_attn.kv_a_proj_with_mqa.weight', 'kv_a_proj_with_mqa'],
    ['a q_b_proj of the wrong shape', undefined, 'model.layers.0.self_attn.q_b_proj.weight', 'q_b_proj'],
  ])('%s', async (name, drop, reshape, mention) => {
    const dir = path.join(temp.dir, `bad-${name.replace(/\W+/g, '-')}`);
    await writeDeepseekHf(dir, model, 'f32', (_config, tensors) =>
      tensors
        .filter((t) => !drop?.(t.name))
        .map((t) => (t.name === reshape ? { ...t, shape: [t.shape[0] / 2, t.shape[1] * 2] } : t)),
    );
    await expectCode(loadModel(dir), 'ERR_DYNAMOE_FORMAT', mention);
  });

  test('a GGUF whose q_lora_rank disagrees with its tensors', async () => {
    const file = path.join(temp.dir, 'bad-qlora.gguf');
    await writeDeepseekGguf(file, model, 'f32', true, (metadata) => {
      const entry = metadata.find(([key]) => key === 'deepseek2.attention.q_lora_rank')!;
      entry[1] = { type: 'u32', value: 0 };
    });
    await expectCode(loadModel(file), 'ERR_DYNAMOE_FORMAT', 'attn_q_a');
  });

  test('a GGUF missing attn_v_b', async () => {
    const file = path.join(temp.dir, 'bad-vb.gguf');
    await writeDeepseekGguf(file, model, 'f32', true, (_metadata, tensors) => {
      tensors.splice(tensors.findIndex((t) => t.name === 'blk.1.attn_v_b.weight'), 1);
    });
    await expectCode(loadModel(file), 'ERR_DYNAMOE_FORMAT', 'blk.1.attn_v_b.weight');
  });
});

describe('the mla_attention node and keys-only cache slots, as the addon reads them', () => {
  // Buffers: 0 queryNope (2 heads x 4), 1 queryRope (2 x 2), 2 latent (6), 3 keyRope (2), 4 output (2 x 3), 5 (8).
  const layout = { bufferWidths: [8, 4, 6, 2, 6, 8], vocab: 4, kvWidths: [8], kvValueWidths: [0], moeExperts: [], dtype: 'f32', kvPoolTokens: 64 };
  const good = {
    op: 'mla_attention', queryNope: 0, queryRope: 1, latent: 2, keyRope: 3, output: 4, heads: 2, nopeDim: 4, ropeDim: 2,
    kvLoraRank: 6, valueDim: 3, slot: 0, keyUp: new Float32Array(2 * 6 * 4), valueUp: new Float32Array(2 * 3 * 6),
  };
  const outcome = async (make: () => Promise<unknown> | unknown): Promise<string> => {
    try {
      await make();
      return 'ok';
    } catch (error) {
      return (error as { code?: string }).code ?? `uncoded: ${String(error)}`;
    }
  };

  test('a well-formed node is taken; each bad field is refused with a code', async () => {
    const { native } = await import('../lib/addon/native');
    const graph = new (native().ModelGraph)(layout as never);
    try {
      expect(await outcome(() => graph.addNode(good as never))).toBe('ok');
      const bad: Array<[Record<string, unknown>, string]> = [
        [{ slot: 1 }, 'ERR_DYNAMOE_SHAPE'],
        [{ kvLoraRank: 5, latent: 2 }, 'ERR_DYNAMOE_SHAPE'],
        [{ ropeDim: 3 }, 'ERR_DYNAMOE_SHAPE'],
        [{ output: 0 }, 'ERR_DYNAMOE_SHAPE'],
        [{ keyUp: new Float32Array(7) }, 'ERR_DYNAMOE_SHAPE'],
        [{ valueUp: undefined }, 'ERR_DYNAMOE_TYPE'],
        [{ heads: 2 ** 20 }, 'ERR_DYNAMOE_SHAPE'],
        [{ scale: -1 }, 'ERR_DYNAMOE_SHAPE'],
      ];
      const found = [];
      for (const [change] of bad) found.push(await outcome(() => graph.addNode({ ...good, ...change } as never)));
      expect(found).toEqual(bad.map(([, code]) => code));
      // An ordinary attention node cannot use a slot without values.
      const attention = { op: 'attention', query: 0, key: 0, value: 0, output: 5, heads: 1, kvHeads: 1, headDim: 8, slot: 0 };
      expect(await outcome(() => graph.addNode(attention as never))).toBe('ERR_DYNAMOE_SHAPE');
    } finally {
      graph.dispose();
    }
    expect(await outcome(() => new (native().ModelGraph)({ ...layout, kvValueWidths: [0, 0] } as never))).toBe('ERR_DYNAMOE_SHAPE');
  });
});
