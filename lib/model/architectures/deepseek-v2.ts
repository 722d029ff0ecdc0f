// DeepSeek-V2 and DeepSeek-V3: multi-head latent attention (MLA), fine-grained routed experts plus shared experts,
// the first layers dense. V2 routes by softmax (greedy or group-limited); V3 by sigmoid with a selection bias and
// groups ranked by their two best experts (noaux_tc).
import { RoutingPolicy } from '../../policy/routing-policy';
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { DynamoeError } from '../../errors';
import { ConfigReader } from '../config-reader';
import { hfMlpExpertNames, hfNaming } from '../naming';
import { FeedForwardSpec, MlaSpec, MoELayerSpec, ModelSpec, RouterSpec } from '../spec';

function unsupported(c: ConfigReader, key: string, why: string): never {
  throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: '${key}': ${why}`);
}

/** The MLA sizes of a DeepSeek-V2/V3 config.json, checked for consistency. */
function mlaSpec(c: ConfigReader): MlaSpec {
  // q_lora_rank null (V2-Lite) means one q_proj.
  const qLoraRank = c.has('q_lora_rank') ? c.int('q_lora_rank') : undefined;
  const ropeDim = c.int('qk_rope_head_dim');
  if (ropeDim % 2 !== 0) unsupported(c, 'qk_rope_head_dim', `RoPE rotates pairs of dimensions, and ${ropeDim} is odd`);
  return {
    ...(qLoraRank !== undefined ? { qLoraRank } : {}),
    kvLoraRank: c.int('kv_lora_rank'),
    nopeDim: c.int('qk_nope_head_dim'),
    ropeDim,
    valueDim: c.int('v_head_dim'),
  };
}

/** The router and policy of a MoE layer, as topk_method and scoring_func say. */
function routing(c: ConfigReader, v3: boolean): { policy: RoutingPolicy; router?: RouterSpec } {
  const k = c.int('num_experts_per_tok');
  const normalize = c.bool('norm_topk_prob', false);
  const scale = c.number('routed_scaling_factor', 1);
  const method = c.string('topk_method', v3 ? 'noaux_tc' : 'greedy');
  const scoring = c.string('scoring_func', v3 ? 'sigmoid' : 'softmax');
  const groups = () => {
    const count = c.int('n_group');
    const keep = c.int('topk_group');
    const experts = c.int('n_routed_experts');
    if (experts % count !== 0 || keep > count) {
      unsupported(c, 'n_group', `${experts} experts do not split into ${count} groups of which ${keep} are kept`);
    }
    return { count, keep };
  };
  if (method === 'noaux_tc' && scoring === 'sigmoid') {
    const { count, keep } = groups();
    return {
      policy: { kind: 'top-k', k },
      router: {
        scoring: 'sigmoid', selectionBias: true, normalize, scale,
        ...(count > 1 ? { groups: { count, keep, score: 'top2-sum' } } : {}),
      },
    };
  }
  if (scoring !== 'softmax') unsupported(c, 'scoring_func', `'${scoring}' scoring needs topk_method 'noaux_tc'`);
  // DeepSeek-V2's gate scales the weights only when it does not renormalise them; V3's always does.
  const policy = normalize ? topK(k, true, v3 ? scale : 1) : topK(k, false, scale);
  if (method === 'greedy') return { policy };
  if (method === 'group_limited_greedy') {
    const { count, keep } = groups();
    return { policy, router: { scoring: 'softmax', groups: { count, keep, score: 'max' } } };
  }
  return unsupported(c, 'topk_method', `'${method}' is not one of greedy, group_limited_greedy, noaux_tc`);
}

function deepseekSpec(c: ConfigReader, architecture: string, v3: boolean): ModelSpec {
  // YaRN (the released checkpoints' long-context RoPE) rotates the RoPE parts by its table and scales MLA's softmax
  // by mscale(factor, mscale_all_dim)^2 (rope-scaling.ts, build-graph.ts).
  const mla = mlaSpec(c);
  if (c.bool('attention_bias', false)) unsupported(c, 'attention_bias', 'MLA projections with biases are not supported');
  const experts = c.int('n_routed_experts');
  const firstMoe = c.int('first_k_dense_replace', 0, true);
  const every = c.int('moe_layer_freq', 1);
  const ffn = c.int('moe_intermediate_size');
  const sharedExperts = c.int('n_shared_experts', 0, true);
  const { policy, router } = routing(c, v3);
  const moe: MoELayerSpec = {
    kind: 'moe',
    experts,
    ffn,
    policy,
    ...(router ? { router } : {}),
    ...(sharedExperts > 0 ? { shared: { ffn: ffn * sharedExperts, gated: false } } : {}),
  };
  const layer = (i: number): FeedForwardSpec =>
    i < firstMoe || i % every !== 0 ? { kind: 'dense', ffn: c.int('intermediate_size') } : moe;
  const heads = c.int('num_attention_heads');
  return {
    ...llamaFamilySpec(c, architecture, layer, { qkNorm: 'none', attentionBias: false }),
    // Every head reads the one latent; headDim is a query head's width, [nope | rope].
    kvHeads: heads,
    headDim: mla.nopeDim + mla.ropeDim,
    // HF's apply_rotary_pos_emb de-interleaves q and k before rotate_half: adjacent pairs rotate together.
    ropeStyle: 'pairs',
    mla,
  };
}

const naming = hfNaming({ ...hfMlpExpertNames, shared: 'mlp.shared_experts' });

export const deepseekV2: Architecture = {
  name: 'deepseek-v2',
  matchesHf: (c) => modelType(c) === 'deepseek_v2',
  fromHfConfig: (c) => deepseekSpec(c, 'deepseek-v2', false),
  hfNaming: naming,
};

export const deepseekV3: Architecture = {
  name: 'deepseek-v3',
  matchesHf: (c) => modelType(c) === 'deepseek_v3',
  fromHfConfig: (c) => deepseekSpec(c, 'deepseek-v3', true),
  hfNaming: naming,
};
