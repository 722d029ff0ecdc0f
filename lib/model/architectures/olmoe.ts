// OLMoE: top-8 of 64 without renormalisation, RMSNorm over the whole q and k projections.
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { hfMlpExpertNames, hfNaming } from '../naming';

export const olmoe: Architecture = {
  name: 'olmoe',
  matchesHf: (c) => modelType(c) === 'olmoe',
  fromHfConfig: (c) => {
    c.refuse('clip_qkv', 'q/k/v clipping is not supported yet');
    const policy = topK(c.int('num_experts_per_tok'), c.bool('norm_topk_prob', false));
    const experts = c.int('num_experts');
    const ffn = c.int('intermediate_size');
    return llamaFamilySpec(c, 'olmoe', () => ({ kind: 'moe', experts, ffn, policy }), { qkNorm: 'full' });
  },
  hfNaming: hfNaming(hfMlpExpertNames),
};
