// DeepSeek-MoE (v1): fine-grained experts, always-on shared experts, the first layers dense.
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { hfMlpExpertNames, hfNaming } from '../naming';

export const deepseekMoe: Architecture = {
  name: 'deepseek-moe',
  matchesHf: (c) => modelType(c) === 'deepseek',
  fromHfConfig: (c) => {
    const scoring = c.string('scoring_func', 'softmax');
    if (scoring !== 'softmax') c.refuse('scoring_func', `only softmax scoring is supported, not '${scoring}'`);
    const experts = c.int('n_routed_experts');
    const firstMoe = c.int('first_k_dense_replace', 0, true);
    const every = c.int('moe_layer_freq', 1);
    const ffn = c.int('moe_intermediate_size');
    const sharedExperts = c.int('n_shared_experts', 0, true);
    const policy = topK(c.int('num_experts_per_tok'), c.bool('norm_topk_prob', false), c.number('routed_scaling_factor', 1));
    return llamaFamilySpec(c, 'deepseek-moe', (i) => {
      if (i < firstMoe || i % every !== 0) return { kind: 'dense', ffn: c.int('intermediate_size') };
      return {
        kind: 'moe',
        experts,
        ffn,
        policy,
        ...(sharedExperts > 0 ? { shared: { ffn: ffn * sharedExperts, gated: false } } : {}),
      };
    });
  },
  hfNaming: hfNaming({ ...hfMlpExpertNames, shared: 'mlp.shared_experts' }),
};
