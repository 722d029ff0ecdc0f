// GLM-4.5 / GLM-4.6 / GLM-4.7 MoE: sigmoid router with a selection bias and group-limited top-k, kept weights
// renormalised and scaled, shared experts, the first layers dense, half of each head rotated.
import { DynamoeError } from '../../errors';
import { Architecture, llamaFamilySpec, modelType } from '../architecture';
import { hfMlpExpertNames, hfNaming } from '../naming';
import { sigmoidMoeLayers } from './sigmoid-moe-layers';

export const glm4Moe: Architecture = {
  name: 'glm4-moe',
  matchesHf: (c) => modelType(c) === 'glm4_moe',
  fromHfConfig: (c) => {
    const layer = sigmoidMoeLayers(c, true);
    const spec = llamaFamilySpec(c, 'glm4-moe', layer, { qkNorm: c.bool('use_qk_norm', false) ? 'per-head' : 'none' });
    // partial_rotary_factor of each head's dimensions rotate (0.5 in the released configs).
    const rotaryDim = Math.round(spec.headDim * c.number('partial_rotary_factor', 0.5));
    if (rotaryDim < 2 || rotaryDim % 2 !== 0 || rotaryDim > spec.headDim) {
      throw new DynamoeError(
        'ERR_DYNAMOE_FORMAT',
        `${c.source}: partial_rotary_factor gives ${rotaryDim} rotary dimensions of a ${spec.headDim}-wide head (must be even)`,
      );
    }
    return { ...spec, rotaryDim };
  },
  hfNaming: hfNaming({ ...hfMlpExpertNames, shared: 'mlp.shared_experts' }),
};
