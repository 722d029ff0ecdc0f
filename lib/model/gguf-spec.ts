// Reads a ModelSpec from GGUF metadata and tensor shapes (llama.cpp's keys and names).
import { DynamoeError } from '../errors';
import { TensorInfo } from '../formats/tensor-store';
import { topK } from './architecture';
import { ConfigReader } from './config-reader';
import { addGgufGptOss } from './gguf-gpt-oss';
import { addGgufGranite } from './gguf-granite';
import { ggufNaming, ggufNamingFor } from './naming';
import { ggufDeepseekYarn, ggufRopeScaling } from './rope-scaling';
import { FeedForwardSpec, MlaSpec, MoELayerSpec, ModelSpec, RouterSpec } from './spec';

interface GgufArchitecture {
  architecture: string;
  ropeStyle: ModelSpec['ropeStyle'];
  qkNorm: ModelSpec['qkNorm'];
  /** Whether top-k weights are renormalised when the file does not say (llama.cpp's default for the arch). */
  normalizeByDefault: boolean;
}

// llama.cpp's converter permutes q/k of "llama" models so adjacent pairs rotate; the others keep HF halves.
const known: Record<string, GgufArchitecture> = {
  llama: { architecture: 'mixtral', ropeStyle: 'pairs', qkNorm: 'none', normalizeByDefault: true },
  qwen2moe: { architecture: 'qwen2-moe', ropeStyle: 'halves', qkNorm: 'none', normalizeByDefault: false },
  qwen3moe: { architecture: 'qwen3-moe', ropeStyle: 'halves', qkNorm: 'per-head', normalizeByDefault: true },
  // Qwen3-VL-MoE's language model: Qwen3-MoE whose multimodal RoPE is the ordinary rotation for text (the vision
  // tower is llama.cpp's separate mmproj file).
  qwen3vlmoe: { architecture: 'qwen3-vl-moe', ropeStyle: 'halves', qkNorm: 'per-head', normalizeByDefault: true },
  olmoe: { architecture: 'olmoe', ropeStyle: 'halves', qkNorm: 'full', normalizeByDefault: false },
  // DeepSeek-V2 and V3 (MLA); llama.cpp rotates adjacent pairs of their rope part, as HF does after de-interleaving.
  deepseek2: { architecture: 'deepseek-v2', ropeStyle: 'pairs', qkNorm: 'none', normalizeByDefault: false },
  'gpt-oss': { architecture: 'gpt-oss', ropeStyle: 'halves', qkNorm: 'none', normalizeByDefault: true },
  // GLM-4.5 MoE: q/k norm only when the file has the tensors (use_qk_norm); llama.cpp rotates halves (NEOX).
  glm4moe: { architecture: 'glm4-moe', ropeStyle: 'halves', qkNorm: 'none', normalizeByDefault: true },
  // Granite MoE (and granitemoeshared, which the converter writes as this arch with ffn_*_shexp tensors).
  granitemoe: { architecture: 'granite-moe', ropeStyle: 'pairs', qkNorm: 'none', normalizeByDefault: true },
  // ERNIE 4.5 MoE: HF already rotates adjacent pairs (llama.cpp's NORM rope, no permutation); renormalised top-k.
  'ernie4_5-moe': { architecture: 'ernie4_5-moe', ropeStyle: 'pairs', qkNorm: 'none', normalizeByDefault: true },
  // dots.llm1: Qwen3 attention (per-head q/k norm, NEOX rope) and DeepSeek-V3's sigmoid router.
  dots1: { architecture: 'dots1', ropeStyle: 'halves', qkNorm: 'per-head', normalizeByDefault: false },
  // MiniMax-M2: q/k norm over the whole projection, RoPE (NEOX) on the first rope.dimension_count of each head.
  'minimax-m2': { architecture: 'minimax-m2', ropeStyle: 'halves', qkNorm: 'full', normalizeByDefault: true },
  // Bailing MoE V2 (Ling 2.0): fused attn_qkv (split as it is read), per-head q/k norm, NEOX rope on
  // rope.dimension_count of each head, DeepSeek-V3's sigmoid router.
  bailingmoe2: { architecture: 'bailing-moe-v2', ropeStyle: 'halves', qkNorm: 'per-head', normalizeByDefault: false },
  // Hunyuan-A13B: per-head q/k norm after RoPE (NEOX), renormalised softmax top-k, a shared MLP; the converter
  // writes the NTK-alpha base as rope.freq_base.
  'hunyuan-moe': { architecture: 'hunyuan-moe', ropeStyle: 'halves', qkNorm: 'per-head', normalizeByDefault: true },
  // Llama 4: adjacent-pair rope (no permutation in its converter), sigmoid weights on the experts' input.
  llama4: { architecture: 'llama4', ropeStyle: 'pairs', qkNorm: 'none', normalizeByDefault: false },
};

