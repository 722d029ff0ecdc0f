// Tiny random checkpoints of every supported architecture, written by the tests in each supported format.
// Tensor names and layouts here are written from the Hugging Face modeling code and llama.cpp's converter,
// independently of lib/model/naming.ts, so a naming mistake there fails the tests.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { toBf16, toF16 } from '../lib/dtype';
import { GgufTypedValue, writeGguf } from '../lib/formats/gguf';
import { writeSafetensors, writeSafetensorsSharded } from '../lib/formats/safetensors';
import { TensorInput } from '../lib/formats/tensor-store';
import { Rng } from './reference/random';
import { RefDecoderLayer, RefFeedForward, RefModel, refLlama3Frequencies } from './reference/model';
import { quantise } from './reference/dtype';
import { RefPolicy } from './reference/policy';
import { RefRouterRule } from './reference/router-rule';
import { tinyTokenizerGgufMetadata, TinyTokenizerKind, writeTinyTokenizer } from './tokenizer-fixtures';

export type ArchName = 'mixtral' | 'qwen2-moe' | 'qwen3-moe' | 'olmoe' | 'deepseek-moe' | 'dynamic-moe' | 'glm4-moe' | 'ernie4_5-moe' | 'dots1' | 'minimax-m2' | 'bailing-moe-v2' | 'hunyuan-moe' | 'qwen3-vl-moe' | 'llama4';
export const ARCHITECTURES: ArchName[] = ['mixtral', 'qwen2-moe', 'qwen3-moe', 'olmoe', 'deepseek-moe', 'dynamic-moe', 'glm4-moe', 'ernie4_5-moe', 'dots1', 'minimax-m2', 'bailing-moe-v2', 'hunyuan-moe', 'qwen3-vl-moe', 'llama4'];
/** GGUF architectures dynamoe reads, and the HF architecture each corresponds to. */
export const GGUF_ARCHITECTURES: Partial<Record<ArchName, string>> = {
  mixtral: 'llama',
  'qwen2-moe': 'qwen2moe',
  'qwen3-moe': 'qwen3moe',
  olmoe: 'olmoe',
  'glm4-moe': 'glm4moe',
  'ernie4_5-moe': 'ernie4_5-moe',
  dots1: 'dots1',
  'minimax-m2': 'minimax-m2',
  'bailing-moe-v2': 'bailingmoe2',
  'hunyuan-moe': 'hunyuan-moe',
  'qwen3-vl-moe': 'qwen3vlmoe',
  llama4: 'llama4',
};

export interface TinyModel extends RefModel {
  arch: ArchName;
  tokenizer: TinyTokenizerKind;
  /** config.json of the Hugging Face checkpoint. */
  config: Record<string, unknown>;
  tied: boolean;
  attentionBias: boolean;
}

const VOCAB: Record<TinyTokenizerKind, number> = { 'byte-bpe': 269, spm: 277 };

class WeightMaker {
  constructor(private readonly rng: Rng) {}
  matrix(rows: number, cols: number, std = 1 / Math.sqrt(cols)): Float32Array {
    return Float32Array.from({ length: rows * cols }, () => this.rng.normal() * std);
  }
  norm(length: number): Float32Array {
    return Float32Array.from({ length }, () => 1 + 0.1 * this.rng.normal());
  }
}

interface Plan {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  layers: Array<'dense' | 'moe'>;
  experts: number;
  ffn: number;
  denseFfn: number;
  shared?: { ffn: number; gated: boolean };
  policy: RefPolicy;
  qkNorm: RefModel['qkNorm'];
  bias: boolean;
  tied: boolean;
  tokenizer: TinyTokenizerKind;
  /** A family's router (without its bias, drawn per layer). */
  router?: Omit<RefRouterRule, 'selectionBias'> & { selectionBias?: boolean };
  rotaryDim?: number;
  ropeStyle?: 'pairs';
  qkNormAfterRope?: boolean;
  /** Llama 4: weights on the experts' input, a NoPE layer every fourth, weightless q/k norm, Llama 3 RoPE scaling. */
  llama4?: boolean;
  /** RoPE's base, where the family's config raises it from rope_theta. */
  ropeTheta?: number;
}

