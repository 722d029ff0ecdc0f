// A tiny random Granite MoE checkpoint written by the tests, as Hugging Face safetensors (experts stacked, gate and
// up fused in input_linear) and as the GGUF llama.cpp's converter makes (arch 'granitemoe': q/k rows permuted for
// pair-wise RoPE, input_linear split into ffn_gate_exps / ffn_up_exps, the multipliers as *_scale keys). Names and
// layouts are written from modeling_granitemoe and llama.cpp's convert_hf_to_gguf.py, not lib/.
import { toBf16 } from '../lib/dtype';
import { GgufTypedValue, writeGguf } from '../lib/formats/gguf';
import { TensorInput } from '../lib/formats/tensor-store';
import { writeHfDirectory } from './hf-directory';
import { RefGraniteModel } from './reference/granite-moe';
import { Rng } from './reference/random';
import { tinyTokenizerGgufMetadata } from './tokenizer-fixtures';

export interface TinyGranite extends RefGraniteModel {
  config: Record<string, unknown>;
}

const VOCAB = 269; // the byte-bpe tiny tokenizer

export interface TinyGraniteOptions {
  /** The LM head is the embedding matrix (default false). */
  tied?: boolean;
  /** q/k/v/o biases (config attention_bias; default false). */
  attentionBias?: boolean;
  /** A granitemoeshared model with a shared MLP of this width (default none: granitemoe). */
  sharedFfn?: number;
  /** Every multiplier 1 and attention_multiplier 1 / sqrt(head dim): a plain Llama MoE (default false). */
  plain?: boolean;
}

/** Two layers, 4 query heads on 2 key/value heads of 16, 4 experts of 24, top-2; multipliers 12, 0.22, 1/64, 8. */
export function makeTinyGranite(seed = 1, options: TinyGraniteOptions = {}): TinyGranite {
  const rng = new Rng(seed);
  const hidden = 64;
  const heads = 4;
  const kvHeads = 2;
  const headDim = hidden / heads;
  const experts = 4;
  const ffn = 24;
  const k = 2;
  const layerCount = 2;
  const multipliers = options.plain
    ? { embedding: 1, residual: 1, attention: 1 / Math.sqrt(headDim), logits: 1 }
    : { embedding: 12, residual: 0.22, attention: 0.015625, logits: 8 };
  const m = (rows: number, cols: number, std = 1 / Math.sqrt(cols)) => rng.normalArray(rows * cols, std);
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal());
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  const shared = options.sharedFfn;
  const layers = Array.from({ length: layerCount }, () => ({
    attnNorm: norm(hidden), q: m(qW, hidden, 3 / Math.sqrt(hidden)), k: m(kvW, hidden, 3 / Math.sqrt(hidden)),
    v: m(kvW, hidden), o: m(hidden, qW),
    ...(options.attentionBias
      ? { bias: { q: rng.normalArray(qW, 0.2), k: rng.normalArray(kvW, 0.2), v: rng.normalArray(kvW, 0.2), o: rng.normalArray(hidden, 0.2) } }
      : {}),
    postNorm: norm(hidden),
    moe: {
      experts, k, ffn,
      router: m(experts, hidden, 2 / Math.sqrt(hidden)),
      inputLinear: m(experts * 2 * ffn, hidden), outputLinear: m(experts * hidden, ffn),
      ...(shared ? { shared: { ffn: shared, inputLinear: m(2 * shared, hidden), outputLinear: m(hidden, shared) } } : {}),
    },
  }));
  const modelType = shared ? 'granitemoeshared' : 'granitemoe';
  const config: Record<string, unknown> = {
    model_type: modelType, architectures: [shared ? 'GraniteMoeSharedForCausalLM' : 'GraniteMoeForCausalLM'],
    vocab_size: VOCAB, hidden_size: hidden, num_attention_heads: heads, num_key_value_heads: kvHeads,
    num_hidden_layers: layerCount, num_local_experts: experts, num_experts_per_tok: k, intermediate_size: ffn,
    ...(shared ? { shared_intermediate_size: shared } : {}),
    hidden_act: 'silu', rope_theta: 10000, rms_norm_eps: 1e-6, attention_bias: options.attentionBias ?? false,
    tie_word_embeddings: options.tied ?? false, max_position_embeddings: 4096, torch_dtype: 'float32',
    embedding_multiplier: multipliers.embedding, residual_multiplier: multipliers.residual,
    attention_multiplier: multipliers.attention, logits_scaling: multipliers.logits,
  };
  return {
    config, vocab: VOCAB, hidden, heads, kvHeads, ropeTheta: 10000, rmsNormEpsilon: 1e-6,
    embeddingMultiplier: multipliers.embedding, residualMultiplier: multipliers.residual,
    attentionMultiplier: multipliers.attention, logitsScaling: multipliers.logits,
    // Small embeddings: times 12 they are of the usual size.
    embed: m(VOCAB, hidden, 0.1), finalNorm: norm(hidden), ...(options.tied ? {} : { lmHead: m(VOCAB, hidden) }), layers,
  };
}

