// Qwen3-VL-MoE's language model (Qwen3-VL-30B-A3B, Qwen3-VL-235B-A22B) run on text: Qwen3-MoE under
// `model.language_model`, sized by config.json's text_config, its experts stored as transformers' fused 3-D
// parameters. Its multimodal RoPE gives a text token the same temporal, height and width position, which is the
// ordinary rotation; the vision tower (`model.visual`) is not loaded.
import { Architecture, llamaFamilySpec, modelType } from '../architecture';
import { fusedExpertLayers, fusedExpertName, FusedExpertsStore } from '../fused-experts-store';
import { CheckpointNaming, hfMlpExpertNames, hfNaming } from '../naming';
import { qwenLayer } from './qwen2-moe';

const PREFIX = 'model.language_model.';
const experts = (layer: number) => `${PREFIX}layers.${layer}.mlp.experts`;

const base = hfNaming(hfMlpExpertNames);
const naming: CheckpointNaming = {
  embed: `${PREFIX}embed_tokens.weight`,
  finalNorm: `${PREFIX}norm.weight`,
  lmHead: 'lm_head.weight',
  layer: (index, tensor) => base.layer(index, tensor).replace(/^model\./, PREFIX),
  experts: { stacked: true, name: (layer, matrix) => fusedExpertName(experts, layer, matrix) },
};

export const qwen3VlMoe: Architecture = {
  name: 'qwen3-vl-moe',
  matchesHf: (c) => modelType(c) === 'qwen3_vl_moe',
  fromHfConfig: (c) => {
    const text = c.nested('text_config');
    // The released models renormalise the kept weights (norm_topk_prob), the family's default.
    const spec = llamaFamilySpec(text, 'qwen3-vl-moe', (i) => qwenLayer(text, i, false, true), { qkNorm: 'per-head' });
    return { ...spec, tiedEmbeddings: text.bool('tie_word_embeddings', c.bool('tie_word_embeddings', false)) };
  },
  hfNaming: naming,
  hfStore: (store, spec) => new FusedExpertsStore(store, fusedExpertLayers(experts, spec)),
};
