// MiniMax-M2: every layer MoE with Mixtral's tensor names, a sigmoid router ranked with a selection bias
// (block_sparse_moe.e_score_correction_bias) and the kept weights renormalised; q/k RMSNorm over the whole projection
// (qk_norm_type 'per_layer'); RoPE on halves of the first rotary_dim dimensions of each head.
import { DynamoeError } from '../../errors';
import { Architecture, llamaFamilySpec, modelType, rotaryDimOf } from '../architecture';
import { ConfigReader } from '../config-reader';
import { hfNaming } from '../naming';
import { ModelSpec, RouterSpec } from '../spec';

function unsupported(c: ConfigReader, key: string, why: string): never {
  throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: '${key}': ${why}`);
}

function qkNorm(c: ConfigReader): ModelSpec['qkNorm'] {
  if (!c.bool('use_qk_norm', true)) return 'none';
  const type = c.string('qk_norm_type', 'per_layer');
  if (type === 'per_layer') return 'full';
  if (type === 'per_head') return 'per-head';
  return unsupported(c, 'qk_norm_type', `'${type}' is not per_layer or per_head`);
}

export const minimaxM2: Architecture = {
  name: 'minimax-m2',
  matchesHf: (c) => modelType(c) === 'minimax_m2',
  fromHfConfig: (c) => {
    const scoring = c.string('scoring_func', 'sigmoid');
    if (scoring !== 'sigmoid') unsupported(c, 'scoring_func', `only sigmoid scoring is supported, not '${scoring}'`);
    if (c.int('shared_intermediate_size', 0, true) > 0) unsupported(c, 'shared_intermediate_size', 'shared experts are not supported');
    const experts = c.int('num_local_experts');
    const router: RouterSpec = { scoring: 'sigmoid', selectionBias: c.bool('use_routing_bias', true), normalize: true, scale: 1 };
    const spec = llamaFamilySpec(
      c,
      'minimax-m2',
      () => ({ kind: 'moe', experts, ffn: c.int('intermediate_size'), policy: { kind: 'top-k', k: c.int('num_experts_per_tok') }, router }),
      { qkNorm: qkNorm(c), attentionBias: false },
    );
    // rotary_dim of each head's leading dimensions rotate (64 of 128 in the released config).
    const rotaryDim = rotaryDimOf(c, spec.headDim, 1, 'rotary_dim');
    return { ...spec, ropeTheta: c.number('rope_theta', 5000000), ...(rotaryDim < spec.headDim ? { rotaryDim } : {}) };
  },
  hfNaming: hfNaming({
    router: 'block_sparse_moe.gate',
    experts: 'block_sparse_moe.experts',
    expertMatrices: { gate: 'w1', up: 'w3', down: 'w2' },
    dense: 'mlp',
    selectionBias: 'block_sparse_moe.e_score_correction_bias',
  }),
};
