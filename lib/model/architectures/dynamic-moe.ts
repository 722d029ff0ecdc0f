// The seed paper's Dynamic MoE checkpoint: Llama-style, MoE every `expert_frequency` layers, trained with top-p.
import { Architecture, llamaFamilySpec } from '../architecture';
import { hfNaming } from '../naming';

export const dynamicMoe: Architecture = {
  name: 'dynamic-moe',
  // Recognised by its routing keys: the released configs reuse a Llama model_type.
  matchesHf: (c) => c.has('top_p_threshold') && c.has('num_experts'),
  fromHfConfig: (c) => {
    const experts = c.int('num_experts');
    const every = c.int('expert_frequency', 1);
    const p = c.number('top_p_threshold');
    const ffn = c.int('intermediate_size');
    const expertFfn = c.int('moe_intermediate_size', ffn);
    return llamaFamilySpec(c, 'dynamic-moe', (i) =>
      i % every === 0 ? { kind: 'moe', experts, ffn: expertFfn, policy: { kind: 'top-p', p } } : { kind: 'dense', ffn },
    );
  },
  hfNaming: hfNaming({
    router: 'mlp.router',
    experts: 'mlp.experts',
    expertMatrices: { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' },
    dense: 'mlp.mlp',
  }),
};
