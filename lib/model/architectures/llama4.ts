// Llama 4 (Scout, Maverick) run on text: MoE layers every interleave_moe_layer_step layers (the others a dense MLP of
// intermediate_size_mlp), top-k (1 in the releases) of the router's logits whose sigmoid weights the expert's INPUT,
// an always-on shared expert; RoPE on adjacent pairs with Llama 3's frequency scaling, left out on every fourth layer
// (no_rope_layers), where the RoPE layers RMS-normalise q and k heads without weights (use_qk_norm).
// The RoPE layers attend within chunks of attention_chunk_size positions; the others scale their scores by
// 1 + attn_scale * log(1 + floor((i + 1) / floor_scale)) at position i (attn_temperature_tuning).
import { DynamoeError } from '../../errors';
import { Architecture, llamaFamilySpec, modelType } from '../architecture';
import { ConfigReader } from '../config-reader';
import { fusedExpertLayers, fusedExpertName, FusedExpertsStore } from '../fused-experts-store';
import { CheckpointNaming, ExpertMatrix, hfNaming, LayerTensor } from '../naming';
import { FeedForwardSpec, Llama3RopeSpec, ModelSpec } from '../spec';

// rope_scaling: none, or Llama 3's (Scout: factor 16 over 8,192 positions).
function llama3Rope(c: ConfigReader): Llama3RopeSpec | undefined {
  if (!c.has('rope_scaling')) return undefined;
  const s = c.nested('rope_scaling');
  const kind = s.string('rope_type', s.string('type', 'default'));
  if (kind === 'default') return undefined;
  if (kind !== 'llama3') {
    throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${c.source}: Llama 4 'rope_scaling' of type '${kind}' is not supported (only 'llama3')`);
  }
  const spec = {
    factor: s.number('factor'), lowFreqFactor: s.number('low_freq_factor'), highFreqFactor: s.number('high_freq_factor'),
    originalContext: s.int('original_max_position_embeddings'),
  };
  if (!(spec.factor > 0 && spec.lowFreqFactor > 0 && spec.highFreqFactor >= spec.lowFreqFactor)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${c.source}: rope_scaling needs factor > 0 and high_freq_factor >= low_freq_factor > 0`);
  }
  return spec;
}

// The text model's spec from its config (text_config of a multimodal checkpoint, or a text-only config.json).
function llama4Spec(text: ConfigReader): ModelSpec {
  const layers = text.layerCount('num_hidden_layers');
  const step = text.int('interleave_moe_layer_step', 1);
  const moeLayers = text.has('moe_layers')
    ? text.intList('moe_layers')
    : Array.from({ length: layers }, (_, i) => i).filter((i) => (i + 1) % step === 0);
  const experts = text.int('num_local_experts');
  const k = text.int('num_experts_per_tok');
  if (k > experts) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${text.source}: ${k} experts per token is above num_local_experts (${experts})`);
  const ffn = text.int('intermediate_size');
  const layer = (i: number): FeedForwardSpec =>
    moeLayers.includes(i)
      ? {
          kind: 'moe', experts, ffn, policy: { kind: 'top-k', k }, weightOnInput: true,
          router: { scoring: 'sigmoid', normalize: false, scale: 1 }, shared: { ffn, gated: false },
        }
      : { kind: 'dense', ffn: text.int('intermediate_size_mlp', ffn) };
  const spec = llamaFamilySpec(text.without('rope_scaling'), 'llama4', layer);
  // no_rope_layers: 1 where RoPE applies (HF's name); default every fourth layer without.
  const noRope = text.intList('no_rope_layers');
  const ropeLayers = noRope.length === layers ? noRope.map((flag) => flag !== 0) : Array.from({ length: layers }, (_, i) => (i + 1) % 4 !== 0);
  const chunk = text.int('attention_chunk_size', 0, true);
  const temperature = text.bool('attn_temperature_tuning', true)
    ? { floor: text.int('floor_scale', 8192), scale: text.number('attn_scale', 0.1), layers: ropeLayers.map((rope) => !rope) }
    : undefined;
  const rope = llama3Rope(text);
  return {
    ...spec, ropeStyle: 'pairs', ropeLayers, ...(rope ? { llama3Rope: rope } : {}),
    ...(chunk > 0 ? { attentionChunks: ropeLayers.map((rotated) => (rotated ? chunk : 0)) } : {}),
    ...(temperature ? { attentionTemperature: temperature } : {}),
    ...(text.bool('use_qk_norm', false) ? { qkUnitNorm: true } : {}),
    ...(spec.attentionBias ? { outputBias: true } : {}),
  };
}

// Names under `prefix` (`language_model.model.` in the multimodal checkpoints, `model.` in text-only ones).
function llama4Naming(prefix: string, lmHead: string): CheckpointNaming {
  const base = hfNaming({
    router: 'feed_forward.router', experts: 'feed_forward.experts',
    expertMatrices: { gate: 'gate_proj', up: 'up_proj', down: 'down_proj' }, dense: 'feed_forward', shared: 'feed_forward.shared_expert',
  });
  const under = (name: string) => name.replace(/^model\./, prefix);
  return {
    embed: under(base.embed), finalNorm: under(base.finalNorm), lmHead,
    layer: (index: number, tensor: LayerTensor) => under(base.layer(index, tensor)),
    experts: { stacked: true, name: (layer: number, matrix: ExpertMatrix) => fusedExpertName(expertsUnder(prefix), layer, matrix) },
  };
}

const expertsUnder = (prefix: string) => (layer: number) => `${prefix}layers.${layer}.feed_forward.experts`;

const MULTIMODAL = 'language_model.model.';
const TEXT = 'model.';

/** Llama4ForConditionalGeneration checkpoints: the text model's config in text_config, its tensors under language_model. */
export const llama4: Architecture = {
  name: 'llama4',
  matchesHf: (c) => modelType(c) === 'llama4',
  fromHfConfig: (c) => {
    const text = c.nested('text_config');
    const spec = llama4Spec(text);
    return { ...spec, tiedEmbeddings: text.bool('tie_word_embeddings', c.bool('tie_word_embeddings', false)) };
  },
  hfNaming: llama4Naming(MULTIMODAL, 'language_model.lm_head.weight'),
  hfStore: (store, spec) => new FusedExpertsStore(store, fusedExpertLayers(expertsUnder(MULTIMODAL), spec)),
};

/** Llama4ForCausalLM checkpoints (model_type llama4_text): the same model, its config and tensors at the top level. */
export const llama4Text: Architecture = {
  name: 'llama4',
  matchesHf: (c) => modelType(c) === 'llama4_text',
  fromHfConfig: llama4Spec,
  hfNaming: llama4Naming(TEXT, 'lm_head.weight'),
  hfStore: (store, spec) => new FusedExpertsStore(store, fusedExpertLayers(expertsUnder(TEXT), spec)),
};
