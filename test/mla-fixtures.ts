// Tiny random DeepSeek-V2 checkpoints (MLA attention, shared experts, a leading dense layer), written by the tests
// as safetensors and as GGUF. Names, shapes and metadata follow HF's modeling_deepseek.py / config and llama.cpp's
// converter (convert_hf_to_gguf.py, llama-arch.cpp), independently of lib/model/naming.ts and gguf-spec.ts.
import { toBf16, toF16 } from '../lib/dtype';
import { GgufTypedValue, writeGguf } from '../lib/formats/gguf';
import { TensorInput } from '../lib/formats/tensor-store';
import { writeHfDirectory } from './hf-directory';
import { RefMlaLayer, RefMlaModel } from './reference/mla-model';
import { RefFeedForward } from './reference/model';
import { Rng } from './reference/random';
import { tinyTokenizerGgufMetadata } from './tokenizer-fixtures';

export interface TinyMlaModel extends RefMlaModel {
  config: Record<string, unknown>;
  routing: TinyMlaRouting;
  experts: number;
  k: number;
  routedScale: number;
  sharedExperts: number;
  expertFfn: number;
  denseFfn: number;
}

/**
 * The MoE router: DeepSeek-V2's greedy softmax top-k, its group_limited_greedy (4 groups of 2 experts, 2 kept, by
 * their best expert), or DeepSeek-V3's noaux_tc (sigmoid, selection bias, groups by their two best, renormalised).
 */
export type TinyMlaRouting = 'greedy' | 'group_limited_greedy' | 'noaux_tc';

export interface TinyMlaOptions {
  routing?: TinyMlaRouting;
  hidden?: number;
  /** Low-rank query (q_a_proj, q_b_proj) of this rank; absent: one q_proj (V2-Lite). */
  qLoraRank?: number;
  heads?: number;
  kvLoraRank?: number;
  nopeDim?: number;
  ropeDim?: number;
  valueDim?: number;
}

const VOCAB = 277; // the 'spm' tiny tokenizer's

