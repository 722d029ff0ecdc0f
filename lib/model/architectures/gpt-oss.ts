// gpt-oss (OpenAI gpt-oss-20b/120b): attention with q/k/v/o biases, a learned sink logit per head and a sliding
// window on alternate layers, YaRN RoPE; every layer MoE, routed by top-k of the biased router logits with a softmax
// over the kept k, experts with biases and a clamped SwiGLU.
import { DynamoeError } from '../../errors';
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { ConfigReader } from '../config-reader';
import { hfNaming } from '../naming';
import { gptOssExpertName, gptOssHfStore } from './gpt-oss-store';

/** The clamped SwiGLU's sigmoid slope: a constant of the modeling code, not a config key. */
export const GPT_OSS_SWIGLU_ALPHA = 1.702;

// Per layer, whether it attends through the sliding window; HF's default alternates, starting sliding.
function slidingLayers(c: ConfigReader, layers: number): boolean[] {
  if (!c.has('layer_types')) return Array.from({ length: layers }, (_, i) => i % 2 === 0);
  const types = c.raw('layer_types');
  if (!Array.isArray(types) || types.length !== layers) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: 'layer_types' must list ${layers} layer types`);
  }
  return types.map((type, i) => {
    if (type !== 'sliding_attention' && type !== 'full_attention') {
      const shown = JSON.stringify(type)?.slice(0, 40);
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: 'layer_types'[${i}] must be 'sliding_attention' or 'full_attention', got ${shown}`);
    }
    return type === 'sliding_attention';
  });
}

const naming = hfNaming({
  router: 'mlp.router',
  experts: 'mlp.experts',
  expertMatrices: { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' },
  dense: 'mlp',
});

export const gptOss: Architecture = {
  name: 'gpt-oss',
  matchesHf: (c) => modelType(c) === 'gpt_oss',
  fromHfConfig: (c) => {
    const experts = c.int('num_local_experts');
    const k = c.has('num_experts_per_tok') ? c.int('num_experts_per_tok') : c.int('experts_per_token');
    if (k > experts) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: ${k} experts per token is above num_local_experts (${experts})`);
    }
    const ffn = c.int('intermediate_size');
    const limit = c.number('swiglu_limit', 7);
    if (!(limit > 0)) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: 'swiglu_limit' must be positive`);
    const attentionBias = c.bool('attention_bias', true);
    const spec = llamaFamilySpec(
      c,
      'gpt-oss',
      () => ({
        kind: 'moe',
        experts,
        ffn,
        policy: topK(k, true),
        router: { scoring: 'softmax-of-kept' },
        routerBias: true,
        expertBiases: true,
        activation: { kind: 'swiglu-oai', limit, alpha: GPT_OSS_SWIGLU_ALPHA },
      }),
      { attentionBias },
    );
    const window = c.int('sliding_window', 128);
    spec.attentionWindows = slidingLayers(c, spec.layers.length).map((sliding) => (sliding ? window : 0));
    spec.attentionSinks = true;
    spec.outputBias = attentionBias;
    return spec;
  },
  hfNaming: {
    ...naming,
    experts: { stacked: true, name: (layer, matrix) => gptOssExpertName(layer, matrix, false) },
    expertBias: (layer, matrix) => gptOssExpertName(layer, matrix, true),
  },
  hfStore: (store, spec) => gptOssHfStore(store, spec.layers.length),
};
