// GLM-4.5 / GLM-4.6 / GLM-4.7 MoE: sigmoid router with a selection bias and group-limited top-k, kept weights
// renormalised and scaled, shared experts, the first layers dense, half of each head rotated.
import { Architecture, llamaFamilySpec, modelType, rotaryDimOf } from '../architecture';
import { hfMlpExpertNames, hfNaming } from '../naming';
import { sigmoidMoeLayers } from './sigmoid-moe-layers';

export const glm4Moe: Architecture = {
  name: 'glm4-moe',
  matchesHf: (c) => modelType(c) === 'glm4_moe',
  fromHfConfig: (c) => {
    const layer = sigmoidMoeLayers(c, true);
    const spec = llamaFamilySpec(c, 'glm4-moe', layer, { qkNorm: c.bool('use_qk_norm', false) ? 'per-head' : 'none' });
    // partial_rotary_factor of each head's dimensions rotate (0.5 in the released configs).
    const rotaryDim = rotaryDimOf(c, spec.headDim, 0.5);
    return { ...spec, rotaryDim };
  },
  hfNaming: hfNaming({ ...hfMlpExpertNames, shared: 'mlp.shared_experts' }),
};
