// LongCat-Flash (Meituan): shortcut-connected double layers, each two MLA attentions and two dense MLPs plus one MoE
// block whose input is the first MLP's and whose output joins the residual after the second MLP (ShortcutMoeSpec),
// and zero-computation (identity) experts beside the FFN experts. The router is a softmax over experts + zero
// experts, ranked with e_score_correction_bias, weights the unbiased probabilities times routed_scaling_factor.
// As HF's modeling_longcat_flash.py: the query times sqrt(hidden / q_lora_rank), the normed latent times
// sqrt(hidden / kv_lora_rank); RoPE on interleaved pairs.
import { DynamoeError } from '../../errors';
import { Architecture, modelType } from '../architecture';
import { ConfigReader } from '../config-reader';
import { CheckpointNaming, hfMlpExpertNames, hfNaming, LayerTensor } from '../naming';
import { hfRopeScaling } from '../rope-scaling';
import { MlaSpec, MoELayerSpec, ModelSpec, RopeScalingSpec } from '../spec';

function unsupported(c: ConfigReader, key: string, why: string): never {
  throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: '${key}': ${why}`);
}

/**
 * RoPE base and scaling: `rope_theta` and `rope_scaling`, or newer transformers' `rope_parameters` ({ rope_type,
 * rope_theta, and YaRN's keys }). YaRN as HF's LongCat runs it: the generic YaRN table, and the softmax scale times
 * mscale(factor, mscale_all_dim)^2 (yarn_apply_mscale), which is DeepSeek's rule (rope-scaling.ts).
 */
function ropeOf(c: ConfigReader, maxContext: number): { theta: number; scaling?: RopeScalingSpec } {
  if (!c.has('rope_parameters')) {
    const scaling = hfRopeScaling(c, maxContext);
    return { theta: c.number('rope_theta', 10000000), ...(scaling ? { scaling } : {}) };
  }
  const params = c.raw('rope_parameters');
  if (typeof params !== 'object' || Array.isArray(params)) unsupported(c, 'rope_parameters', 'must be an object');
  const inner = ConfigReader.fromJson(params as Record<string, unknown>, `${c.source} rope_parameters`);
  const scaling = hfRopeScaling(ConfigReader.fromJson({ rope_scaling: params }, c.source), maxContext);
  return { theta: inner.number('rope_theta', c.number('rope_theta', 10000000)), ...(scaling ? { scaling } : {}) };
}

function longcatSpec(c: ConfigReader): ModelSpec {
  // HF's LongcatFlashConfig defaults: 131072 positions.
  const maxContext = c.int('max_position_embeddings', 131072);
  const rope = ropeOf(c, maxContext);
  if (c.bool('attention_bias', false)) unsupported(c, 'attention_bias', 'MLA projections with biases are not supported');
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  // HF's attention always runs q_a_proj -> q_a_layernorm -> q_b_proj.
  if (!c.has('q_lora_rank')) unsupported(c, 'q_lora_rank', 'LongCat-Flash attention needs a low-rank query');
  const qLoraRank = c.int('q_lora_rank');
  const kvLoraRank = c.int('kv_lora_rank');
  const ropeDim = c.int('qk_rope_head_dim');
  if (ropeDim % 2 !== 0) unsupported(c, 'qk_rope_head_dim', `RoPE rotates pairs of dimensions, and ${ropeDim} is odd`);
  // HF computes the RoPE frequencies over config.head_dim and applies them to the qk_rope_head_dim part.
  if (c.has('head_dim') && c.int('head_dim') !== ropeDim) {
    unsupported(c, 'head_dim', `must equal qk_rope_head_dim (${ropeDim}), the width RoPE rotates`);
  }
  const nopeDim = c.int('qk_nope_head_dim');
  if (c.has('qk_head_dim') && c.int('qk_head_dim') !== nopeDim + ropeDim) {
    unsupported(c, 'qk_head_dim', `must be qk_nope_head_dim + qk_rope_head_dim (${nopeDim + ropeDim})`);
  }
  const mla: MlaSpec = {
    qLoraRank, kvLoraRank, nopeDim, ropeDim, valueDim: c.int('v_head_dim'),
    // HF's port always scales; SGLang reads the config's two flags (folding them into these norms, as here).
    loraScales: {
      query: c.bool('mla_scale_q_lora', true) ? Math.sqrt(hidden / qLoraRank) : 1,
      latent: c.bool('mla_scale_kv_lora', true) ? Math.sqrt(hidden / kvLoraRank) : 1,
    },
  };
  const zeroCount = c.int('zero_expert_num', 0, true);
  const zeroType = c.string('zero_expert_type', 'identity');
  if (zeroCount > 0 && zeroType !== 'identity') unsupported(c, 'zero_expert_type', `'${zeroType}' is not 'identity'`);
  const k = c.has('moe_topk') ? c.int('moe_topk') : c.int('num_experts_per_tok');
  const moe: MoELayerSpec = {
    kind: 'moe',
    experts: c.int('n_routed_experts'),
    ffn: c.int('expert_ffn_hidden_size'),
    policy: { kind: 'top-k', k },
    // HF's LongcatFlashConfig defaults routed_scaling_factor to 6.
    router: { scoring: 'softmax', selectionBias: true, scale: c.number('routed_scaling_factor', 6) },
    ...(zeroCount > 0 ? { zeroExperts: { count: zeroCount, kind: 'identity' } } : {}),
    ...(c.bool('router_bias', false) ? { routerBias: true } : {}),
  };
  // num_layers counts the double layers (HF sets num_hidden_layers to twice it for its cache).
  const layerCount = c.layerCount('num_layers');
  return {
    architecture: 'longcat-flash',
    vocab: c.int('vocab_size'),
    hidden,
    heads,
    // Every head reads the one latent; headDim is a query head's width, [nope | rope].
    kvHeads: heads,
    headDim: nopeDim + ropeDim,
    ropeTheta: rope.theta,
    ...(rope.scaling ? { ropeScaling: rope.scaling } : {}),
    // HF's apply_rotary_pos_emb_interleave rotates adjacent pairs (x0, x1), (x2, x3), ...
    ropeStyle: 'pairs',
    rmsNormEpsilon: c.number('rms_norm_eps', 1e-5),
    qkNorm: 'none',
    attentionBias: false,
    tiedEmbeddings: c.bool('tie_word_embeddings', false),
    maxContext,
    layers: Array.from({ length: layerCount }, () => moe),
    mla,
    shortcutMoe: { denseFfn: c.int('ffn_hidden_size') },
  };
}

// Sublayer tensors of model.layers.{i}: norms and attentions are ModuleLists, the dense MLPs `mlps.{j}`.
const sublayerNames: Partial<Record<LayerTensor, (j: number) => string>> = {
  attn_norm: (j) => `input_layernorm.${j}.weight`,
  mlp_norm: (j) => `post_attention_layernorm.${j}.weight`,
  q_a: (j) => `self_attn.${j}.q_a_proj.weight`,
  q_a_norm: (j) => `self_attn.${j}.q_a_layernorm.weight`,
  q_b: (j) => `self_attn.${j}.q_b_proj.weight`,
  kv_a: (j) => `self_attn.${j}.kv_a_proj_with_mqa.weight`,
  kv_a_norm: (j) => `self_attn.${j}.kv_a_layernorm.weight`,
  kv_b: (j) => `self_attn.${j}.kv_b_proj.weight`,
  o: (j) => `self_attn.${j}.o_proj.weight`,
  mlp_gate: (j) => `mlps.${j}.gate_proj.weight`,
  mlp_up: (j) => `mlps.${j}.up_proj.weight`,
  mlp_down: (j) => `mlps.${j}.down_proj.weight`,
};

const base = hfNaming({ ...hfMlpExpertNames, router: 'mlp.router.classifier' });

const naming: CheckpointNaming = {
  ...base,
  // The selection bias is a buffer of the router module, beside its classifier.
  layer: (index, tensor) =>
    tensor === 'router_selection_bias' ? `model.layers.${index}.mlp.router.e_score_correction_bias` : base.layer(index, tensor),
  // Tensors LongCat-Flash does not have (GGUF's split k_b / v_b, asked for when kv_b is absent) get a name that no
  // checkpoint holds, so a missing tensor is reported by that name.
  sublayer: (index, sub, tensor) => `model.layers.${index}.${sublayerNames[tensor]?.(sub) ?? `${tensor}.${sub}`}`,
};

export const longcatFlash: Architecture = {
  name: 'longcat-flash',
  // Some released config.json files leave model_type out and name the class only.
  matchesHf: (c) =>
    modelType(c) === 'longcat_flash' ||
    (!c.has('model_type') && Array.isArray(c.raw('architectures')) &&
      (c.raw('architectures') as unknown[]).includes('LongcatFlashForCausalLM')),
  fromHfConfig: longcatSpec,
  hfNaming: naming,
};
