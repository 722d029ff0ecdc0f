// What a decoder-only MoE transformer is made of, independent of the checkpoint format it came from.
import { RoutingPolicy } from '../policy/routing-policy';

/** A dense SwiGLU MLP layer. */
export interface DenseLayerSpec {
  kind: 'dense';
  ffn: number;
}

/** An MoE layer: routed SwiGLU experts, optionally an always-on shared expert. */
export interface MoELayerSpec {
  kind: 'moe';
  experts: number;
  ffn: number;
  shared?: { ffn: number; gated: boolean };
  /** The policy the model was trained with for this layer. */
  policy: RoutingPolicy;
}

export type FeedForwardSpec = DenseLayerSpec | MoELayerSpec;

/** Sizes and choices of one model, read from config.json or GGUF metadata. */
export interface ModelSpec {
  /** Architecture name as dynamoe knows it (e.g. 'mixtral', 'qwen2-moe'). */
  architecture: string;
  vocab: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ropeTheta: number;
  /** Which dimensions rotate together: Hugging Face checkpoints rotate halves, llama.cpp "llama" GGUFs pairs. */
  ropeStyle: 'halves' | 'pairs';
  rmsNormEpsilon: number;
  /** RMSNorm of q and k before RoPE: over each head (Qwen3-MoE) or over the whole projection (OLMoE). */
  qkNorm: 'none' | 'per-head' | 'full';
  /** q/k/v projections have biases (Qwen2-MoE). */
  attentionBias: boolean;
  /** The LM head is the embedding matrix. */
  tiedEmbeddings: boolean;
  /** Longest context the model was trained for. */
  maxContext: number;
  /** One entry per decoder layer. */
  layers: FeedForwardSpec[];
}

/** The MoE layers' specs, in layer order (their index is the layer's MoE slot). */
export function moeLayers(spec: ModelSpec): { layer: number; moe: MoELayerSpec }[] {
  const out: { layer: number; moe: MoELayerSpec }[] = [];
  spec.layers.forEach((layer, index) => {
    if (layer.kind === 'moe') out.push({ layer: index, moe: layer });
  });
  return out;
}
