// Reads a ModelSpec from GGUF metadata and tensor shapes (llama.cpp's keys and names).
import { DynamoeError } from '../errors';
import { TensorInfo } from '../formats/tensor-store';
import { topK } from './architecture';
import { ConfigReader } from './config-reader';
import { addGgufGptOss } from './gguf-gpt-oss';
import { ggufNaming, ggufNamingFor } from './naming';
import { ggufRopeScaling } from './rope-scaling';
import { FeedForwardSpec, ModelSpec } from './spec';

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
  olmoe: { architecture: 'olmoe', ropeStyle: 'halves', qkNorm: 'full', normalizeByDefault: false },
  'gpt-oss': { architecture: 'gpt-oss', ropeStyle: 'halves', qkNorm: 'none', normalizeByDefault: true },
};

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
  const headDim = meta.int(key('attention.key_length'), Math.floor(hidden / heads));
  const ropeDims = meta.int(key('rope.dimension_count'), headDim);
  if (ropeDims !== headDim) meta.refuse(key('rope.dimension_count'), 'partial rotary embeddings are not supported');
  const used = meta.int(key('expert_used_count'), 0, true);
  const normalize = meta.bool(key('expert_weights_norm'), info.normalizeByDefault);
  const layerCount = meta.layerCount(key('block_count'));

  const naming = ggufNamingFor(info.architecture);
  const maxContext = meta.int(key('context_length'), 4096);
  // gpt-oss is defined by its Hugging Face model, whose YaRN ramp is not rounded.
  const ropeScaling = ggufRopeScaling(meta, key, maxContext, info.architecture !== 'gpt-oss');
  const layer = (index: number): FeedForwardSpec => {
    if (!tensors.has(ggufNaming.layer(index, 'router'))) {
      return { kind: 'dense', ffn: shape(ggufNaming.layer(index, 'mlp_gate'), 2)[0] };
    }
    const [experts, ffn] = shape(ggufNaming.experts.stacked ? ggufNaming.experts.name(index, 'gate') : '', 3);
    if (used < 1 || used > experts) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${meta.source}: '${key('expert_used_count')}' must be in [1, ${experts}]`);
    }
    const moe: FeedForwardSpec = { kind: 'moe', experts, ffn, policy: topK(used, normalize) };
    const sharedGate = ggufNaming.layer(index, 'shared_gate');
    if (tensors.has(sharedGate)) {
      moe.shared = { ffn: shape(sharedGate, 2)[0], gated: tensors.has(ggufNaming.layer(index, 'shared_gate_weight')) };
    }
    return moe;
  };

  const spec: ModelSpec = {
    architecture: info.architecture,
    vocab: shape(ggufNaming.embed, 2)[0],
    hidden,
    heads,
    kvHeads: meta.int(key('attention.head_count_kv'), heads),
    headDim,
    ropeTheta: meta.number(key('rope.freq_base'), 10000),
    ropeStyle: info.ropeStyle,
    rmsNormEpsilon: meta.number(key('attention.layer_norm_rms_epsilon'), 1e-6),
    qkNorm: info.qkNorm,
    attentionBias: tensors.has(naming.layer(0, 'q_bias')),
    tiedEmbeddings: !tensors.has(ggufNaming.lmHead),
    maxContext,
    layers: Array.from({ length: layerCount }, (_, index) => layer(index)),
    ...(ropeScaling ? { ropeScaling } : {}),
  };
  if (info.architecture === 'gpt-oss') addGgufGptOss(spec, meta, key, tensors);
  return spec;
}