// llama.cpp's LLAMA_EXPERT_GATING_FUNC_TYPE values.
const GATING_SOFTMAX = 1;
const GATING_SIGMOID = 2;

/**
 * MLA sizes of a deepseek2 GGUF. Converters since llama.cpp's MLA support write the cache's sizes as key_length
 * (kvLoraRank + rope) and value_length (kvLoraRank), the heads' as key_length_mla / value_length_mla; older ones
 * wrote the heads' as key_length / value_length.
 */
function ggufMla(meta: ConfigReader, arch: string, tensors: ReadonlyMap<string, TensorInfo>): MlaSpec {
  const key = (name: string) => `${arch}.${name}`;
  const split = meta.has(key('attention.key_length_mla'));
  const queryHead = meta.int(key(split ? 'attention.key_length_mla' : 'attention.key_length'));
  const valueDim = meta.int(key(split ? 'attention.value_length_mla' : 'attention.value_length'));
  const ropeDim = meta.int(key('rope.dimension_count'));
  const kvLoraRank = meta.int(key('attention.kv_lora_rank'));
  const qLoraRank = meta.int(key('attention.q_lora_rank'), 0, true);
  if (ropeDim >= queryHead || ropeDim % 2 !== 0) {
    meta.refuse(key('rope.dimension_count'), `${ropeDim} must be even and less than the query head width ${queryHead}`);
  }
  // A q_lora_rank of 0 (V2-Lite) means one attn_q; the file's tensors must say the same.
  const lowRank = tensors.has(ggufNaming.layer(0, 'q_a'));
  if (lowRank !== qLoraRank > 0) {
    const message = `${meta.source}: '${key('attention.q_lora_rank')}' is ${qLoraRank} but blk.0.attn_q_a is ` +
      `${lowRank ? 'present' : 'absent'}`;
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', message);
  }
  return { ...(qLoraRank > 0 ? { qLoraRank } : {}), kvLoraRank, nopeDim: queryHead - ropeDim, ropeDim, valueDim };
}

/** The router of a deepseek2 MoE layer, from the gating function and group metadata (llama.cpp's keys). */
function ggufDeepseekRouting(
  meta: ConfigReader,
  arch: string,
  k: number,
  normalize: boolean,
  sigmoidByDefault = false,
): Pick<MoELayerSpec, 'policy' | 'router'> {
  const key = (name: string) => `${arch}.${name}`;
  const scale = meta.number(key('expert_weights_scale'), 1);
  // llama.cpp gates GLM-4.5 MoE by sigmoid when the file does not say.
  const gating = meta.int(key('expert_gating_func'), sigmoidByDefault ? GATING_SIGMOID : GATING_SOFTMAX);
  const count = meta.int(key('expert_group_count'), 1);
  const keep = meta.int(key('expert_group_used_count'), count);
  if (gating === GATING_SIGMOID) {
    return {
      policy: { kind: 'top-k', k },
      router: {
        scoring: 'sigmoid', selectionBias: true, normalize, scale,
        ...(count > 1 ? { groups: { count, keep, score: 'top2-sum' } } : {}),
      },
    };
  }
  if (gating !== GATING_SOFTMAX) meta.refuse(key('expert_gating_func'), `gating function ${gating} is not supported`);
  const policy = topK(k, normalize, scale);
  return count > 1 ? { policy, router: { scoring: 'softmax', groups: { count, keep, score: 'max' } } } : { policy };
}