/** A tiny random DeepSeek-V2 (deterministic for a seed): layer 0 dense, then two MoE layers with 2 shared experts. */
export function makeTinyDeepseekV2(seed: number, o: TinyMlaOptions = {}): TinyMlaModel {
  const rng = new Rng(seed);
  const matrix = (rows: number, cols: number, std = 1 / Math.sqrt(cols)) =>
    Float32Array.from({ length: rows * cols }, () => rng.normal() * std);
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal());
  const hidden = o.hidden ?? 64;
  const heads = o.heads ?? 4;
  // Widths off the 32-column panels and unlike each other, so a mixed-up dimension fails.
  const kvLoraRank = o.kvLoraRank ?? 24;
  const nopeDim = o.nopeDim ?? 16;
  const ropeDim = o.ropeDim ?? 8;
  const valueDim = o.valueDim ?? 12;
  const experts = 8;
  const expertFfn = 32;
  const sharedExperts = 2;
  const denseFfn = 96;
  const k = 3;
  const routing = o.routing ?? 'greedy';
  const v3 = routing === 'noaux_tc';
  const routedScale = v3 ? 2.5 : 1.5;
  const groups = { groups: 4, keptGroups: 2 };
  const qHead = nopeDim + ropeDim;
  const kinds = ['dense', 'moe', 'moe'] as const;
  const layers: RefMlaLayer[] = kinds.map((kind) => {
    const ffn: RefFeedForward =
      kind === 'dense'
        ? { kind, ffn: denseFfn, gate: matrix(denseFfn, hidden), up: matrix(denseFfn, hidden), down: matrix(hidden, denseFfn) }
        : {
            kind, experts, ffn: expertFfn,
            // V2's gates: softmax top-k, not renormalised, times routed_scaling_factor; V3's: the family's rule.
            policy: v3 ? { kind: 'top-k', k } : { kind: 'top-k', k, normalize: false, scale: routedScale },
            ...(routing === 'group_limited_greedy' ? { routerRule: { scoring: 'softmax', ...groups, groupScore: 'max' } } : {}),
            ...(v3
              ? {
                  routerRule: {
                    scoring: 'sigmoid', ...groups, groupScore: 'top2-sum', normalize: true, scale: routedScale,
                    selectionBias: Float32Array.from({ length: experts }, () => 0.3 * rng.normal()),
                  },
                }
              : {}),
            router: matrix(experts, hidden, 2 / Math.sqrt(hidden)),
            gate: Array.from({ length: experts }, () => matrix(expertFfn, hidden)),
            up: Array.from({ length: experts }, () => matrix(expertFfn, hidden)),
            down: Array.from({ length: experts }, () => matrix(hidden, expertFfn)),
            shared: {
              ffn: expertFfn * sharedExperts, gate: matrix(expertFfn * sharedExperts, hidden),
              up: matrix(expertFfn * sharedExperts, hidden), down: matrix(hidden, expertFfn * sharedExperts),
            },
          };
    const q = o.qLoraRank
      ? { qA: matrix(o.qLoraRank, hidden), qANorm: norm(o.qLoraRank), qB: matrix(heads * qHead, o.qLoraRank) }
      : { q: matrix(heads * qHead, hidden) };
    return {
      attnNorm: norm(hidden), ...q, kvA: matrix(kvLoraRank + ropeDim, hidden), kvANorm: norm(kvLoraRank),
      kvB: matrix(heads * (nopeDim + valueDim), kvLoraRank), o: matrix(hidden, heads * valueDim), mlpNorm: norm(hidden), ffn,
    };
  });
  const config = {
    model_type: v3 ? 'deepseek_v3' : 'deepseek_v2', vocab_size: VOCAB, hidden_size: hidden, intermediate_size: denseFfn,
    moe_intermediate_size: expertFfn, num_hidden_layers: kinds.length, num_attention_heads: heads,
    num_key_value_heads: heads, n_shared_experts: sharedExperts, n_routed_experts: experts,
    routed_scaling_factor: routedScale, kv_lora_rank: kvLoraRank, q_lora_rank: o.qLoraRank ?? null,
    qk_rope_head_dim: ropeDim, v_head_dim: valueDim, qk_nope_head_dim: nopeDim, topk_method: routing,
    n_group: routing === 'greedy' ? 1 : groups.groups, topk_group: routing === 'greedy' ? 1 : groups.keptGroups,
    num_experts_per_tok: k, moe_layer_freq: 1, first_k_dense_replace: 1, norm_topk_prob: v3,
    scoring_func: v3 ? 'sigmoid' : 'softmax', aux_loss_alpha: 0.001, seq_aux: true,
    max_position_embeddings: 512, rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null,
    attention_bias: false, tie_word_embeddings: false, torch_dtype: 'float32',
  };
  return {
    config, routing, experts, k, routedScale, sharedExperts, expertFfn, denseFfn,
    vocab: VOCAB, hidden, heads, ...(o.qLoraRank ? { qLoraRank: o.qLoraRank } : {}), kvLoraRank, nopeDim, ropeDim,
    valueDim, ropeTheta: 10000, rmsNormEpsilon: 1e-6, embed: matrix(VOCAB, hidden, 1), finalNorm: norm(hidden),
    lmHead: matrix(VOCAB, hidden), layers,
  };
}

export type FileDtype = 'f32' | 'f16' | 'bf16';

function tensor(name: string, shape: number[], values: Float32Array, dtype: FileDtype): TensorInput {
  const as = shape.length === 1 ? 'f32' : dtype;  // norms stay f32, as the converters write them
  return { name, shape, dtype: as, data: as === 'f32' ? values : as === 'bf16' ? toBf16(values) : toF16(values) };
}

function moeOf(l: RefMlaLayer) {
  return l.ffn as Extract<RefFeedForward, { kind: 'moe' }>;
}