function planFor(arch: ArchName): Plan {
  const base = { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, experts: 4, ffn: 48, denseFfn: 96, qkNorm: 'none' as const, bias: false, tied: false };
  switch (arch) {
    case 'mixtral':
      return { ...base, layers: ['moe', 'moe'], policy: { kind: 'top-k', k: 2, normalize: true }, tokenizer: 'spm' };
    case 'qwen2-moe':
      return { ...base, layers: ['moe', 'dense', 'moe'], shared: { ffn: 80, gated: true }, bias: true,
        policy: { kind: 'top-k', k: 2, normalize: false }, tokenizer: 'byte-bpe' };
    case 'qwen3-moe':
      return { ...base, hidden: 48, headDim: 32, experts: 6, layers: ['moe', 'moe'], qkNorm: 'per-head',
        policy: { kind: 'top-k', k: 2, normalize: true }, tokenizer: 'byte-bpe' };
    case 'olmoe':
      return { ...base, kvHeads: 4, experts: 8, layers: ['moe', 'moe'], qkNorm: 'full',
        policy: { kind: 'top-k', k: 4, normalize: false }, tokenizer: 'byte-bpe' };
    case 'deepseek-moe':
      return { ...base, heads: 4, kvHeads: 4, experts: 8, ffn: 32, layers: ['dense', 'moe', 'moe'],
        shared: { ffn: 64, gated: false }, policy: { kind: 'top-k', k: 3, normalize: false }, tokenizer: 'spm' };
    case 'dynamic-moe':
      return { ...base, experts: 8, denseFfn: base.ffn, layers: ['moe', 'dense', 'moe', 'dense'], tied: true,
        policy: { kind: 'top-p', p: 0.4 }, tokenizer: 'spm' };
    case 'glm4-moe':
      // 8 experts in 4 groups, the best 2 groups compete; half of each head rotates.
      return { ...base, experts: 8, ffn: 32, layers: ['dense', 'moe', 'moe'], shared: { ffn: 32, gated: false }, bias: true,
        policy: { kind: 'top-k', k: 3 }, tokenizer: 'byte-bpe', rotaryDim: base.headDim / 2,
        router: { scoring: 'sigmoid', selectionBias: true, groups: 4, keptGroups: 2, groupScore: 'top2-sum', normalize: true, scale: 2.5 } };
    case 'ernie4_5-moe':
      // Softmax probabilities ranked with a selection bias, the kept ones renormalised; 2 shared experts; RoPE on
      // adjacent pairs; the embedding tied to the LM head.
      return { ...base, experts: 8, ffn: 32, layers: ['dense', 'moe', 'moe'], shared: { ffn: 64, gated: false }, tied: true,
        policy: { kind: 'top-k', k: 3 }, tokenizer: 'spm', ropeStyle: 'pairs',
        router: { scoring: 'softmax', selectionBias: true, normalize: true } };
    case 'dots1':
      // Qwen3 attention (full multi-head, as the released model and llama.cpp's loader have it), DeepSeek-V3's
      // sigmoid router (selection bias, renormalised, scaled), one shared expert.
      return { ...base, kvHeads: 4, experts: 8, ffn: 32, layers: ['dense', 'moe', 'moe'], shared: { ffn: 32, gated: false },
        qkNorm: 'per-head', policy: { kind: 'top-k', k: 3 }, tokenizer: 'byte-bpe',
        router: { scoring: 'sigmoid', selectionBias: true, normalize: true, scale: 2 } };
    case 'minimax-m2':
      // Mixtral's names, a sigmoid router ranked with a selection bias and renormalised, q/k norm over the whole
      // projection, half of each head rotated.
      return { ...base, experts: 8, ffn: 32, layers: ['moe', 'moe'], qkNorm: 'full', rotaryDim: base.headDim / 2,
        policy: { kind: 'top-k', k: 3 }, tokenizer: 'byte-bpe', router: { scoring: 'sigmoid', selectionBias: true, normalize: true } };
    case 'bailing-moe-v2':
      // Ling 2.0: q/k/v fused in one projection, per-head q/k norm, half of each head rotated, DeepSeek-V3's
      // sigmoid router with 8 experts in 4 groups (the best 2 compete), renormalised and scaled, a shared expert.
      return { ...base, experts: 8, ffn: 32, layers: ['dense', 'moe', 'moe'], shared: { ffn: 32, gated: false },
        qkNorm: 'per-head', policy: { kind: 'top-k', k: 3 }, tokenizer: 'byte-bpe', rotaryDim: base.headDim / 2,
        router: { scoring: 'sigmoid', selectionBias: true, groups: 4, keptGroups: 2, groupScore: 'top2-sum', normalize: true, scale: 2.5 } };
    case 'hunyuan-moe':
      // Hunyuan-A13B: q/k norm after RoPE, renormalised softmax top-k, an always-on shared MLP of intermediate_size,
      // RoPE's base raised by rope_scaling's alpha (1000 in the released config), the LM head tied.
      return { ...base, layers: ['moe', 'moe'], shared: { ffn: 64, gated: false }, qkNorm: 'per-head', qkNormAfterRope: true,
        tied: true, policy: { kind: 'top-k', k: 2, normalize: true }, tokenizer: 'spm', ropeTheta: 10000 * 1000 ** (base.headDim / (base.headDim - 2)) };
    case 'llama4':
      // Maverick's interleaving (MoE every second layer), so the fourth layer is a NoPE MoE layer; two experts a token
      // (the releases keep one) to hold each its own weight on its input.
      return { ...base, layers: ['dense', 'moe', 'dense', 'moe'], shared: { ffn: base.ffn, gated: false }, llama4: true,
        ropeStyle: 'pairs', policy: { kind: 'top-k', k: 2 }, tokenizer: 'byte-bpe', router: { scoring: 'sigmoid', normalize: false } };
    case 'qwen3-vl-moe':
      // Qwen3-MoE's language model inside a vision-language checkpoint, a dense layer among the MoE ones.
      return { ...base, hidden: 48, headDim: 32, experts: 6, layers: ['moe', 'dense', 'moe'], qkNorm: 'per-head',
        policy: { kind: 'top-k', k: 2, normalize: true }, tokenizer: 'byte-bpe' };
  }
}