type FileDtype = 'f32' | 'bf16';

// 1-D tensors stay f32, as the converters write norms and biases.
function tensor(name: string, shape: number[], values: Float32Array, dtype: FileDtype): TensorInput {
  if (shape.length === 1 || dtype === 'f32') return { name, shape, dtype: 'f32', data: values };
  return { name, shape, dtype, data: toBf16(values) };
}

/** Writes the Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer), less `omit`'s tensors. */
export async function writeGraniteHf(dir: string, m: TinyGranite, dtype: FileDtype = 'f32', omit: string[] = []): Promise<void> {
  const H = m.hidden;
  const qW = H;
  const kvW = m.kvHeads * (H / m.heads);
  const t: TensorInput[] = [
    tensor('model.embed_tokens.weight', [m.vocab, H], m.embed, dtype),
    tensor('model.norm.weight', [H], m.finalNorm, dtype),
    ...(m.lmHead ? [tensor('lm_head.weight', [m.vocab, H], m.lmHead, dtype)] : []),
  ];
  m.layers.forEach((l, i) => {
    const at = (s: string) => `model.layers.${i}.${s}`;
    const { experts: E, ffn: F } = l.moe;
    t.push(
      tensor(at('input_layernorm.weight'), [H], l.attnNorm, dtype),
      tensor(at('post_attention_layernorm.weight'), [H], l.postNorm, dtype),
      tensor(at('self_attn.q_proj.weight'), [qW, H], l.q, dtype),
      tensor(at('self_attn.k_proj.weight'), [kvW, H], l.k, dtype),
      tensor(at('self_attn.v_proj.weight'), [kvW, H], l.v, dtype),
      tensor(at('self_attn.o_proj.weight'), [H, qW], l.o, dtype),
      tensor(at('block_sparse_moe.router.layer.weight'), [E, H], l.moe.router, dtype),
      tensor(at('block_sparse_moe.input_linear.weight'), [E, 2 * F, H], l.moe.inputLinear, dtype),
      tensor(at('block_sparse_moe.output_linear.weight'), [E, H, F], l.moe.outputLinear, dtype),
    );
    if (l.bias) {
      t.push(
        tensor(at('self_attn.q_proj.bias'), [qW], l.bias.q, dtype), tensor(at('self_attn.k_proj.bias'), [kvW], l.bias.k, dtype),
        tensor(at('self_attn.v_proj.bias'), [kvW], l.bias.v, dtype), tensor(at('self_attn.o_proj.bias'), [H], l.bias.o, dtype),
      );
    }
    const s = l.moe.shared;
    if (s) {
      t.push(
        tensor(at('shared_mlp.input_linear.weight'), [2 * s.ffn, H], s.inputLinear, dtype),
        tensor(at('shared_mlp.output_linear.weight'), [H, s.ffn], s.outputLinear, dtype),
      );
    }
  });
  await writeHfDirectory(dir, m.config, 'byte-bpe', t.filter((x) => !omit.includes(x.name)));
}

// LlamaModel.permute of the converter: each head's rows [half 0 | half 1] interleaved, so RoPE rotates pairs.
function permute(w: Float32Array, heads: number, rowLength: number): Float32Array {
  const out = new Float32Array(w.length);
  const headDim = w.length / rowLength / heads;
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * headDim + j * half + i;
        const to = h * headDim + i * 2 + j;
        out.set(w.subarray(from * rowLength, (from + 1) * rowLength), to * rowLength);
      }
    }
  }
  return out;
}

// input_linear [..][2F][H] split at F rows: gate, up (the converter's data_torch.split(ffn_dim, dim=-2)).
function splitFused(w: Float32Array, slices: number, ffn: number, H: number): [Float32Array, Float32Array] {
  const gate = new Float32Array(slices * ffn * H);
  const up = new Float32Array(slices * ffn * H);
  for (let s = 0; s < slices; s++) {
    gate.set(w.subarray(s * 2 * ffn * H, (s * 2 + 1) * ffn * H), s * ffn * H);
    up.set(w.subarray((s * 2 + 1) * ffn * H, (s * 2 + 2) * ffn * H), s * ffn * H);
  }
  return [gate, up];
}

/**
 * Writes the model as llama.cpp's converter does (arch 'granitemoe', f32 tensors), less `omit`'s tensors and keys;
 * `attentionScale` false leaves attention.scale out (llama.cpp then takes 1 / sqrt(head dim)); `extra` keys are added.
 */
