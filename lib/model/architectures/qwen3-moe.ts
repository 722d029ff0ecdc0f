// Qwen3-MoE: RMSNorm of each q and k head before RoPE, no shared expert.
import { Architecture, llamaFamilySpec, modelType } from '../architecture';
import { hfMlpExpertNames, hfNaming } from '../naming';
import { qwenLayer } from './qwen2-moe';

export const qwen3Moe: Architecture = {
  name: 'qwen3-moe',
  matchesHf: (c) => modelType(c) === 'qwen3_moe',
  fromHfConfig: (c) => llamaFamilySpec(c, 'qwen3-moe', (i) => qwenLayer(c, i, false), { qkNorm: 'per-head' }),
  hfNaming: hfNaming(hfMlpExpertNames),
};