/** The Hugging Face checkpoint's tensors (modeling_deepseek.py's module names). */
export function deepseekHfTensors(m: TinyMlaModel, dtype: FileDtype): TensorInput[] {
  const H = m.hidden;
  const qHead = m.nopeDim + m.ropeDim;
  const out = [
    tensor('model.embed_tokens.weight', [m.vocab, H], m.embed, dtype), tensor('model.norm.weight', [H], m.finalNorm, dtype),
    tensor('lm_head.weight', [m.vocab, H], m.lmHead, dtype),
  ];
  m.layers.forEach((l, i) => {
    const at = (s: string) => `model.layers.${i}.${s}`;
    out.push(
      tensor(at('input_layernorm.weight'), [H], l.attnNorm, dtype), tensor(at('post_attention_layernorm.weight'), [H], l.mlpNorm, dtype),
      tensor(at('self_attn.kv_a_proj_with_mqa.weight'), [m.kvLoraRank + m.ropeDim, H], l.kvA, dtype),
      tensor(at('self_attn.kv_a_layernorm.weight'), [m.kvLoraRank], l.kvANorm, dtype),
      tensor(at('self_attn.kv_b_proj.weight'), [m.heads * (m.nopeDim + m.valueDim), m.kvLoraRank], l.kvB, dtype),
      tensor(at('self_attn.o_proj.weight'), [H, m.heads * m.valueDim], l.o, dtype),
    );
    if (m.qLoraRank) {
      out.push(
        tensor(at('self_attn.q_a_proj.weight'), [m.qLoraRank, H], l.qA!, dtype),
        tensor(at('self_attn.q_a_layernorm.weight'), [m.qLoraRank], l.qANorm!, dtype),
        tensor(at('self_attn.q_b_proj.weight'), [m.heads * qHead, m.qLoraRank], l.qB!, dtype),
      );
    } else {
      out.push(tensor(at('self_attn.q_proj.weight'), [m.heads * qHead, H], l.q!, dtype));
    }
    const f = l.ffn;
    if (f.kind === 'dense') {
      out.push(tensor(at('mlp.gate_proj.weight'), [f.ffn, H], f.gate, dtype), tensor(at('mlp.up_proj.weight'), [f.ffn, H], f.up, dtype), tensor(at('mlp.down_proj.weight'), [H, f.ffn], f.down, dtype));
      return;
    }
    out.push(tensor(at('mlp.gate.weight'), [f.experts, H], f.router, dtype));
    // modeling_deepseek.py keeps e_score_correction_bias in f32.
    if (f.routerRule?.selectionBias) out.push(tensor(at('mlp.gate.e_score_correction_bias'), [f.experts], Float32Array.from(f.routerRule.selectionBias), 'f32'));
    for (let e = 0; e < f.experts; e++) {
      out.push(
        tensor(at(`mlp.experts.${e}.gate_proj.weight`), [f.ffn, H], f.gate[e], dtype),
        tensor(at(`mlp.experts.${e}.up_proj.weight`), [f.ffn, H], f.up[e], dtype),
        tensor(at(`mlp.experts.${e}.down_proj.weight`), [H, f.ffn], f.down[e], dtype),
      );
    }
    const s = f.shared!;
    out.push(tensor(at('mlp.shared_experts.gate_proj.weight'), [s.ffn, H], s.gate, dtype), tensor(at('mlp.shared_experts.up_proj.weight'), [s.ffn, H], s.up, dtype), tensor(at('mlp.shared_experts.down_proj.weight'), [H, s.ffn], s.down, dtype));
  });
  return out;
}

/** Writes a Hugging Face checkpoint directory; `edit` may change the config or the tensors first (bad inputs). */
export async function writeDeepseekHf(
  dir: string,
  m: TinyMlaModel,
  dtype: FileDtype = 'f32',
  edit?: (config: Record<string, unknown>, tensors: TensorInput[]) => TensorInput[],
): Promise<void> {
  const config = { ...m.config };
  const tensors = deepseekHfTensors(m, dtype);
  await writeHfDirectory(dir, config, 'spm', edit ? edit(config, tensors) : tensors);
}

