// Qwen2-MoE (Qwen1.5-MoE): q/k/v biases, a shared expert scaled by sigmoid(w . x), some layers dense.
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { ConfigReader } from '../config-reader';
import { hfMlpExpertNames, hfNaming } from '../naming';
import { FeedForwardSpec } from '../spec';

/** Qwen's rule for which layers are sparse (shared with Qwen3-MoE and Qwen3-VL-MoE). */
export function qwenLayer(c: ConfigReader, index: number, shared: boolean, normalizeByDefault = false): FeedForwardSpec {
  const experts = c.int('num_experts', 0, true);
  const step = c.int('decoder_sparse_step', 1);
  const sparse = experts > 0 && !c.intList('mlp_only_layers').includes(index) && (index + 1) % step === 0;
  if (!sparse) return { kind: 'dense', ffn: c.int('intermediate_size') };
  const policy = topK(c.int('num_experts_per_tok'), c.bool('norm_topk_prob', normalizeByDefault));
  const layer: FeedForwardSpec = { kind: 'moe', experts, ffn: c.int('moe_intermediate_size'), policy };
  if (shared) layer.shared = { ffn: c.int('shared_expert_intermediate_size'), gated: true };
  return layer;
}

export const qwen2Moe: Architecture = {
  name: 'qwen2-moe',
  matchesHf: (c) => modelType(c) === 'qwen2_moe',
  fromHfConfig: (c) => llamaFamilySpec(c, 'qwen2-moe', (i) => qwenLayer(c, i, true), { attentionBias: true }),
  hfNaming: hfNaming({ ...hfMlpExpertNames, shared: 'mlp.shared_expert', sharedGate: 'mlp.shared_expert_gate' }),
};