function hfConfig(arch: ArchName, p: Plan, vocab: number): Record<string, unknown> {
  const common = {
    vocab_size: vocab, hidden_size: p.hidden, num_attention_heads: p.heads, num_key_value_heads: p.kvHeads,
    num_hidden_layers: p.layers.length, rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 512,
    tie_word_embeddings: p.tied, torch_dtype: 'float32',
  };
  const k = p.policy.kind === 'top-k' ? p.policy.k : 0;
  switch (arch) {
    case 'mixtral':
      return { ...common, model_type: 'mixtral', num_local_experts: p.experts, num_experts_per_tok: k, intermediate_size: p.ffn };
    case 'qwen2-moe':
      return { ...common, model_type: 'qwen2_moe', num_experts: p.experts, num_experts_per_tok: k, norm_topk_prob: false,
        moe_intermediate_size: p.ffn, intermediate_size: p.denseFfn, shared_expert_intermediate_size: p.shared!.ffn,
        decoder_sparse_step: 1, mlp_only_layers: p.layers.flatMap((kind, i) => (kind === 'dense' ? [i] : [])) };
    case 'qwen3-moe':
      return { ...common, model_type: 'qwen3_moe', head_dim: p.headDim, num_experts: p.experts, num_experts_per_tok: k,
        norm_topk_prob: true, moe_intermediate_size: p.ffn, intermediate_size: p.denseFfn, decoder_sparse_step: 1,
        mlp_only_layers: [], attention_bias: false, rope_scaling: null };
    case 'olmoe':
      return { ...common, model_type: 'olmoe', num_experts: p.experts, num_experts_per_tok: k, norm_topk_prob: false,
        intermediate_size: p.ffn, clip_qkv: null };
    case 'deepseek-moe':
      return { ...common, model_type: 'deepseek', n_routed_experts: p.experts, n_shared_experts: p.shared!.ffn / p.ffn,
        num_experts_per_tok: k, moe_intermediate_size: p.ffn, intermediate_size: p.denseFfn, first_k_dense_replace: 1,
        moe_layer_freq: 1, norm_topk_prob: false, scoring_func: 'softmax' };
    case 'dynamic-moe':
      return { ...common, model_type: 'llama', num_experts: p.experts, top_p_threshold: 0.4, expert_frequency: 2,
        intermediate_size: p.ffn };
    case 'glm4-moe':
      return { ...common, model_type: 'glm4_moe', head_dim: p.headDim, n_routed_experts: p.experts, n_shared_experts: 1,
        num_experts_per_tok: k, moe_intermediate_size: p.ffn, intermediate_size: p.denseFfn, first_k_dense_replace: 1,
        n_group: p.router!.groups, topk_group: p.router!.keptGroups, norm_topk_prob: true, routed_scaling_factor: 2.5,
        partial_rotary_factor: p.rotaryDim! / p.headDim, attention_bias: true, use_qk_norm: false, num_nextn_predict_layers: 1 };
    case 'ernie4_5-moe':
      return { ...common, model_type: 'ernie4_5_moe', head_dim: p.headDim, moe_num_experts: p.experts, moe_k: k,
        moe_intermediate_size: p.ffn, moe_num_shared_experts: p.shared!.ffn / p.ffn, intermediate_size: p.denseFfn,
        moe_layer_start_index: p.layers.indexOf('moe'), moe_layer_end_index: -1, moe_layer_interval: 1, use_bias: false,
        moe_norm_min: 1e-12 };
    case 'dots1':
      return { ...common, model_type: 'dots1', head_dim: p.headDim, n_routed_experts: p.experts, n_shared_experts: 1,
        num_experts_per_tok: k, moe_intermediate_size: p.ffn, intermediate_size: p.denseFfn, first_k_dense_replace: 1,
        n_group: 1, topk_group: 1, norm_topk_prob: true, routed_scaling_factor: 2, attention_bias: false,
        sliding_window: 4096, max_window_layers: p.layers.length };
    case 'minimax-m2':
      return { ...common, model_type: 'minimax_m2', head_dim: p.headDim, num_local_experts: p.experts, num_experts_per_tok: k,
        intermediate_size: p.ffn, rotary_dim: p.rotaryDim, use_qk_norm: true, qk_norm_type: 'per_layer', scoring_func: 'sigmoid',
        use_routing_bias: true, shared_intermediate_size: 0 };
    case 'bailing-moe-v2':
      // As the released Ling-mini-2.0 config: Ling 1.0's model_type, V2 told apart by architectures; one
      // multi-token-prediction block after the decoder layers (written, never run).
      return { ...common, model_type: 'bailing_moe', architectures: ['BailingMoeV2ForCausalLM'], head_dim: p.headDim,
        num_experts: p.experts, num_experts_per_tok: k, moe_intermediate_size: p.ffn, intermediate_size: p.denseFfn,
        num_shared_experts: 1, moe_shared_expert_intermediate_size: p.shared!.ffn,
        first_k_dense_replace: 1, n_group: p.router!.groups, topk_group: p.router!.keptGroups, routed_scaling_factor: 2.5,
        norm_topk_prob: true, partial_rotary_factor: p.rotaryDim! / p.headDim, use_qk_norm: true, use_qkv_bias: false,
        use_bias: false, score_function: 'sigmoid', moe_router_enable_expert_bias: true, num_nextn_predict_layers: 1 };
    case 'hunyuan-moe':
      // Per-layer lists as the released config has them.
      return { ...common, model_type: 'hunyuan_v1_moe', architectures: ['HunYuanMoEV1ForCausalLM'], head_dim: p.headDim,
        num_experts: p.experts, moe_topk: p.layers.map(() => k), moe_intermediate_size: p.layers.map(() => p.ffn),
        intermediate_size: p.shared!.ffn, num_shared_expert: p.layers.map(() => 1), use_mixed_mlp_moe: true, use_qk_norm: true,
        use_cla: false, attention_bias: false, rope_scaling: { alpha: 1000.0, type: 'dynamic', factor: 1.0, beta_fast: 32, beta_slow: 1 } };
    case 'llama4': {
      // Llama4ForConditionalGeneration: the text model's config in text_config.
      const { tie_word_embeddings: tied, ...text } = common;
      return { model_type: 'llama4', architectures: ['Llama4ForConditionalGeneration'], tie_word_embeddings: tied,
        text_config: { ...text, model_type: 'llama4_text', head_dim: p.headDim, num_local_experts: p.experts, num_experts_per_tok: k,
          intermediate_size: p.ffn, intermediate_size_mlp: p.denseFfn, interleave_moe_layer_step: 2, use_qk_norm: true,
          attention_chunk_size: LLAMA4_ATTENTION.attentionChunk, attn_temperature_tuning: true,
          floor_scale: LLAMA4_ATTENTION.attentionTemperature.floor, attn_scale: LLAMA4_ATTENTION.attentionTemperature.scale, attention_bias: false,
          no_rope_layers: p.layers.map((_, i) => ((i + 1) % 4 !== 0 ? 1 : 0)),
          rope_scaling: { rope_type: 'llama3', factor: LLAMA4_ROPE.factor, low_freq_factor: LLAMA4_ROPE.lowFreqFactor,
            high_freq_factor: LLAMA4_ROPE.highFreqFactor, original_max_position_embeddings: LLAMA4_ROPE.originalContext } },
        vision_config: { hidden_size: 16 } };
    }
    case 'qwen3-vl-moe': {
      // The language model's sizes in text_config, as the released config.json has them; multimodal RoPE sections.
      const { tie_word_embeddings: tied, ...text } = common;
      return { model_type: 'qwen3_vl_moe', architectures: ['Qwen3VLMoeForConditionalGeneration'], tie_word_embeddings: tied,
        text_config: { ...text, model_type: 'qwen3_vl_moe_text', head_dim: p.headDim, num_experts: p.experts, num_experts_per_tok: k,
          norm_topk_prob: true, moe_intermediate_size: p.ffn, intermediate_size: p.denseFfn, decoder_sparse_step: 1,
          mlp_only_layers: p.layers.flatMap((kind, i) => (kind === 'dense' ? [i] : [])), attention_bias: false,
          rope_scaling: { rope_type: 'default', mrope_section: ropeSections(p.headDim).slice(0, 3), mrope_interleaved: true } },
        vision_config: { depth: 1, hidden_size: 16, out_hidden_size: p.hidden } };
    }
  }
}

