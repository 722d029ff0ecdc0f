// Where each weight of a decoder layer lives in a checkpoint: Hugging Face names per architecture, GGUF names.

/** Per-layer weights every architecture maps to its own tensor names. */
export type LayerTensor =
  | 'attn_norm'
  | 'q'
  | 'k'
  | 'v'
  | 'o'
  | 'q_bias'
  | 'k_bias'
  | 'v_bias'
  | 'q_norm'
  | 'k_norm'
  | 'mlp_norm'
  | 'mlp_gate'
  | 'mlp_up'
  | 'mlp_down'
  | 'router'
  | 'router_selection_bias'
  | 'shared_gate'
  | 'shared_up'
  | 'shared_down'
  | 'shared_gate_weight'
  // Multi-head latent attention (DeepSeek-V2/V3); 'q' is its q_proj when the query has no low-rank projection.
  | 'q_a'
  | 'q_a_norm'
  | 'q_b'
  | 'kv_a'
  | 'kv_a_norm'
  | 'kv_b'
  | 'k_b'
  | 'v_b'
  | 'o_bias'
  | 'sinks'
  | 'router_bias';

export type ExpertMatrix = 'gate' | 'up' | 'down';

export interface CheckpointNaming {
  embed: string;
  finalNorm: string;
  lmHead: string;
  layer(index: number, tensor: LayerTensor): string;
  /** Hugging Face stores one tensor per expert; GGUF one [experts][rows][cols] tensor per layer. */
  experts:
    | { stacked: false; name(layer: number, matrix: ExpertMatrix, expert: number): string }
    | { stacked: true; name(layer: number, matrix: ExpertMatrix): string };
  /** One [experts][rows] tensor per layer of the experts' biases, where the format has them (gpt-oss). */
  expertBias?(layer: number, matrix: ExpertMatrix): string;
  /**
   * A tensor of sublayer `sub` (0 or 1) of a LongCat-Flash double layer: its norms, attention and dense MLP
   * ('attn_norm', 'mlp_norm', MLA tensors, 'mlp_gate' / 'mlp_up' / 'mlp_down'); the MoE tensors use `layer`.
   */
  sublayer?(index: number, sub: number, tensor: LayerTensor): string;
}

/** Module paths (under `model.layers.{i}.`) of an architecture's feed-forward weights. */
export interface HfFeedForwardNames {
  router: string;
  experts: string;
  expertMatrices: Record<ExpertMatrix, string>;
  dense: string;
  shared?: string;
  sharedGate?: string;
  /** The router's selection bias (default `<router>.e_score_correction_bias`). */
  selectionBias?: string;
}

/** Names of Llama-family Hugging Face checkpoints, with the architecture's own feed-forward names. */
export function hfNaming(ffn: HfFeedForwardNames): CheckpointNaming {
  const attention: Partial<Record<LayerTensor, string>> = {
    attn_norm: 'input_layernorm.weight',
    q: 'self_attn.q_proj.weight',
    k: 'self_attn.k_proj.weight',
    v: 'self_attn.v_proj.weight',
    o: 'self_attn.o_proj.weight',
    q_bias: 'self_attn.q_proj.bias',
    k_bias: 'self_attn.k_proj.bias',
    v_bias: 'self_attn.v_proj.bias',
    q_norm: 'self_attn.q_norm.weight',
    k_norm: 'self_attn.k_norm.weight',
    mlp_norm: 'post_attention_layernorm.weight',
    mlp_gate: `${ffn.dense}.gate_proj.weight`,
    mlp_up: `${ffn.dense}.up_proj.weight`,
    mlp_down: `${ffn.dense}.down_proj.weight`,
    router: `${ffn.router}.weight`,
    router_selection_bias: ffn.selectionBias ?? `${ffn.router}.e_score_correction_bias`,
    shared_gate: `${ffn.shared}.gate_proj.weight`,
    shared_up: `${ffn.shared}.up_proj.weight`,
    shared_down: `${ffn.shared}.down_proj.weight`,
    shared_gate_weight: `${ffn.sharedGate}.weight`,
    q_a: 'self_attn.q_a_proj.weight',
    q_a_norm: 'self_attn.q_a_layernorm.weight',
    q_b: 'self_attn.q_b_proj.weight',
    kv_a: 'self_attn.kv_a_proj_with_mqa.weight',
    kv_a_norm: 'self_attn.kv_a_layernorm.weight',
    kv_b: 'self_attn.kv_b_proj.weight',
    o_bias: 'self_attn.o_proj.bias',
    sinks: 'self_attn.sinks',
    router_bias: `${ffn.router}.bias`,
  };
  return {
    embed: 'model.embed_tokens.weight',
    finalNorm: 'model.norm.weight',
    lmHead: 'lm_head.weight',
    layer: (index, tensor) => `model.layers.${index}.${attention[tensor]}`,
    experts: {
      stacked: false,
      name: (layer, matrix, expert) =>
        `model.layers.${layer}.${ffn.experts}.${expert}.${ffn.expertMatrices[matrix]}.weight`,
    },
  };
}