function stack(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

/**
 * Writes the model as llama.cpp's converter does for `deepseek2`: `split` (today's converter) writes kv_b as per-head
 * attn_k_b (transposed) and attn_v_b with the cache's sizes as key/value_length and the heads' as *_mla; without
 * it, the older converter's whole attn_kv_b and the heads' sizes as key/value_length.
 */
export async function writeDeepseekGguf(
  file: string,
  m: TinyMlaModel,
  dtype: FileDtype = 'f32',
  split = true,
  edit?: (metadata: Array<[string, GgufTypedValue]>, tensors: TensorInput[]) => void | Promise<void>,
): Promise<void> {
  const arch = 'deepseek2';
  const H = m.hidden;
  const qHead = m.nopeDim + m.ropeDim;
  const u32 = (value: number): GgufTypedValue => ({ type: 'u32', value });
  const f32 = (value: number): GgufTypedValue => ({ type: 'f32', value });
  const metadata: Array<[string, GgufTypedValue]> = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: 'tiny-deepseek-v2' }],
    [`${arch}.block_count`, u32(m.layers.length)],
    [`${arch}.context_length`, u32(512)],
    [`${arch}.embedding_length`, u32(H)],
    [`${arch}.feed_forward_length`, u32(m.denseFfn)],
    [`${arch}.attention.head_count`, u32(m.heads)],
    [`${arch}.attention.head_count_kv`, u32(split ? 1 : m.heads)],
    [`${arch}.rope.freq_base`, f32(m.ropeTheta)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(m.rmsNormEpsilon)],
    [`${arch}.expert_used_count`, u32(m.k)],
    [`${arch}.leading_dense_block_count`, u32(1)],
    [`${arch}.vocab_size`, u32(m.vocab)],
    [`${arch}.attention.q_lora_rank`, u32(m.qLoraRank ?? 0)],
    [`${arch}.attention.kv_lora_rank`, u32(m.kvLoraRank)],
    ...(split
      ? ([
          [`${arch}.attention.key_length`, u32(m.kvLoraRank + m.ropeDim)],
          [`${arch}.attention.value_length`, u32(m.kvLoraRank)],
          [`${arch}.attention.key_length_mla`, u32(qHead)],
          [`${arch}.attention.value_length_mla`, u32(m.valueDim)],
        ] as Array<[string, GgufTypedValue]>)
      : ([
          [`${arch}.attention.key_length`, u32(qHead)],
          [`${arch}.attention.value_length`, u32(m.valueDim)],
        ] as Array<[string, GgufTypedValue]>)),
    [`${arch}.expert_feed_forward_length`, u32(m.expertFfn)],
    [`${arch}.expert_count`, u32(m.experts)],
    [`${arch}.expert_shared_count`, u32(m.sharedExperts)],
    [`${arch}.expert_weights_scale`, f32(m.routedScale)],
    [`${arch}.expert_weights_norm`, { type: 'bool', value: m.routing === 'noaux_tc' }],
    [`${arch}.expert_gating_func`, u32(m.routing === 'noaux_tc' ? 2 : 1)],
    ...(m.routing === 'greedy'
      ? []
      : ([[`${arch}.expert_group_count`, u32(4)], [`${arch}.expert_group_used_count`, u32(2)]] as Array<[string, GgufTypedValue]>)),
    [`${arch}.rope.dimension_count`, u32(m.ropeDim)],
    ...tinyTokenizerGgufMetadata('spm'),
  ];
  const t: TensorInput[] = [
    tensor('token_embd.weight', [m.vocab, H], m.embed, dtype), tensor('output_norm.weight', [H], m.finalNorm, dtype),
    tensor('output.weight', [m.vocab, H], m.lmHead, dtype),
  ];
  m.layers.forEach((l, i) => {
    const at = (s: string) => `blk.${i}.${s}`;
    t.push(
      tensor(at('attn_norm.weight'), [H], l.attnNorm, dtype), tensor(at('ffn_norm.weight'), [H], l.mlpNorm, dtype),
      tensor(at('attn_kv_a_mqa.weight'), [m.kvLoraRank + m.ropeDim, H], l.kvA, dtype),
      tensor(at('attn_kv_a_norm.weight'), [m.kvLoraRank], l.kvANorm, dtype),
      tensor(at('attn_output.weight'), [H, m.heads * m.valueDim], l.o, dtype),
    );
    if (m.qLoraRank) {
      t.push(
        tensor(at('attn_q_a.weight'), [m.qLoraRank, H], l.qA!, dtype),
        tensor(at('attn_q_a_norm.weight'), [m.qLoraRank], l.qANorm!, dtype),
        tensor(at('attn_q_b.weight'), [m.heads * qHead, m.qLoraRank], l.qB!, dtype),
      );
    } else {
      t.push(tensor(at('attn_q.weight'), [m.heads * qHead, H], l.q!, dtype));
    }
    if (split) {
      // kv_b viewed [heads][nope + v][rank], split, the k part transposed to [heads][rank][nope].
      const R = m.kvLoraRank;
      const kB = new Float32Array(m.heads * R * m.nopeDim);
      const vB = new Float32Array(m.heads * m.valueDim * R);
      for (let h = 0; h < m.heads; h++) {
        const head = h * (m.nopeDim + m.valueDim) * R;
        for (let n = 0; n < m.nopeDim; n++) {
          for (let r = 0; r < R; r++) kB[(h * R + r) * m.nopeDim + n] = l.kvB[head + n * R + r];
        }
        vB.set(l.kvB.subarray(head + m.nopeDim * R, head + (m.nopeDim + m.valueDim) * R), h * m.valueDim * R);
      }
      t.push(tensor(at('attn_k_b.weight'), [m.heads, R, m.nopeDim], kB, dtype), tensor(at('attn_v_b.weight'), [m.heads, m.valueDim, R], vB, dtype));
    } else {
      t.push(tensor(at('attn_kv_b.weight'), [m.heads * (m.nopeDim + m.valueDim), m.kvLoraRank], l.kvB, dtype));
    }
    const f = l.ffn;
    if (f.kind === 'dense') {
      t.push(tensor(at('ffn_gate.weight'), [f.ffn, H], f.gate, dtype), tensor(at('ffn_up.weight'), [f.ffn, H], f.up, dtype), tensor(at('ffn_down.weight'), [H, f.ffn], f.down, dtype));
      return;
    }
    const moe = moeOf(l);
    const s = moe.shared!;
    t.push(
      tensor(at('ffn_gate_inp.weight'), [moe.experts, H], moe.router, 'f32'),
      tensor(at('ffn_gate_exps.weight'), [moe.experts, moe.ffn, H], stack(moe.gate), dtype),
      tensor(at('ffn_up_exps.weight'), [moe.experts, moe.ffn, H], stack(moe.up), dtype),
      tensor(at('ffn_down_exps.weight'), [moe.experts, H, moe.ffn], stack(moe.down), dtype),
      tensor(at('ffn_gate_shexp.weight'), [s.ffn, H], s.gate, dtype), tensor(at('ffn_up_shexp.weight'), [s.ffn, H], s.up, dtype),
      tensor(at('ffn_down_shexp.weight'), [H, s.ffn], s.down, dtype),
    );
    if (moe.routerRule?.selectionBias) t.push(tensor(at('exp_probs_b.bias'), [moe.experts], Float32Array.from(moe.routerRule.selectionBias), 'f32'));
  });
  await edit?.(metadata, t);
  await writeGguf(file, { metadata, tensors: t });
}