// Llama 3 RoPE scaling whose three bands each hold pairs of a 16-wide head (theta 10000).
const LLAMA4_ROPE = { factor: 8, lowFreqFactor: 1, highFreqFactor: 4, originalContext: 512 };
// Llama 4's chunks and temperature at a tiny model's scale (the releases: 8,192 and 8,192), so a few tokens cross them.
const LLAMA4_ATTENTION = { attentionChunk: 5, attentionTemperature: { floor: 3, scale: 0.5 } };

// Multimodal RoPE's split of a head's rotated pairs between time, height and width (Qwen3-VL's 24/20/20 of 64).
export function ropeSections(headDim: number): number[] {
  const pairs = headDim / 2;
  const t = pairs - 2 * Math.floor((pairs * 20) / 64);
  return [t, (pairs - t) / 2, (pairs - t) / 2, 0];
}

/** A tiny random model of `arch` (deterministic for a seed); `allMoe` drops the dense layers (llama.cpp needs that). */
export function makeTinyModel(
  arch: ArchName,
  seed = 1,
  options: { allMoe?: boolean; headDim?: number; heads?: number; kvHeads?: number } = {},
): TinyModel {
  const p = planFor(arch);
  if (options.allMoe) p.layers = p.layers.map(() => 'moe');
  if (options.headDim !== undefined) p.headDim = options.headDim;  // architectures whose config names head_dim
  if (options.heads !== undefined) p.heads = options.heads;
  if (options.kvHeads !== undefined) p.kvHeads = options.kvHeads;
  const w = new WeightMaker(new Rng(seed));
  const vocab = VOCAB[p.tokenizer];
  const qW = p.heads * p.headDim;
  const kvW = p.kvHeads * p.headDim;
  const layers: RefDecoderLayer[] = p.layers.map((kind) => {
    const ffn: RefFeedForward =
      kind === 'dense'
        ? { kind, ffn: p.denseFfn, gate: w.matrix(p.denseFfn, p.hidden), up: w.matrix(p.denseFfn, p.hidden), down: w.matrix(p.hidden, p.denseFfn) }
        : {
            kind, experts: p.experts, ffn: p.ffn, policy: p.policy,
            ...(p.router
              ? { routerRule: { ...p.router, selectionBias: p.router.selectionBias ? w.matrix(1, p.experts, 0.05) : undefined } }
              : {}),
            router: w.matrix(p.experts, p.hidden, 2 / Math.sqrt(p.hidden)),
            ...(p.llama4 ? { weightOnInput: true } : {}),
            gate: Array.from({ length: p.experts }, () => w.matrix(p.ffn, p.hidden)),
            up: Array.from({ length: p.experts }, () => w.matrix(p.ffn, p.hidden)),
            down: Array.from({ length: p.experts }, () => w.matrix(p.hidden, p.ffn)),
            ...(p.shared
              ? { shared: { ffn: p.shared.ffn, gate: w.matrix(p.shared.ffn, p.hidden), up: w.matrix(p.shared.ffn, p.hidden),
                  down: w.matrix(p.hidden, p.shared.ffn), ...(p.shared.gated ? { gateWeight: w.matrix(1, p.hidden) } : {}) } }
              : {}),
          };
    const qkWidth = (width: number) => (p.qkNorm === 'per-head' ? p.headDim : width);
    return {
      attnNorm: w.norm(p.hidden), q: w.matrix(qW, p.hidden), k: w.matrix(kvW, p.hidden), v: w.matrix(kvW, p.hidden),
      o: w.matrix(p.hidden, qW), mlpNorm: w.norm(p.hidden), ffn,
      ...(p.bias ? { qBias: w.matrix(1, qW, 0.2), kBias: w.matrix(1, kvW, 0.2), vBias: w.matrix(1, kvW, 0.2) } : {}),
      ...(p.qkNorm !== 'none' ? { qNorm: w.norm(qkWidth(qW)), kNorm: w.norm(qkWidth(kvW)) } : {}),
    };
  });
  return {
    arch, tokenizer: p.tokenizer, config: hfConfig(arch, p, vocab), tied: p.tied, attentionBias: p.bias,
    vocab, hidden: p.hidden, heads: p.heads, kvHeads: p.kvHeads, headDim: p.headDim, ropeTheta: p.ropeTheta ?? 10000,
    ...(p.qkNormAfterRope ? { qkNormAfterRope: true } : {}),
    ...(p.llama4
      ? { ropeLayers: p.layers.map((_, i) => (i + 1) % 4 !== 0), qkUnitNorm: true, llama3Rope: LLAMA4_ROPE, ...LLAMA4_ATTENTION }
      : {}),
    ...(p.rotaryDim ? { rotaryDim: p.rotaryDim } : {}),
    ...(p.ropeStyle ? { ropeStyle: p.ropeStyle } : {}),
    rmsNormEpsilon: 1e-6, qkNorm: p.qkNorm, embed: w.matrix(vocab, p.hidden, 1), finalNorm: w.norm(p.hidden),
    ...(p.tied ? {} : { lmHead: w.matrix(vocab, p.hidden) }),
    layers,
  };
}

