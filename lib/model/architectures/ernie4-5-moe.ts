// ERNIE 4.5 MoE (Baidu's ERNIE-4.5-21B-A3B, -300B-A47B): Llama attention whose RoPE rotates adjacent pairs, a
// softmax router that ranks the probabilities plus a selection bias (moe_statics) and renormalises the kept ones,
// ungated shared experts, and MoE layers from moe_layer_start_index to moe_layer_end_index every moe_layer_interval
// layers, dense MLPs elsewhere. (HF clamps the renormalising sum at moe_norm_min, 1e-12; the kept probabilities of a
// softmax never sum that low unless the bias ranks near-zero experts first, which the released biases do not.)
import { DynamoeError } from '../../errors';
import { Architecture, llamaFamilySpec, modelType } from '../architecture';
import { ConfigReader } from '../config-reader';
import { hfMlpExpertNames, hfNaming } from '../naming';
import { FeedForwardSpec, RouterSpec } from '../spec';

function unsupported(c: ConfigReader, key: string, why: string): never {
  throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: '${key}': ${why}`);
}

export const ernie45Moe: Architecture = {
  name: 'ernie4_5-moe',
  matchesHf: (c) => modelType(c) === 'ernie4_5_moe',
  fromHfConfig: (c) => {
    if (c.bool('use_bias', false)) unsupported(c, 'use_bias', 'linear layers with biases are not supported');
    const layers = c.layerCount('num_hidden_layers');
    const experts = c.int('moe_num_experts');
    const ffn = c.int('moe_intermediate_size');
    const shared = c.int('moe_num_shared_experts', 0, true);
    const start = c.int('moe_layer_start_index', 1, true);
    const endIndex = c.number('moe_layer_end_index', -1);
    const end = endIndex === -1 ? layers - 1 : endIndex;
    const interval = c.int('moe_layer_interval', 1);
    const router: RouterSpec = { scoring: 'softmax', selectionBias: true, normalize: true, scale: 1 };
    const layer = (i: number): FeedForwardSpec =>
      (i + 1) % interval === 0 && i >= start && i <= end
        ? {
            kind: 'moe',
            experts,
            ffn,
            policy: { kind: 'top-k', k: c.int('moe_k') },
            router,
            ...(shared > 0 ? { shared: { ffn: ffn * shared, gated: false } } : {}),
          }
        : { kind: 'dense', ffn: c.int('intermediate_size') };
    const spec = llamaFamilySpec(c, 'ernie4_5-moe', layer, { attentionBias: false });
    // HF's default theta for the family; RoPE on adjacent pairs (its rotate_half interleaves).
    return { ...spec, ropeTheta: c.number('rope_theta', 500000), ropeStyle: 'pairs' };
  },
  hfNaming: hfNaming({
    ...hfMlpExpertNames,
    shared: 'mlp.shared_experts',
    selectionBias: 'mlp.moe_statics.e_score_correction_bias',
  }),
};
