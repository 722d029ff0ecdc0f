// dots.llm1 (rednote-hilab): Qwen3's attention (per-head q/k RMSNorm, RoPE on halves) with DeepSeek-V3's MoE block:
// a sigmoid router ranked with a selection bias (e_score_correction_bias), optional expert groups, the kept weights
// renormalised (norm_topk_prob) and scaled (routed_scaling_factor), ungated shared experts, the first
// first_k_dense_replace layers dense.
import { DynamoeError } from '../../errors';
import { Architecture, llamaFamilySpec, modelType } from '../architecture';
import { ConfigReader } from '../config-reader';
import { hfMlpExpertNames, hfNaming } from '../naming';
import { sigmoidMoeLayers } from './sigmoid-moe-layers';

// HF's layer_types: sliding attention from max_window_layers on when a sliding window is set (Qwen3's rule).
function hasSlidingLayers(c: ConfigReader, layers: number): boolean {
  if (c.has('layer_types')) {
    const types = c.raw('layer_types');
    return Array.isArray(types) && types.some((t) => t === 'sliding_attention');
  }
  const window = c.has('sliding_window') ? c.raw('sliding_window') : null;
  return window !== null && c.int('max_window_layers', layers, true) < layers;
}

export const dots1: Architecture = {
  name: 'dots1',
  matchesHf: (c) => modelType(c) === 'dots1',
  fromHfConfig: (c) => {
    const layers = c.layerCount('num_hidden_layers');
    if (hasSlidingLayers(c, layers)) {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: 'layer_types': dots1 with sliding-window layers is not supported`);
    }
    const layer = sigmoidMoeLayers(c, false);
    return llamaFamilySpec(c, 'dots1', layer, { qkNorm: 'per-head' });
  },
  hfNaming: hfNaming({ ...hfMlpExpertNames, shared: 'mlp.shared_experts' }),
};
