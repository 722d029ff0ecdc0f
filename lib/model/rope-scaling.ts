// Scaled RoPE: reading Hugging Face's `rope_scaling` (YaRN only; other kinds are refused) and the per-dimension
// frequency table and cos/sin factor the native rope op takes for it.
import { DynamoeError } from '../errors';
import { ConfigReader } from './config-reader';
import { Llama3RopeSpec, RopeScalingSpec } from './spec';

// YaRN's default attention factor for a context `scale` times longer (HF get_mscale).
function mscale(scale: number, m = 1): number {
  return scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1;
}

/** The RoPE scaling of a config.json: undefined when it has none, YaRN's parameters, else ERR_DYNAMOE_UNSUPPORTED. */
export function hfRopeScaling(c: ConfigReader, maxContext: number): RopeScalingSpec | undefined {
  if (!c.has('rope_scaling')) return undefined;
  const scaling = c.nested('rope_scaling');
  const kind = scaling.string('rope_type', scaling.string('type', 'default'));
  if (kind === 'default') return undefined;
  if (kind !== 'yarn') {
    throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: 'rope_scaling' of type '${kind}' is not supported (only 'yarn')`);
  }
  const factor = scaling.number('factor');
  if (!(factor > 0)) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: rope_scaling 'factor' must be positive`);
  // DeepSeek-V3's mscale / mscale_all_dim ratio, else 0.1 ln(factor) + 1, unless the config gives the factor.
  const m = scaling.number('mscale', 0);
  const mAll = scaling.number('mscale_all_dim', 0);
  const defaultAttention = m && mAll ? mscale(factor, m) / mscale(factor, mAll) : mscale(factor);
  return {
    kind: 'yarn',
    factor,
    // HF reads these with `or`: a 0 falls back to the default too.
    betaFast: scaling.number('beta_fast', 32) || 32,
    betaSlow: scaling.number('beta_slow', 1) || 1,
    originalContext: scaling.int('original_max_position_embeddings', maxContext),
    truncate: scaling.bool('truncate', true),
    attentionFactor: scaling.number('attention_factor', defaultAttention),
    // DeepSeek-V2/V3 (HF DeepseekV2Attention): softmax_scale *= mscale(factor, mscale_all_dim)^2 when it is set.
    ...(mAll ? { softmaxFactor: mscale(factor, mAll) ** 2 } : {}),
  };
}

/**
 * YaRN's inverse frequency of each rotated pair i < headDim / 2 and its cos/sin factor (HF _compute_yarn_parameters):
 * pairs that turn more than betaFast times over the original context keep theta^(-2i/d), pairs that turn fewer
 * than betaSlow times are divided by the factor, and a linear ramp blends the ones between.
 */
export function yarnRopeTable(
  scaling: RopeScalingSpec,
  headDim: number,
  theta: number,
): { inverseFrequencies: Float64Array; scale: number } {
  const dim = headDim;
  // The dimension at which a pair turns `rotations` times over the original context.
  const correctionDim = (rotations: number) =>
    (dim * Math.log(scaling.originalContext / (rotations * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = correctionDim(scaling.betaFast);
  let high = correctionDim(scaling.betaSlow);
  if (scaling.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, dim - 1);
  if (low === high) high += 0.001; // HF's guard against a zero-width ramp
  const half = dim / 2;
  const inverseFrequencies = new Float64Array(half);
  for (let i = 0; i < half; i++) {
    const extrapolation = theta ** ((-2 * i) / dim);
    const interpolation = extrapolation / scaling.factor;
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolationWeight = 1 - ramp;
    inverseFrequencies[i] = interpolation * (1 - extrapolationWeight) + extrapolation * extrapolationWeight;
  }
  return { inverseFrequencies, scale: scaling.attentionFactor };
}

/** Llama 3's inverse frequency of each rotated pair (HF _compute_llama3_parameters). */
export function llama3RopeTable(scaling: Llama3RopeSpec, rotaryDim: number, theta: number): Float64Array {
  const lowWavelength = scaling.originalContext / scaling.lowFreqFactor;
  const highWavelength = scaling.originalContext / scaling.highFreqFactor;
  return Float64Array.from({ length: rotaryDim / 2 }, (_, i) => {
    const frequency = theta ** ((-2 * i) / rotaryDim);
    const wavelength = (2 * Math.PI) / frequency;
    if (wavelength < highWavelength) return frequency;
    if (wavelength > lowWavelength) return frequency / scaling.factor;
    const smooth = (scaling.originalContext / wavelength - scaling.lowFreqFactor) / (scaling.highFreqFactor - scaling.lowFreqFactor);
    return (1 - smooth) * (frequency / scaling.factor) + smooth * frequency;
  });
}

/**
 * The RoPE scaling of GGUF metadata (llama.cpp's `<arch>.rope.scaling.*` keys): undefined for none, YaRN's
 * parameters, else ERR_DYNAMOE_UNSUPPORTED. llama.cpp always rounds the ramp's bounds; `truncate` false keeps the
 * Hugging Face model's exact ramp for families that define it so (gpt-oss).
 */
export function ggufRopeScaling(
  meta: ConfigReader,
  key: (name: string) => string,
  maxContext: number,
  truncate: boolean,
): RopeScalingSpec | undefined {
  const kind = meta.string(key('rope.scaling.type'), 'none');
  if (kind === 'none') return undefined;
  if (kind !== 'yarn') meta.refuse(key('rope.scaling.type'), `RoPE scaling '${kind}' is not supported (only 'yarn')`);
  const factor = meta.number(key('rope.scaling.factor'));
  if (!(factor > 0)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${meta.source}: '${key('rope.scaling.factor')}' must be positive`);
  }
  return {
    kind: 'yarn',
    factor,
    betaFast: meta.number(key('rope.scaling.yarn_beta_fast'), 32),
    betaSlow: meta.number(key('rope.scaling.yarn_beta_slow'), 1),
    originalContext: meta.int(key('rope.scaling.original_context_length'), maxContext),
    truncate,
    attentionFactor: mscale(factor),
  };
}

/**
 * DeepSeek's YaRN in a deepseek2 GGUF: llama.cpp's converter keeps mscale_all_dim as
 * `rope.scaling.yarn_log_multiplier` = 0.1 x mscale_all_dim, and llama.cpp takes mscale == mscale_all_dim (the
 * released checkpoints'), so cos and sin keep factor 1 and the softmax scale gains mscale(factor, mscale_all_dim)^2,
 * as config.json's rope_scaling gives. Without the key (DeepSeek-derived models without mscale_all_dim), YaRN's
 * default cos/sin factor and no softmax factor, as Hugging Face reads such a config.
 */
export function ggufDeepseekYarn(meta: ConfigReader, key: (name: string) => string, scaling: RopeScalingSpec): RopeScalingSpec {
  const attentionFactor = meta.number(key('rope.scaling.attn_factor'), 1);
  if (attentionFactor !== 1) {
    meta.refuse(key('rope.scaling.attn_factor'), 'a deepseek2 YaRN attention factor other than 1 is not supported');
  }
  const logMultiplier = meta.number(key('rope.scaling.yarn_log_multiplier'), 0);
  if (!(logMultiplier >= 0)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${meta.source}: '${key('rope.scaling.yarn_log_multiplier')}' must be >= 0`);
  }
  if (logMultiplier === 0) return scaling;
  const mscaleAllDim = logMultiplier / 0.1;
  return { ...scaling, attentionFactor: 1, softmaxFactor: mscale(scaling.factor, mscaleAllDim) ** 2 };
}
