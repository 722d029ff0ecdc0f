// Mixtral: every layer is MoE, top-k (k = num_experts_per_tok) with the kept weights renormalised.
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { hfNaming } from '../naming';

export const mixtral: Architecture = {
  name: 'mixtral',
  matchesHf: (c) => modelType(c) === 'mixtral',
  fromHfConfig: (c) => {
    const experts = c.int('num_local_experts');
    const policy = topK(c.int('num_experts_per_tok'), true);
    return llamaFamilySpec(c, 'mixtral', () => ({ kind: 'moe', experts, ffn: c.int('intermediate_size'), policy }));
  },
  hfNaming: hfNaming({
    router: 'block_sparse_moe.gate',
    experts: 'block_sparse_moe.experts',
    expertMatrices: { gate: 'w1', up: 'w3', down: 'w2' },
    dense: 'mlp',
  }),
};
