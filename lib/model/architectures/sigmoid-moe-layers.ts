// DeepSeek-V3's MoE block as its followers configure it (GLM-4.5, dots.llm1): the first first_k_dense_replace layers
// dense, then MoE layers routed by a sigmoid router ranked with a selection bias (e_score_correction_bias) and
// optional expert groups, the kept weights renormalised (norm_topk_prob) and scaled (routed_scaling_factor), with
// ungated shared experts (n_shared_experts x moe_intermediate_size).
import { ConfigReader } from '../config-reader';
import { FeedForwardSpec, RouterSpec } from '../spec';

export function sigmoidMoeLayers(c: ConfigReader, normalizeByDefault: boolean): (index: number) => FeedForwardSpec {
  const experts = c.int('n_routed_experts');
  const ffn = c.int('moe_intermediate_size');
  const firstMoe = c.int('first_k_dense_replace', 0, true);
  const sharedExperts = c.int('n_shared_experts', 0, true);
  const groups = c.int('n_group', 1);
  const router: RouterSpec = {
    scoring: 'sigmoid',
    selectionBias: true,
    ...(groups > 1 ? { groups: { count: groups, keep: c.int('topk_group', groups), score: 'top2-sum' as const } } : {}),
    normalize: c.bool('norm_topk_prob', normalizeByDefault),
    scale: c.number('routed_scaling_factor', 1),
  };
  return (i) =>
    i < firstMoe
      ? { kind: 'dense', ffn: c.int('intermediate_size') }
      : {
          kind: 'moe',
          experts,
          ffn,
          policy: { kind: 'top-k', k: c.int('num_experts_per_tok') },
          router,
          ...(sharedExperts > 0 ? { shared: { ffn: ffn * sharedExperts, gated: false } } : {}),
        };
}
