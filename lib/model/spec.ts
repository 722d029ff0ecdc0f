// What a decoder-only MoE transformer is made of, independent of the checkpoint format it came from.
import { RoutingPolicy } from '../policy/routing-policy';

/** A dense SwiGLU MLP layer. */
export interface DenseLayerSpec {
  kind: 'dense';
  ffn: number;
}

/**
 * How a MoE layer's router turns logits into the scores it selects by, as the model family defines it (README,
 * "Routers"). Absent: a softmax over all experts, weights as the policy says (Mixtral, Qwen, OLMoE, DeepSeek v1).
 */
export interface RouterSpec {
  /**
   * 'softmax' over all experts; 'sigmoid' of each logit (DeepSeek-V3, Kimi K2, GLM-4.5); 'softmax-of-kept': ranked
   * by logit, weighted by a softmax over the kept experts' logits only (gpt-oss, Granite MoE).
   */
  scoring: 'softmax' | 'sigmoid' | 'softmax-of-kept';
  /** A per-expert bias added to the scores for selection only (`e_score_correction_bias`); tensor `router_selection_bias`. */
  selectionBias?: boolean;
  /** Group-limited selection: experts split into `count` equal groups, only the `keep` best groups compete. */
  groups?: { count: number; keep: number; score: 'top2-sum' | 'max' };
  /** The family's weight rule, applied whatever the policy: renormalise the kept scores (`norm_topk_prob`). */
  normalize?: boolean;
  /** The family's weight scale, times the policy's (`routed_scaling_factor`). */
  scale?: number;
}

/**
 * Routed slots that cost no GEMM (LongCat-Flash's zero-computation experts): router ids experts..experts+count-1.
 * 'zero' adds nothing, 'identity' adds weight * x.
 */
export interface ZeroExpertsSpec {
  count: number;
  kind: 'zero' | 'identity';
}

/** An MoE layer: routed SwiGLU experts, optionally an always-on shared expert. */
export interface MoELayerSpec {
  kind: 'moe';
  experts: number;
  ffn: number;
  shared?: { ffn: number; gated: boolean };
  /** The policy the model was trained with for this layer. */
  policy: RoutingPolicy;
  /** The family's router; absent means a softmax over all experts. */
  router?: RouterSpec;
  /** Routed experts that do no FFN compute; the router scores experts + zeroExperts.count slots. */
  zeroExperts?: ZeroExpertsSpec;
  /** The router has a bias [experts] added to its logits (gpt-oss); tensor `router_bias`. */
  routerBias?: boolean;
  /** Every expert's gate, up and down projections have biases (gpt-oss). */
  expertBiases?: boolean;
  /** What the experts compute between gate/up and down; absent means SwiGLU, silu(gate) * up. */
  activation?: ExpertActivationSpec;
  /** The routing weight scales each expert's input instead of its output (Llama 4: expert(w x)). */
  weightOnInput?: boolean;
}

/** gpt-oss's clamped SwiGLU: g = min(gate, limit), u = clamp(up, +-limit), (u + 1) * g * sigmoid(alpha * g). */
export interface ExpertActivationSpec {
  kind: 'swiglu-oai';
  limit: number;
  alpha: number;
}

/**
 * YaRN RoPE scaling (Hugging Face `rope_scaling` with rope_type 'yarn'): frequencies blended between interpolation
 * (divided by `factor`) and extrapolation over the dims that `betaFast` and `betaSlow` rotations bound, cos and sin
 * scaled by `attentionFactor`.
 */
export interface RopeScalingSpec {
  kind: 'yarn';
  factor: number;
  betaFast: number;
  betaSlow: number;
  originalContext: number;
  /** Whether the ramp's bounds are rounded to whole dims (HF's default; gpt-oss says false). */
  truncate: boolean;
  attentionFactor: number;
  /** DeepSeek's YaRN also multiplies the attention softmax scale by mscale(factor, mscale_all_dim)^2. */
  softmaxFactor?: number;
}

/**
 * Llama 3's RoPE scaling (HF rope_type 'llama3'): pairs whose wavelength exceeds originalContext / lowFreqFactor turn
 * `factor` times slower, those under originalContext / highFreqFactor keep their frequency, a linear blend between.
 */
export interface Llama3RopeSpec {
  factor: number;
  lowFreqFactor: number;
  highFreqFactor: number;
  originalContext: number;
}

export type FeedForwardSpec = DenseLayerSpec | MoELayerSpec;

/**
 * Multi-head latent attention (DeepSeek-V2/V3): keys and values come from one compressed latent per position, which
 * is all the KV cache holds (kvLoraRank + ropeDim floats per position and layer). A query head is
 * [nopeDim | ropeDim] wide, a value head valueDim; `headDim` of the spec is nopeDim + ropeDim.
 */
export interface MlaSpec {
  /** Rank of the query's low-rank projection (q_a_proj, normed, then q_b_proj); absent: one q_proj. */
  qLoraRank?: number;
  kvLoraRank: number;
  nopeDim: number;
  ropeDim: number;
  valueDim: number;
  /**
   * LongCat-Flash's LoRA scales: the query times `query` (sqrt(hidden / qLoraRank)) and the normed latent times
   * `latent` (sqrt(hidden / kvLoraRank)), applied through the q_a and kv_a norms' weights. Absent: 1 (DeepSeek).
   */
  loraScales?: { query: number; latent: number };
}