/**
 * The model a GGUF of `m` describes: llama.cpp has no keys for Llama 4's chunk and temperature and always takes the
 * releases' (8,192 positions, scale 0.1), so a tiny fixture's smaller ones stay in its config.json only.
 */
export function asGgufModel(m: TinyModel): TinyModel {
  return m.arch === 'llama4' ? { ...m, attentionChunk: 8192, attentionTemperature: { floor: 8192, scale: 0.1 } } : m;
}

export type FileDtype = 'f32' | 'f16' | 'bf16';

function tensor(name: string, shape: number[], values: Float32Array, dtype: FileDtype): TensorInput {
  // 1-D tensors (norms, biases) stay f32, as the converters write them.
  const as = shape.length === 1 ? 'f32' : dtype;
  const data = as === 'f32' ? values : as === 'bf16' ? toBf16(values) : toF16(values);
  return { name, shape, dtype: as, data };
}

/** Hugging Face module paths of each architecture's feed-forward weights. */
interface HfFfnNames {
  router: string;
  experts: string;
  g: string;
  u: string;
  d: string;
  dense: string;
  shared: string;
  sharedGate: string;
  /** The selection bias's tensor when it is not `<router>.e_score_correction_bias`, and whether it is [experts]. */
  bias?: string;
  flatBias?: boolean;
}

function hfFfnNames(arch: ArchName): HfFfnNames {
  if (arch === 'mixtral') return { router: 'block_sparse_moe.gate', experts: 'block_sparse_moe.experts', g: 'w1', u: 'w3', d: 'w2', dense: 'mlp', shared: '', sharedGate: '' };
  if (arch === 'minimax-m2') {
    return { router: 'block_sparse_moe.gate', experts: 'block_sparse_moe.experts', g: 'w1', u: 'w3', d: 'w2', dense: 'mlp', shared: '', sharedGate: '',
      bias: 'block_sparse_moe.e_score_correction_bias', flatBias: true };
  }
  if (arch === 'bailing-moe-v2') {
    return { router: 'mlp.gate', experts: 'mlp.experts', g: 'gate_proj', u: 'up_proj', d: 'down_proj', dense: 'mlp', shared: 'mlp.shared_experts',
      sharedGate: '', bias: 'mlp.gate.expert_bias', flatBias: true };
  }
  if (arch === 'hunyuan-moe') {
    return { router: 'mlp.gate.wg', experts: 'mlp.experts', g: 'gate_proj', u: 'up_proj', d: 'down_proj', dense: 'mlp', shared: 'mlp.shared_mlp', sharedGate: '' };
  }
  if (arch === 'dynamic-moe') return { router: 'mlp.router', experts: 'mlp.experts', g: 'gate_proj', u: 'up_proj', d: 'down_proj', dense: 'mlp.mlp', shared: '', sharedGate: '' };
  const shared = arch === 'qwen2-moe' ? 'mlp.shared_expert' : 'mlp.shared_experts';
  // ERNIE 4.5 keeps the selection bias apart from the router, as [1][experts].
  const bias = arch === 'ernie4_5-moe' ? 'mlp.moe_statics.e_score_correction_bias' : undefined;
  return { router: 'mlp.gate', experts: 'mlp.experts', g: 'gate_proj', u: 'up_proj', d: 'down_proj', dense: 'mlp', shared, sharedGate: 'mlp.shared_expert_gate', bias };
}