/**
 * Llama 4's attention as llama.cpp runs it: RoPE (with the file's rope_freqs factors) on three layers of four, which
 * attend in chunks of 8,192 positions, the others NoPE, whose scores the temperature scales past 8,192 positions
 * (scale 0.1); weightless q/k norm except on the 128-expert model (Maverick). A sliding_window of 0 turns all that off.
 */
function addGgufLlama4(spec: ModelSpec, meta: ConfigReader, key: (name: string) => string, tensors: ReadonlyMap<string, TensorInfo>): void {
  const plain = meta.has(key('attention.sliding_window')) && meta.int(key('attention.sliding_window'), 0, true) === 0;
  if (!plain) {
    const ropeLayers = spec.layers.map((_, i) => (i + 1) % 4 !== 0);
    spec.ropeLayers = ropeLayers;
    spec.attentionChunks = ropeLayers.map((rotated) => (rotated ? 8192 : 0));
    spec.attentionTemperature = { floor: 8192, scale: 0.1, layers: ropeLayers.map((rotated) => !rotated) };
  }
  const experts = spec.layers.find((layer) => layer.kind === 'moe')?.experts;
  if (experts !== 128) spec.qkUnitNorm = true;
  if (tensors.has('rope_freqs.weight')) spec.ropeFactorsTensor = 'rope_freqs.weight';
}

