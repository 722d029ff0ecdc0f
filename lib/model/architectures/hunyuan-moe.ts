// Tencent Hunyuan-A13B (hunyuan_v1_moe): Llama attention with per-head q/k RMSNorm after RoPE, every layer MoE with
// a softmax top-k router whose kept weights are renormalised and an always-on shared MLP, RoPE's base raised by the
// NTK "alpha" of rope_scaling (theta * alpha^(d / (d - 2))). The per-layer keys (moe_topk, num_experts,
// moe_intermediate_size, num_shared_expert) may be lists with one entry per layer.
import { DynamoeError } from '../../errors';
import { Architecture, llamaFamilySpec, modelType, topK } from '../architecture';
import { ConfigReader } from '../config-reader';
import { hfMlpExpertNames, hfNaming, LayerTensor } from '../naming';
import { FeedForwardSpec } from '../spec';

function unsupported(c: ConfigReader, key: string, why: string): never {
  throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: '${key}': ${why}`);
}

// A per-layer setting: one number for every layer, or a list with one per layer.
function perLayer(c: ConfigReader, key: string, layer: number, fallback?: number): number {
  const raw = c.raw(key);
  if (!Array.isArray(raw)) return c.int(key, fallback, true);
  const value: unknown = raw[layer];
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: '${key}' must hold a non-negative integer for layer ${layer}, got ${JSON.stringify(value)}`);
  }
  return value;
}

// The RoPE base: rope_scaling's NTK alpha raises it (the released config: alpha 1000, type 'dynamic', factor 1).
function ropeBase(c: ConfigReader, headDim: number): number {
  const theta = c.number('rope_theta', 10000);
  if (!c.has('rope_scaling')) return theta;
  const scaling = c.nested('rope_scaling');
  const kind = scaling.string('rope_type', scaling.string('type', 'default'));
  const alpha = scaling.number('alpha', 0);
  if (kind === 'default' && !alpha) return theta;
  if (kind !== 'dynamic' || !(alpha > 0) || scaling.number('factor', 1) !== 1) {
    unsupported(c, 'rope_scaling', `only the NTK alpha of a 'dynamic' rope_scaling with factor 1 is supported, not ${JSON.stringify(c.raw('rope_scaling')).slice(0, 120)}`);
  }
  return theta * alpha ** (headDim / (headDim - 2));
}

const base = hfNaming({ ...hfMlpExpertNames, router: 'mlp.gate.wg', shared: 'mlp.shared_mlp' });
const norms: Partial<Record<LayerTensor, string>> = { q_norm: 'self_attn.query_layernorm.weight', k_norm: 'self_attn.key_layernorm.weight' };

export const hunyuanMoe: Architecture = {
  name: 'hunyuan-moe',
  // Tencent's own configs said model_type 'hunyuan' before transformers took the family in as hunyuan_v1_moe.
  matchesHf: (c) =>
    modelType(c) === 'hunyuan_v1_moe' ||
    (modelType(c) === 'hunyuan' && Array.isArray(c.raw('architectures')) &&
      (c.raw('architectures') as unknown[]).includes('HunYuanMoEV1ForCausalLM')),
  fromHfConfig: (c) => {
    if (c.bool('use_cla', false)) unsupported(c, 'use_cla', 'cross-layer attention is not supported');
    if (c.int('moe_layer_num_skipped', 0, true) > 0) unsupported(c, 'moe_layer_num_skipped', 'dense leading layers are not supported');
    const layer = (i: number): FeedForwardSpec => {
      const experts = perLayer(c, 'num_experts', i);
      const k = perLayer(c, 'moe_topk', i);
      if (experts < 1 || k < 1 || k > experts) {
        throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: layer ${i} keeps ${k} of ${experts} experts`);
      }
      const sharedFfn = c.int('intermediate_size') * perLayer(c, 'num_shared_expert', i, 1);
      return {
        kind: 'moe', experts, ffn: perLayer(c, 'moe_intermediate_size', i, c.int('intermediate_size')), policy: topK(k, true),
        ...(sharedFfn > 0 ? { shared: { ffn: sharedFfn, gated: false } } : {}),
      };
    };
    const headDim = c.int('head_dim', c.int('attention_head_dim', Math.floor(c.int('hidden_size') / c.int('num_attention_heads'))));
    const spec = llamaFamilySpec(c.without('rope_scaling'), 'hunyuan-moe', layer, { qkNorm: 'per-head' });
    // Llama's attention_bias covers o_proj as well as q, k and v.
    return { ...spec, headDim, ropeTheta: ropeBase(c, headDim), qkNormAfterRope: true, ...(spec.attentionBias ? { outputBias: true } : {}) };
  },
  hfNaming: { ...base, layer: (index, tensor) => (norms[tensor] ? `model.layers.${index}.${norms[tensor]}` : base.layer(index, tensor)) },
};