export function hfTensors(m: TinyModel, dtype: FileDtype): TensorInput[] {
  const H = m.hidden;
  const qW = m.heads * m.headDim;
  const kvW = m.kvHeads * m.headDim;
  const n = hfFfnNames(m.arch);
  // Ling 2.0 names its embedding and attention modules its own way and fuses q, k and v (rows [q | k | v]).
  const bailing = m.arch === 'bailing-moe-v2';
  const embed = bailing ? 'model.word_embeddings.weight' : 'model.embed_tokens.weight';
  const out: TensorInput[] = [tensor(embed, [m.vocab, H], m.embed, dtype), tensor('model.norm.weight', [H], m.finalNorm, dtype)];
  if (m.lmHead) out.push(tensor('lm_head.weight', [m.vocab, H], m.lmHead, dtype));
  m.layers.forEach((l, i) => {
    const at = (s: string) => `model.layers.${i}.${s}`;
    out.push(tensor(at('input_layernorm.weight'), [H], l.attnNorm, dtype), tensor(at('post_attention_layernorm.weight'), [H], l.mlpNorm, dtype));
    if (bailing) {
      out.push(tensor(at('attention.query_key_value.weight'), [qW + 2 * kvW, H], stack([l.q, l.k, l.v]), dtype), tensor(at('attention.dense.weight'), [H, qW], l.o, dtype));
      if (l.qNorm) out.push(tensor(at('attention.query_layernorm.weight'), [m.headDim], l.qNorm, dtype), tensor(at('attention.key_layernorm.weight'), [m.headDim], l.kNorm!, dtype));
    } else {
      out.push(
        tensor(at('self_attn.q_proj.weight'), [qW, H], l.q, dtype), tensor(at('self_attn.k_proj.weight'), [kvW, H], l.k, dtype),
        tensor(at('self_attn.v_proj.weight'), [kvW, H], l.v, dtype), tensor(at('self_attn.o_proj.weight'), [H, qW], l.o, dtype),
      );
    }
    if (l.qBias) out.push(tensor(at('self_attn.q_proj.bias'), [qW], l.qBias, dtype), tensor(at('self_attn.k_proj.bias'), [kvW], l.kBias!, dtype), tensor(at('self_attn.v_proj.bias'), [kvW], l.vBias!, dtype));
    // Hunyuan names its q/k norms query_layernorm / key_layernorm.
    const [qNorm, kNorm] = m.arch === 'hunyuan-moe' ? ['query_layernorm', 'key_layernorm'] : ['q_norm', 'k_norm'];
    if (l.qNorm && !bailing) out.push(tensor(at(`self_attn.${qNorm}.weight`), [l.qNorm.length], l.qNorm, dtype), tensor(at(`self_attn.${kNorm}.weight`), [l.kNorm!.length], l.kNorm!, dtype));
    const f = l.ffn;
    if (f.kind === 'dense') {
      out.push(tensor(at(`${n.dense}.gate_proj.weight`), [f.ffn, H], f.gate, dtype), tensor(at(`${n.dense}.up_proj.weight`), [f.ffn, H], f.up, dtype), tensor(at(`${n.dense}.down_proj.weight`), [H, f.ffn], f.down, dtype));
      return;
    }
    out.push(tensor(at(`${n.router}.weight`), [f.experts, H], f.router, dtype));
    const bias = f.routerRule?.selectionBias;
    if (bias && n.bias) out.push(tensor(at(n.bias), n.flatBias ? [f.experts] : [1, f.experts], Float32Array.from(bias), 'f32'));
    else if (bias) out.push(tensor(at(`${n.router}.e_score_correction_bias`), [f.experts], Float32Array.from(bias), 'f32'));
    for (let e = 0; e < f.experts; e++) {
      out.push(
        tensor(at(`${n.experts}.${e}.${n.g}.weight`), [f.ffn, H], f.gate[e], dtype),
        tensor(at(`${n.experts}.${e}.${n.u}.weight`), [f.ffn, H], f.up[e], dtype),
        tensor(at(`${n.experts}.${e}.${n.d}.weight`), [H, f.ffn], f.down[e], dtype),
      );
    }
    if (f.shared) {
      const s = f.shared;
      out.push(tensor(at(`${n.shared}.gate_proj.weight`), [s.ffn, H], s.gate, dtype), tensor(at(`${n.shared}.up_proj.weight`), [s.ffn, H], s.up, dtype), tensor(at(`${n.shared}.down_proj.weight`), [H, s.ffn], s.down, dtype));
      if (s.gateWeight) out.push(tensor(at(`${n.sharedGate}.weight`), [1, H], s.gateWeight, 'f32'));
    }
  });
  if (m.arch === 'qwen3-vl-moe') return nestedFusedTensors(out, m, dtype, 'model.language_model.', 'mlp.experts', 'model.visual.patch_embed.proj.weight');
  if (m.arch === 'llama4') return nestedFusedTensors(out, m, dtype, 'language_model.model.', 'feed_forward.experts', 'vision_model.patch_embedding.linear.weight');
  // Ling 2.0's multi-token-prediction block: its own tensors after the decoder layers (a fused q/k/v of another
  // shape among them), which the loader must leave alone.
  if (bailing) {
    const at = (s: string) => `model.layers.${m.layers.length}.${s}`;
    out.push(tensor(at('eh_proj.weight'), [H, 2 * H], new Float32Array(2 * H * H), dtype), tensor(at('enorm.weight'), [H], m.finalNorm, dtype),
      tensor(at('attention.query_key_value.weight'), [3, H], new Float32Array(3 * H), dtype));
  }
  return out;
}

// A vision-language checkpoint's language model (Qwen3-VL-MoE, Llama 4): the tensors under `prefix` (Llama 4's LM head
// too), each layer's experts as transformers' fused gate_up_proj [E][H][2F] (x @ W: gate columns, then up) and
// down_proj [E][F][H] under `experts`; a vision tensor beside them.
function nestedFusedTensors(flat: TensorInput[], m: TinyModel, dtype: FileDtype, prefix: string, experts: string, vision: string): TensorInput[] {
  const H = m.hidden;
  const llama4 = m.arch === 'llama4';
  const rename = (name: string) => {
    // Llama 4 names its MLPs feed_forward, the shared one shared_expert.
    const own = llama4 ? name.replace('.mlp.shared_experts.', '.feed_forward.shared_expert.').replace('.mlp.gate.', '.feed_forward.router.').replace('.mlp.', '.feed_forward.') : name;
    if (own.startsWith('model.')) return own.replace(/^model\./, prefix);
    return llama4 && own === 'lm_head.weight' ? 'language_model.lm_head.weight' : own;
  };
  const out = flat.filter((t) => !/\.mlp\.experts\.\d+\./.test(t.name)).map((t) => ({ ...t, name: rename(t.name) }));
  m.layers.forEach((l, i) => {
    const f = l.ffn;
    if (f.kind !== 'moe') return;
    const gateUp = new Float32Array(f.experts * H * 2 * f.ffn);
    const down = new Float32Array(f.experts * f.ffn * H);
    for (let e = 0; e < f.experts; e++) {
      for (let j = 0; j < f.ffn; j++) {
        for (let h = 0; h < H; h++) {
          gateUp[(e * H + h) * 2 * f.ffn + j] = f.gate[e][j * H + h];
          gateUp[(e * H + h) * 2 * f.ffn + f.ffn + j] = f.up[e][j * H + h];
          down[(e * f.ffn + j) * H + h] = f.down[e][h * f.ffn + j];
        }
      }
    }
    const at = `${prefix}layers.${i}.${experts}`;
    out.push(tensor(`${at}.gate_up_proj`, [f.experts, H, 2 * f.ffn], gateUp, dtype), tensor(`${at}.down_proj`, [f.experts, f.ffn, H], down, dtype));
  });
  out.push(tensor(vision, [16, 3 * 2 * 16 * 16], new Float32Array(16 * 1536), dtype));
  return out;
}

