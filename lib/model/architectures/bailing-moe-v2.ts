// Bailing MoE V2 (inclusionAI's Ling 2.0 / Ring 2.0: Ling-mini-2.0, Ling-flash-2.0, Ling-1T): q, k and v fused in one
// `attention.query_key_value` projection, per-head q/k RMSNorm before RoPE on the first half of each head
// (partial_rotary_factor), and DeepSeek-V3's MoE block (a sigmoid router ranked with a selection bias, `expert_bias`,
// and expert groups; the kept weights renormalised and scaled; ungated shared experts; the first layers dense).
// The last num_nextn_predict_layers blocks after num_hidden_layers are multi-token-prediction heads, not run.
import { DynamoeError } from '../../errors';
import { TensorStore } from '../../formats/tensor-store';
import { Architecture, llamaFamilySpec, modelType, rotaryDimOf } from '../architecture';
import { ConfigReader } from '../config-reader';
import { CheckpointNaming, hfMlpExpertNames, hfNaming, LayerTensor } from '../naming';
import { RowSplitStore } from '../row-split-store';
import { FeedForwardSpec, ModelSpec, RouterSpec } from '../spec';

const at = (layer: number, name: string) => `model.layers.${layer}.attention.${name}`;
const FUSED = 'query_key_value';

function unsupported(c: ConfigReader, key: string, why: string): never {
  throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: '${key}': ${why}`);
}

function moeLayers(c: ConfigReader): (index: number) => FeedForwardSpec {
  const experts = c.int('num_experts');
  const ffn = c.int('moe_intermediate_size');
  const k = c.int('num_experts_per_tok');
  if (k > experts) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: ${k} experts per token is above num_experts (${experts})`);
  const groups = c.int('n_group', 1);
  // The shared experts as one MLP: moe_shared_expert_intermediate_size wide (all of them), else that many experts' width.
  const sharedExperts = c.int('num_shared_experts', 0, true);
  const sharedFfn = sharedExperts === 0 ? 0 : c.int('moe_shared_expert_intermediate_size', ffn * sharedExperts);
  const router: RouterSpec = {
    scoring: 'sigmoid',
    selectionBias: c.bool('moe_router_enable_expert_bias', true),
    ...(groups > 1 ? { groups: { count: groups, keep: c.int('topk_group', groups), score: 'top2-sum' as const } } : {}),
    // The family's gate renormalises whenever it keeps more than one expert.
    normalize: k > 1,
    scale: c.number('routed_scaling_factor', 1),
  };
  const firstMoe = c.int('first_k_dense_replace', 0, true);
  return (i) =>
    i < firstMoe
      ? { kind: 'dense', ffn: c.int('intermediate_size') }
      : {
          kind: 'moe', experts, ffn, policy: { kind: 'top-k', k }, router,
          ...(sharedFfn > 0 ? { shared: { ffn: sharedFfn, gated: false } } : {}),
        };
}

const base = hfNaming({ ...hfMlpExpertNames, shared: 'mlp.shared_experts', selectionBias: 'mlp.gate.expert_bias' });
// Attention tensors under their own module names; q/k/v (and their biases) are the rows of the fused projection.
const attention: Partial<Record<LayerTensor, string>> = {
  q: `${FUSED}.weight[q]`, k: `${FUSED}.weight[k]`, v: `${FUSED}.weight[v]`,
  q_bias: `${FUSED}.bias[q]`, k_bias: `${FUSED}.bias[k]`, v_bias: `${FUSED}.bias[v]`,
  o: 'dense.weight', q_norm: 'query_layernorm.weight', k_norm: 'key_layernorm.weight',
};
const naming: CheckpointNaming = {
  ...base,
  embed: 'model.word_embeddings.weight',
  layer: (index, tensor) => (attention[tensor] ? at(index, attention[tensor] as string) : base.layer(index, tensor)),
};

// Each layer's query_key_value weight (and bias) presented as its q, k and v rows.
function splitQkv(store: TensorStore, spec: ModelSpec): RowSplitStore {
  const rows = { q: spec.heads * spec.headDim, k: spec.kvHeads * spec.headDim, v: spec.kvHeads * spec.headDim };
  return new RowSplitStore(store, spec.layers.flatMap((_, layer) =>
    (['weight', 'bias'] as const).map((kind) => ({
      fused: at(layer, `${FUSED}.${kind}`),
      parts: (['q', 'k', 'v'] as const).map((part) => ({ name: at(layer, `${FUSED}.${kind}[${part}]`), rows: rows[part] })),
    })),
  ));
}

export const bailingMoeV2: Architecture = {
  name: 'bailing-moe-v2',
  // The released configs say model_type 'bailing_moe' (Ling 1.0's too) and tell V2 apart by its architectures entry.
  matchesHf: (c) =>
    modelType(c) === 'bailing_moe_v2' ||
    ((modelType(c) === 'bailing_moe' || !c.has('model_type')) && Array.isArray(c.raw('architectures')) &&
      (c.raw('architectures') as unknown[]).includes('BailingMoeV2ForCausalLM')),
  fromHfConfig: (c) => {
    if (c.bool('use_bias', false)) unsupported(c, 'use_bias', 'biases on the output and MLP projections are not supported');
    const scoring = c.string('score_function', c.string('scoring_func', 'sigmoid'));
    if (scoring !== 'sigmoid') unsupported(c, 'score_function', `only sigmoid scoring is supported, not '${scoring}'`);
    const spec = llamaFamilySpec(c, 'bailing-moe-v2', moeLayers(c), {
      qkNorm: c.bool('use_qk_norm', false) ? 'per-head' : 'none',
      attentionBias: c.bool('use_qkv_bias', false),
    });
    const rotaryDim = rotaryDimOf(c, spec.headDim, 0.5);
    return { ...spec, ...(rotaryDim < spec.headDim ? { rotaryDim } : {}) };
  },
  hfNaming: naming,
  hfStore: splitQkv,
};
