// What one supported architecture provides: how to recognise its config, read its spec, and name its tensors.
import { DynamoeError } from '../errors';
import { TensorStore } from '../formats/tensor-store';
import { RoutingPolicy } from '../policy/routing-policy';
import { ConfigReader } from './config-reader';
import { CheckpointNaming } from './naming';
import { hfRopeScaling } from './rope-scaling';
import { FeedForwardSpec, ModelSpec } from './spec';

export interface Architecture {
  /** dynamoe's name for it (shown by `inspect`). */
  name: string;
  /** True when a Hugging Face config.json describes this architecture. */
  matchesHf(config: ConfigReader): boolean;
  fromHfConfig(config: ConfigReader): ModelSpec;
  hfNaming: CheckpointNaming;
  /** Presents the checkpoint's tensors as the naming expects them, when the family stores them otherwise. */
  hfStore?(store: TensorStore, spec: ModelSpec): TensorStore;
}

/** Attention and embedding fields every Llama-family config.json has; `layers` come from the architecture. */
export function llamaFamilySpec(
  c: ConfigReader,
  architecture: string,
  layer: (index: number) => FeedForwardSpec,
  choices: Partial<Pick<ModelSpec, 'qkNorm' | 'attentionBias'>> = {},
): ModelSpec {
  const hidden = c.int('hidden_size');
  const heads = c.int('num_attention_heads');
  const layerCount = c.layerCount('num_hidden_layers');
  const maxContext = c.int('max_position_embeddings', 4096);
  const ropeScaling = hfRopeScaling(c, maxContext);
  return {
    architecture,
    vocab: c.int('vocab_size'),
    hidden,
    heads,
    kvHeads: c.int('num_key_value_heads', heads),
    headDim: c.int('head_dim', Math.floor(hidden / heads)),
    ropeTheta: c.number('rope_theta', 10000),
    ropeStyle: 'halves',
    rmsNormEpsilon: c.number('rms_norm_eps', 1e-6),
    qkNorm: choices.qkNorm ?? 'none',
    attentionBias: choices.attentionBias ?? c.bool('attention_bias', false),
    tiedEmbeddings: c.bool('tie_word_embeddings', false),
    maxContext,
    layers: Array.from({ length: layerCount }, (_, index) => layer(index)),
    ...(ropeScaling ? { ropeScaling } : {}),
  };
}

/**
 * The leading dimensions of each head that rotate, from partial_rotary_factor (or `rotaryKey` where the family
 * names the count itself); ERR_DYNAMOE_FORMAT unless even and within the head.
 */
export function rotaryDimOf(c: ConfigReader, headDim: number, defaultFactor: number, rotaryKey?: string): number {
  const rotaryDim = rotaryKey && c.has(rotaryKey)
    ? c.int(rotaryKey)
    : Math.round(headDim * c.number('partial_rotary_factor', defaultFactor));
  if (rotaryDim < 2 || rotaryDim % 2 !== 0 || rotaryDim > headDim) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: ${rotaryDim} rotary dimensions of a ${headDim}-wide head (must be even)`);
  }
  return rotaryDim;
}

/** Top-k softmax routing as most MoE models are trained. */
export function topK(k: number, normalize: boolean, scale = 1): RoutingPolicy {
  return scale === 1 ? { kind: 'top-k', k, normalize } : { kind: 'top-k', k, normalize, scale };
}

export function modelType(c: ConfigReader): string {
  return c.has('model_type') ? c.string('model_type') : '';
}