/** Writes a Hugging Face checkpoint directory (config.json, safetensors, tokenizer); sharded when shardBytes is set. */
export async function writeHfCheckpoint(dir: string, m: TinyModel, dtype: FileDtype = 'f32', shardBytes?: number): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(m.config, null, 2));
  writeTinyTokenizer(dir, m.tokenizer);
  const tensors = hfTensors(m, dtype);
  if (shardBytes) await writeSafetensorsSharded(dir, tensors, { maxShardBytes: shardBytes });
  else await writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
}

// llama.cpp's converter: rows of each head reordered so that RoPE rotates adjacent pairs instead of halves.
function permuteForPairs(w: Float32Array, heads: number, headDim: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const half = headDim / 2;
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < half; i++) {
      for (let j = 0; j < 2; j++) {
        const from = h * headDim + j * half + i;
        const to = h * headDim + i * 2 + j;
        out.set(w.subarray(from * cols, (from + 1) * cols), to * cols);
      }
    }
  }
  return out;
}

function stack(parts: Float32Array[]): Float32Array {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

// llama.cpp's GLM-4.5 MoE keys (bailingmoe2's are the same): the sigmoid router's groups, scale and renormalisation,
// the shared experts, the leading dense blocks, the rotary part of each head, and one (unused) multi-token-prediction
// block count of 0.
function glmMetadata(arch: string, m: TinyModel, moe: Extract<RefFeedForward, { kind: 'moe' }>): Array<[string, GgufTypedValue]> {
  const u32 = (value: number): GgufTypedValue => ({ type: 'u32', value });
  const rule = moe.routerRule!;
  return [
    [`${arch}.expert_feed_forward_length`, u32(moe.ffn)],
    [`${arch}.expert_shared_count`, u32(moe.shared!.ffn / moe.ffn)],
    [`${arch}.leading_dense_block_count`, u32(m.layers.findIndex((l) => l.ffn.kind === 'moe'))],
    [`${arch}.expert_gating_func`, u32(2)],
    [`${arch}.expert_group_count`, u32(rule.groups ?? 1)],
    [`${arch}.expert_group_used_count`, u32(rule.keptGroups ?? 1)],
    [`${arch}.expert_weights_scale`, { type: 'f32', value: rule.scale ?? 1 }],
    [`${arch}.expert_weights_norm`, { type: 'bool', value: rule.normalize ?? false }],
    [`${arch}.rope.dimension_count`, u32(m.rotaryDim ?? m.headDim)],
    [`${arch}.nextn_predict_layers`, u32(0)],
  ];
}

/** Writes the model as a GGUF file the way llama.cpp's converter would (names, stacked experts, metadata). */
export async function writeGgufCheckpoint(file: string, m: TinyModel, dtype: FileDtype = 'f32'): Promise<void> {
  const arch = GGUF_ARCHITECTURES[m.arch];
  if (!arch) throw new Error(`no GGUF architecture for ${m.arch}`);
  const H = m.hidden;
  const qW = m.heads * m.headDim;
  const kvW = m.kvHeads * m.headDim;
  const pairs = arch === 'llama';
  const moe = m.layers.find((l) => l.ffn.kind === 'moe')!.ffn as Extract<RefFeedForward, { kind: 'moe' }>;
  const policy = moe.policy as Extract<RefPolicy, { kind: 'top-k' }>;
  const dense = m.layers.find((l) => l.ffn.kind === 'dense')?.ffn;
  const denseFfn = dense?.kind === 'dense' ? dense.ffn : moe.ffn;
  const u32 = (value: number): GgufTypedValue => ({ type: 'u32', value });
  const metadata: Array<[string, GgufTypedValue]> = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: `tiny-${m.arch}` }],
    [`${arch}.block_count`, u32(m.layers.length)],
    [`${arch}.context_length`, u32(512)],
    [`${arch}.embedding_length`, u32(H)],
    [`${arch}.feed_forward_length`, u32(['ernie4_5-moe', 'dots1', 'bailingmoe2', 'llama4'].includes(arch) ? denseFfn : moe.ffn)],
    [`${arch}.attention.head_count`, u32(m.heads)],
    [`${arch}.attention.head_count_kv`, u32(m.kvHeads)],
    [`${arch}.attention.key_length`, u32(m.headDim)],
    [`${arch}.attention.value_length`, u32(m.headDim)],
    [`${arch}.rope.freq_base`, { type: 'f32', value: m.ropeTheta }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: m.rmsNormEpsilon }],
    [`${arch}.expert_count`, u32(moe.experts)],
    [`${arch}.expert_used_count`, u32(policy.k)],
    ...(arch === 'qwen2moe' || arch === 'qwen3moe' || arch === 'qwen3vlmoe' ? [[`${arch}.expert_feed_forward_length`, u32(moe.ffn)] as [string, GgufTypedValue]] : []),
    ...(arch === 'qwen3vlmoe'
      ? [[`${arch}.rope.dimension_sections`, { type: 'array', itemType: 'i32', value: ropeSections(m.headDim) }] as [string, GgufTypedValue]]
      : []),
    ...(moe.shared && arch !== 'glm4moe' ? [[`${arch}.expert_shared_feed_forward_length`, u32(moe.shared.ffn)] as [string, GgufTypedValue]] : []),
    ...(arch === 'glm4moe' || arch === 'bailingmoe2' ? glmMetadata(arch, m, moe) : []),
    ...(arch === 'dots1'
      ? ([
          [`${arch}.expert_feed_forward_length`, u32(moe.ffn)],
          [`${arch}.expert_shared_count`, u32(moe.shared!.ffn / moe.ffn)],
          [`${arch}.leading_dense_block_count`, u32(m.layers.findIndex((l) => l.ffn.kind === 'moe'))],
          [`${arch}.expert_gating_func`, u32(2)],
          [`${arch}.expert_weights_scale`, { type: 'f32', value: moe.routerRule!.scale ?? 1 }],
          [`${arch}.expert_weights_norm`, { type: 'bool', value: moe.routerRule!.normalize ?? false }],
        ] as Array<[string, GgufTypedValue]>)
      : []),
    ...(arch === 'minimax-m2'
      ? ([
          [`${arch}.expert_feed_forward_length`, u32(moe.ffn)],
          [`${arch}.expert_gating_func`, u32(2)],
          [`${arch}.rope.dimension_count`, u32(m.rotaryDim ?? m.headDim)],
        ] as Array<[string, GgufTypedValue]>)
      : []),
    ...(arch === 'hunyuan-moe' ? [[`${arch}.expert_feed_forward_length`, u32(moe.ffn)] as [string, GgufTypedValue]] : []),
    ...(arch === 'llama4'
      ? ([
          [`${arch}.expert_feed_forward_length`, u32(moe.ffn)],
          [`${arch}.interleave_moe_layer_step`, u32(m.layers.findIndex((l) => l.ffn.kind === 'moe') + 1)],
        ] as Array<[string, GgufTypedValue]>)
      : []),
    ...(arch === 'ernie4_5-moe'
      ? ([
          [`${arch}.expert_feed_forward_length`, u32(moe.ffn)],
          [`${arch}.interleave_moe_layer_step`, u32(1)],
          [`${arch}.leading_dense_block_count`, u32(m.layers.findIndex((l) => l.ffn.kind === 'moe'))],
        ] as Array<[string, GgufTypedValue]>)
      : []),
    ...tinyTokenizerGgufMetadata(m.tokenizer),
  ];
  const t: TensorInput[] = [tensor('token_embd.weight', [m.vocab, H], m.embed, dtype), tensor('output_norm.weight', [H], m.finalNorm, dtype)];
  // llama.cpp's converter turns Llama 3 RoPE scaling into rope_freqs: each pair's frequency is divided by its factor.
  if (m.llama3Rope) {
    const scaled = refLlama3Frequencies(m.ropeTheta, m.headDim, m.llama3Rope);
    t.push(tensor('rope_freqs.weight', [m.headDim / 2], Float32Array.from(scaled, (f, i) => m.ropeTheta ** ((-2 * i) / m.headDim) / f), 'f32'));
  }
  if (m.lmHead) t.push(tensor('output.weight', [m.vocab, H], m.lmHead, dtype));
  m.layers.forEach((l, i) => {
    const at = (s: string) => `blk.${i}.${s}`;
    const q = pairs ? permuteForPairs(l.q, m.heads, m.headDim, H) : l.q;
    const k = pairs ? permuteForPairs(l.k, m.kvHeads, m.headDim, H) : l.k;
    t.push(
      tensor(at('attn_norm.weight'), [H], l.attnNorm, dtype),
      // llama.cpp names GLM-4.5's MLP input norm after HF's post_attention_layernorm.
      tensor(at(arch === 'glm4moe' ? 'post_attention_norm.weight' : 'ffn_norm.weight'), [H], l.mlpNorm, dtype),
      tensor(at('attn_output.weight'), [H, qW], l.o, dtype),
      // llama.cpp's bailingmoe2 converter keeps HF's fused query_key_value as attn_qkv.
      ...(arch === 'bailingmoe2'
        ? [tensor(at('attn_qkv.weight'), [qW + 2 * kvW, H], stack([q, k, l.v]), dtype)]
        : [tensor(at('attn_q.weight'), [qW, H], q, dtype), tensor(at('attn_k.weight'), [kvW, H], k, dtype), tensor(at('attn_v.weight'), [kvW, H], l.v, dtype)]),
    );
    if (l.qBias) t.push(tensor(at('attn_q.bias'), [qW], l.qBias, dtype), tensor(at('attn_k.bias'), [kvW], l.kBias!, dtype), tensor(at('attn_v.bias'), [kvW], l.vBias!, dtype));
    if (l.qNorm) t.push(tensor(at('attn_q_norm.weight'), [l.qNorm.length], l.qNorm, dtype), tensor(at('attn_k_norm.weight'), [l.kNorm!.length], l.kNorm!, dtype));
    const f = l.ffn;
    if (f.kind === 'dense') {
      t.push(tensor(at('ffn_gate.weight'), [f.ffn, H], f.gate, dtype), tensor(at('ffn_up.weight'), [f.ffn, H], f.up, dtype), tensor(at('ffn_down.weight'), [H, f.ffn], f.down, dtype));
      return;
    }
    t.push(
      // llama.cpp keeps the router in f32; rounded to the file dtype first so both formats hold the same values.
      tensor(at('ffn_gate_inp.weight'), [f.experts, H], quantise(f.router, dtype), 'f32'),
      tensor(at('ffn_gate_exps.weight'), [f.experts, f.ffn, H], stack(f.gate), dtype),
      tensor(at('ffn_up_exps.weight'), [f.experts, f.ffn, H], stack(f.up), dtype),
      tensor(at('ffn_down_exps.weight'), [f.experts, H, f.ffn], stack(f.down), dtype),
    );
    const bias = f.routerRule?.selectionBias;
    if (bias) t.push(tensor(at('exp_probs_b.bias'), [f.experts], Float32Array.from(bias), 'f32'));
    if (f.shared) {
      const s = f.shared;
      t.push(tensor(at('ffn_gate_shexp.weight'), [s.ffn, H], s.gate, dtype), tensor(at('ffn_up_shexp.weight'), [s.ffn, H], s.up, dtype), tensor(at('ffn_down_shexp.weight'), [H, s.ffn], s.down, dtype));
      if (s.gateWeight) t.push(tensor(at('ffn_gate_inp_shexp.weight'), [H], s.gateWeight, 'f32'));
    }
  });
  await writeGguf(file, { metadata, tensors: t });
}

/** A fresh temporary directory, removed by the returned cleanup. */
export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