/** The usual names: `mlp.gate` router, `mlp.experts.{e}.{gate,up,down}_proj`, dense `mlp`. */
export const hfMlpExpertNames: HfFeedForwardNames = {
  router: 'mlp.gate',
  experts: 'mlp.experts',
  expertMatrices: { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' },
  dense: 'mlp',
};

const ggufLayerNames: Record<LayerTensor, string> = {
  attn_norm: 'attn_norm.weight',
  q: 'attn_q.weight',
  k: 'attn_k.weight',
  v: 'attn_v.weight',
  o: 'attn_output.weight',
  q_bias: 'attn_q.bias',
  k_bias: 'attn_k.bias',
  v_bias: 'attn_v.bias',
  q_norm: 'attn_q_norm.weight',
  k_norm: 'attn_k_norm.weight',
  mlp_norm: 'ffn_norm.weight',
  mlp_gate: 'ffn_gate.weight',
  mlp_up: 'ffn_up.weight',
  mlp_down: 'ffn_down.weight',
  router: 'ffn_gate_inp.weight',
  router_selection_bias: 'exp_probs_b.bias',
  shared_gate: 'ffn_gate_shexp.weight',
  shared_up: 'ffn_up_shexp.weight',
  shared_down: 'ffn_down_shexp.weight',
  shared_gate_weight: 'ffn_gate_inp_shexp.weight',
  q_a: 'attn_q_a.weight',
  q_a_norm: 'attn_q_a_norm.weight',
  q_b: 'attn_q_b.weight',
  kv_a: 'attn_kv_a_mqa.weight',
  kv_a_norm: 'attn_kv_a_norm.weight',
  // Older converters wrote kv_b whole; newer ones split it per head into k_b (transposed) and v_b.
  kv_b: 'attn_kv_b.weight',
  k_b: 'attn_k_b.weight',
  v_b: 'attn_v_b.weight',
  o_bias: 'attn_output.bias',
  sinks: 'attn_sinks.weight',
  router_bias: 'ffn_gate_inp.bias',
};

/** Names llama.cpp's converter writes, the same for every architecture. */
export const ggufNaming: CheckpointNaming = {
  embed: 'token_embd.weight',
  finalNorm: 'output_norm.weight',
  lmHead: 'output.weight',
  layer: (index, tensor) => `blk.${index}.${ggufLayerNames[tensor]}`,
  experts: { stacked: true, name: (layer, matrix) => `blk.${layer}.ffn_${matrix}_exps.weight` },
  expertBias: (layer, matrix) => `blk.${layer}.ffn_${matrix}_exps.bias`,
};

/** GGUF names of an architecture: llama.cpp's, with gpt-oss's pre-MLP norm under its own name. */
export function ggufNamingFor(architecture: string): CheckpointNaming {
  // gpt-oss and GLM-4.5 MoE name the MLP's input norm after HF's post_attention_layernorm.
  if (architecture !== 'gpt-oss' && architecture !== 'glm4-moe') return ggufNaming;
  return {
    ...ggufNaming,
    layer: (index, tensor) =>
      tensor === 'mlp_norm' ? `blk.${index}.post_attention_norm.weight` : ggufNaming.layer(index, tensor),
  };
}