export function ggufModelSpec(meta: ConfigReader, tensors: ReadonlyMap<string, TensorInfo>): ModelSpec {
  const arch = meta.string('general.architecture');
  const info = known[arch];
  if (!info) {
    throw new DynamoeError(
      'ERR_DYNAMOE_UNSUPPORTED',
      `${meta.source}: GGUF architecture '${arch}' is not supported (supported: ${Object.keys(known).join(', ')})`,
    );
  }
  const key = (name: string) => `${arch}.${name}`;
  const shape = (name: string, rank: number): number[] => {
    const tensor = tensors.get(name);
    if (!tensor) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${meta.source}: tensor '${name}' is missing`);
    // Sizes are read off these shapes: another rank or an empty dimension would give a spec of undefined or 0 sizes.
    if (tensor.shape.length !== rank || tensor.shape.includes(0)) {
      const message = `${meta.source}: tensor '${name}' has shape [${tensor.shape.join(', ')}], expected ${rank} non-zero dimensions`;
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', message);
    }
    return tensor.shape;
  };
  const hidden = meta.int(key('embedding_length'));
  const heads = meta.int(key('attention.head_count'));
  const mla = arch === 'deepseek2' ? ggufMla(meta, arch, tensors) : undefined;
  const headDim = mla ? mla.nopeDim + mla.ropeDim : meta.int(key('attention.key_length'), Math.floor(hidden / heads));
  const ropeDims = mla ? headDim : meta.int(key('rope.dimension_count'), headDim);
  const glm = arch === 'glm4moe';
  // Families routed by DeepSeek-V3's sigmoid router with a selection bias, as llama.cpp's deepseek2 files may be.
  const sigmoidFamily = glm || arch === 'dots1' || arch === 'minimax-m2' || arch === 'bailingmoe2';
  // Families whose heads rotate only their leading rope.dimension_count dimensions.
  const partialRotary = glm || arch === 'minimax-m2' || arch === 'bailingmoe2';
  if (ropeDims !== headDim && !(partialRotary && ropeDims >= 2 && ropeDims < headDim && ropeDims % 2 === 0)) {
    meta.refuse(key('rope.dimension_count'), 'partial rotary embeddings are supported for glm4moe, minimax-m2 and bailingmoe2 only');
  }
  const used = meta.int(key('expert_used_count'), 0, true);
  const normalize = meta.bool(key('expert_weights_norm'), info.normalizeByDefault);
  // GLM-4.5's and Ling 2.0's last nextn_predict_layers blocks are multi-token-prediction heads llama.cpp does not
  // run either.
  const nextn = glm || arch === 'bailingmoe2' ? meta.int(key('nextn_predict_layers'), 0, true) : 0;
  const layerCount = meta.layerCount(key('block_count')) - nextn;
  if (layerCount < 1) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${meta.source}: no decoder layers besides the nextn ones`);

  const naming = ggufNamingFor(info.architecture);
  const maxContext = meta.int(key('context_length'), 4096);
  // gpt-oss is defined by its Hugging Face model, whose YaRN ramp is not rounded.
  const generic = ggufRopeScaling(meta, key, maxContext, info.architecture !== 'gpt-oss');
  // DeepSeek's YaRN also scales MLA's softmax, kept in llama.cpp's keys of its own.
  const ropeScaling = mla && generic ? ggufDeepseekYarn(meta, key, generic) : generic;
  const layer = (index: number): FeedForwardSpec => {
    if (!tensors.has(ggufNaming.layer(index, 'router'))) {
      return { kind: 'dense', ffn: shape(ggufNaming.layer(index, 'mlp_gate'), 2)[0] };
    }
    const [experts, ffn] = shape(ggufNaming.experts.stacked ? ggufNaming.experts.name(index, 'gate') : '', 3);
    if (used < 1 || used > experts) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${meta.source}: '${key('expert_used_count')}' must be in [1, ${experts}]`);
    }
    // ERNIE 4.5 ranks its softmax probabilities plus exp_probs_b (the selection bias), as llama.cpp's graph does.
    const ernieBias = arch === 'ernie4_5-moe' && tensors.has(ggufNaming.layer(index, 'router_selection_bias'));
    const ernieRouter: RouterSpec = { scoring: 'softmax', selectionBias: true, normalize, scale: 1 };
    if (arch === 'llama4') {
      // Each kept expert reads sigmoid(its logit) times the input (llama.cpp's weight_before_ffn).
      const sharedFfn = shape(ggufNaming.layer(index, 'shared_gate'), 2)[0];
      return { kind: 'moe', experts, ffn, policy: { kind: 'top-k', k: used }, router: { scoring: 'sigmoid', normalize: false, scale: 1 },
        weightOnInput: true, shared: { ffn: sharedFfn, gated: false } };
    }
    const routing = mla || sigmoidFamily
      ? ggufDeepseekRouting(meta, arch, used, normalize, sigmoidFamily)
      : ernieBias
        ? { policy: { kind: 'top-k' as const, k: used }, router: ernieRouter }
        : { policy: topK(used, normalize) };
    const moe: MoELayerSpec = { kind: 'moe', experts, ffn, ...routing };
    const sharedGate = ggufNaming.layer(index, 'shared_gate');
    if (tensors.has(sharedGate)) {
      moe.shared = { ffn: shape(sharedGate, 2)[0], gated: tensors.has(ggufNaming.layer(index, 'shared_gate_weight')) };
    }
    return moe;
  };

  const sigmoid = mla && meta.int(key('expert_gating_func'), GATING_SOFTMAX) === GATING_SIGMOID;
  const spec: ModelSpec = {
    // llama.cpp has one architecture for both; V3 is the one that gates by sigmoid.
    architecture: sigmoid ? 'deepseek-v3' : info.architecture,
    vocab: shape(ggufNaming.embed, 2)[0],
    hidden,
    heads,
    // An MLA file says 1 (the latent is one shared "head"); every query head reads it.
    kvHeads: mla ? heads : meta.int(key('attention.head_count_kv'), heads),
    headDim,
    ropeTheta: meta.number(key('rope.freq_base'), 10000),
    ropeStyle: info.ropeStyle,
    rmsNormEpsilon: meta.number(key('attention.layer_norm_rms_epsilon'), 1e-6),
    qkNorm: glm && tensors.has(naming.layer(0, 'q_norm')) ? 'per-head' : info.qkNorm,
    ...(arch === 'hunyuan-moe' ? { qkNormAfterRope: true } : {}),
    ...(partialRotary && ropeDims !== headDim ? { rotaryDim: ropeDims } : {}),
    attentionBias: tensors.has(naming.layer(0, 'q_bias')),
    tiedEmbeddings: !tensors.has(ggufNaming.lmHead),
    maxContext,
    layers: Array.from({ length: layerCount }, (_, index) => layer(index)),
    ...(mla ? { mla } : {}),
    ...(ropeScaling ? { ropeScaling } : {}),
  };
  if (info.architecture === 'gpt-oss') addGgufGptOss(spec, meta, key, tensors);
  if (arch === 'llama4') addGgufLlama4(spec, meta, key, tensors);
  if (info.architecture === 'granite-moe') addGgufGranite(spec, meta, key, tensors);
  return spec;
}