/**
 * LongCat-Flash's shortcut-connected decoder layer: two MLA attention sublayers, two dense SwiGLU MLPs of `denseFfn`,
 * and the layer's one MoE block (its `layers` entry), which reads the first MLP's normed input and is added to the
 * residual after the second MLP:
 *   h = x + attn0(norm0(x)); m = moe(norm1(h)); h = h + mlp0(norm1(h)); h = h + attn1(norm2(h));
 *   out = h + mlp1(norm3(h)) + m.
 * Each attention sublayer has its own KV cache slot (2 per layer).
 */
export interface ShortcutMoeSpec {
  denseFfn: number;
}

/** Sizes and choices of one model, read from config.json or GGUF metadata. */
export interface ModelSpec {
  /** Architecture name as dynamoe knows it (e.g. 'mixtral', 'qwen2-moe'). */
  architecture: string;
  vocab: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ropeTheta: number;
  /** Which dimensions rotate together: Hugging Face checkpoints rotate halves, llama.cpp "llama" GGUFs pairs. */
  ropeStyle: 'halves' | 'pairs';
  /** Leading dimensions of each head that rotate (partial rotary: GLM-4.5 rotates half); default all of headDim. */
  rotaryDim?: number;
  rmsNormEpsilon: number;
  /** RMSNorm of q and k before RoPE: over each head (Qwen3-MoE) or over the whole projection (OLMoE). */
  qkNorm: 'none' | 'per-head' | 'full';
  /** The q/k norm comes after RoPE instead (Hunyuan-A13B); its weights do not commute with the rotation. */
  qkNormAfterRope?: boolean;
  /** Per decoder layer, whether RoPE applies (Llama 4 leaves every fourth layer without); absent: every layer. */
  ropeLayers?: boolean[];
  /** Llama 4's use_qk_norm: each q and k head RMS-normalised without weights after RoPE, on the RoPE layers. */
  qkUnitNorm?: boolean;
  /** Llama 3's RoPE frequency scaling (Llama 4's rope_scaling), from config.json. */
  llama3Rope?: Llama3RopeSpec;
  /** A GGUF's `rope_freqs` tensor: each rotated pair's frequency divided by its factor (llama.cpp's Llama 3 scaling). */
  ropeFactorsTensor?: string;
  /** q/k/v projections have biases (Qwen2-MoE). */
  attentionBias: boolean;
  /** The LM head is the embedding matrix. */
  tiedEmbeddings: boolean;
  /** Longest context the model was trained for. */
  maxContext: number;
  /** One entry per decoder layer. */
  layers: FeedForwardSpec[];
  /** Every layer's attention is MLA (heads x [nope | rope] queries over a latent cache) instead of q/k/v. */
  mla?: MlaSpec;
  /** Scaled RoPE; absent means the plain rotation. */
  ropeScaling?: RopeScalingSpec;
  /** Per decoder layer, the sliding window of its attention (0: full attention); absent means full everywhere. */
  attentionWindows?: number[];
  /** Per decoder layer, the chunk its attention stays within (Llama 4's RoPE layers; 0: none). */
  attentionChunks?: number[];
  /**
   * Llama 4's attention temperature on the `layers` marked: position i's scores times
   * 1 + scale * log(1 + floor((i + 1) / floor)).
   */
  attentionTemperature?: { floor: number; scale: number; layers: boolean[] };
  /** Every attention layer has a learned sink logit per head (gpt-oss); tensor `sinks`. */
  attentionSinks?: boolean;
  /** The attention output projection has a bias (gpt-oss); tensor `o_bias`. */
  outputBias?: boolean;
  /** Granite's scalars; absent means none (every factor 1, the softmax scale 1 / sqrt(headDim)). */
  multipliers?: MultipliersSpec;
  /** Every layer is LongCat-Flash's shortcut-connected double layer (its `layers` entry is the MoE block). */
  shortcutMoe?: ShortcutMoeSpec;
}

/** Attention sublayers, each with its own KV cache slot: one per layer, two per shortcut-connected layer. */
export function attentionSlots(spec: ModelSpec): number {
  return spec.layers.length * (spec.shortcutMoe ? 2 : 1);
}

/**
 * Granite's multipliers (config.json `embedding_multiplier`, `residual_multiplier`, `attention_multiplier`,
 * `logits_scaling`; GGUF `embedding_scale`, `residual_scale`, `attention.scale`, `logit_scale`).
 */
export interface MultipliersSpec {
  /** The token embeddings times this. */
  embedding: number;
  /** Each attention and feed-forward output times this before it joins the residual stream. */
  residual: number;
  /** The attention softmax scale, replacing 1 / sqrt(headDim); absent: 1 / sqrt(headDim). */
  attention?: number;
  /** The logits divided by this. */
  logitsDivisor: number;
}

/** The MoE layers' specs, in layer order (their index is the layer's MoE slot). */
export function moeLayers(spec: ModelSpec): { layer: number; moe: MoELayerSpec }[] {
  const out: { layer: number; moe: MoELayerSpec }[] = [];
  spec.layers.forEach((layer, index) => {
    if (layer.kind === 'moe') out.push({ layer: index, moe: layer });
  });
  return out;
}

/** What a MoE layer's router scores and its policies count: FFN experts and zero-computation experts. */
export function routedSlots(moe: MoELayerSpec): number {
  return moe.experts + (moe.zeroExperts?.count ?? 0);
}