export async function writeGraniteGguf(
  file: string,
  m: TinyGranite,
  {
    omit = [],
    attentionScale = true,
    extra = [],
  }: { omit?: string[]; attentionScale?: boolean; extra?: Array<[string, GgufTypedValue]> } = {},
): Promise<void> {
  const H = m.hidden;
  const headDim = H / m.heads;
  const { experts: E, ffn: F, k } = m.layers[0].moe;
  const arch = 'granitemoe';
  const u32 = (value: number): GgufTypedValue => ({ type: 'u32', value });
  const f32 = (value: number): GgufTypedValue => ({ type: 'f32', value });
  const shared = m.layers[0].moe.shared;
  const metadata: Array<[string, GgufTypedValue]> = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: 'tiny-granite-moe' }],
    [`${arch}.block_count`, u32(m.layers.length)],
    [`${arch}.context_length`, u32(4096)],
    [`${arch}.embedding_length`, u32(H)],
    [`${arch}.feed_forward_length`, u32(F)],
    [`${arch}.attention.head_count`, u32(m.heads)],
    [`${arch}.attention.head_count_kv`, u32(m.kvHeads)],
    [`${arch}.rope.freq_base`, f32(m.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(m.rmsNormEpsilon)],
    [`${arch}.expert_count`, u32(E)],
    [`${arch}.expert_used_count`, u32(k)],
    [`${arch}.rope.dimension_count`, u32(headDim)],
    [`${arch}.vocab_size`, u32(m.vocab)],
    ...(attentionScale ? ([[`${arch}.attention.scale`, f32(m.attentionMultiplier)]] as Array<[string, GgufTypedValue]>) : []),
    [`${arch}.embedding_scale`, f32(m.embeddingMultiplier)],
    [`${arch}.residual_scale`, f32(m.residualMultiplier)],
    [`${arch}.logit_scale`, f32(m.logitsScaling)],
    ...(shared ? ([[`${arch}.expert_shared_feed_forward_length`, u32(shared.ffn)]] as Array<[string, GgufTypedValue]>) : []),
    ...tinyTokenizerGgufMetadata('byte-bpe'),
  ];
  const kvW = m.kvHeads * headDim;
  const t: TensorInput[] = [
    tensor('token_embd.weight', [m.vocab, H], m.embed, 'f32'),
    tensor('output_norm.weight', [H], m.finalNorm, 'f32'),
    ...(m.lmHead ? [tensor('output.weight', [m.vocab, H], m.lmHead, 'f32')] : []),
  ];
  m.layers.forEach((l, i) => {
    const at = (s: string) => `blk.${i}.${s}`;
    const [gate, up] = splitFused(l.moe.inputLinear, E, F, H);
    t.push(
      tensor(at('attn_norm.weight'), [H], l.attnNorm, 'f32'),
      tensor(at('ffn_norm.weight'), [H], l.postNorm, 'f32'),
      tensor(at('attn_q.weight'), [H, H], permute(l.q, m.heads, H), 'f32'),
      tensor(at('attn_k.weight'), [kvW, H], permute(l.k, m.kvHeads, H), 'f32'),
      tensor(at('attn_v.weight'), [kvW, H], l.v, 'f32'),
      tensor(at('attn_output.weight'), [H, H], l.o, 'f32'),
      tensor(at('ffn_gate_inp.weight'), [E, H], l.moe.router, 'f32'),
      tensor(at('ffn_gate_exps.weight'), [E, F, H], gate, 'f32'),
      tensor(at('ffn_up_exps.weight'), [E, F, H], up, 'f32'),
      tensor(at('ffn_down_exps.weight'), [E, H, F], l.moe.outputLinear, 'f32'),
    );
    if (l.bias) {
      t.push(
        tensor(at('attn_q.bias'), [H], permute(l.bias.q, m.heads, 1), 'f32'),
        tensor(at('attn_k.bias'), [kvW], permute(l.bias.k, m.kvHeads, 1), 'f32'),
        tensor(at('attn_v.bias'), [kvW], l.bias.v, 'f32'),
        tensor(at('attn_output.bias'), [H], l.bias.o, 'f32'),
      );
    }
    const s = l.moe.shared;
    if (s) {
      const [sGate, sUp] = splitFused(s.inputLinear, 1, s.ffn, H);
      t.push(
        tensor(at('ffn_gate_shexp.weight'), [s.ffn, H], sGate, 'f32'),
        tensor(at('ffn_up_shexp.weight'), [s.ffn, H], sUp, 'f32'),
        tensor(at('ffn_down_shexp.weight'), [H, s.ffn], s.outputLinear, 'f32'),
      );
    }
  });
  await writeGguf(file, {
    metadata: [...metadata.filter(([key]) => !omit.includes(key)), ...extra],
    tensors: t.filter((x) => !omit.includes(x.name)),
  });
}
