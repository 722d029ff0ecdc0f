// What a Granite MoE GGUF (llama.cpp arch 'granitemoe') adds to the common GGUF spec: the four multipliers, the
// router's softmax over the kept experts, and the attention output bias when the file has one.
import { DynamoeError } from '../errors';
import { TensorInfo } from '../formats/tensor-store';
import { topK } from './architecture';
import { ConfigReader } from './config-reader';
import { ggufNaming } from './naming';
import { ModelSpec } from './spec';

/** Adds Granite's parts to `spec` (read as a generic MoE GGUF). */
export function addGgufGranite(
  spec: ModelSpec,
  meta: ConfigReader,
  key: (name: string) => string,
  tensors: ReadonlyMap<string, TensorInfo>,
): void {
  // The converter writes a multiplier only when the config has a non-zero one; llama.cpp reads an attention scale of
  // 0 as 1 / sqrt(head dim).
  const scale = (name: string, fallback: number) => {
    const value = meta.number(key(name), fallback);
    if (!(value >= 0) || !Number.isFinite(value)) meta.refuse(key(name), `${value} must be a finite number >= 0`);
    return value;
  };
  const positive = (name: string) => {
    const value = scale(name, 1);
    if (value === 0) meta.refuse(key(name), 'must not be 0');
    return value;
  };
  const attention = scale('attention.scale', 0);
  spec.multipliers = {
    embedding: positive('embedding_scale'),
    residual: positive('residual_scale'),
    ...(attention > 0 ? { attention } : {}),
    logitsDivisor: positive('logit_scale'),
  };
  // Granite reads this flag as "apply RoPE" (off only in the hybrid models' attention-without-RoPE layers).
  if (meta.has(key('rope.scaling.finetuned')) && !meta.bool(key('rope.scaling.finetuned'), true)) {
    meta.refuse(key('rope.scaling.finetuned'), 'attention without RoPE is not supported');
  }
  if (tensors.has(ggufNaming.layer(0, 'o_bias'))) spec.outputBias = true;
  spec.layers.forEach((layer) => {
    if (layer.kind !== 'moe') {
      throw new DynamoeError('ERR_DYNAMOE_UNSUPPORTED', `${meta.source}: Granite MoE layers without experts are not supported`);
    }
    // llama.cpp: a softmax over every expert, the kept weights renormalised: the same as a softmax over the kept.
    layer.router = { scoring: 'softmax-of-kept' };
    if (layer.policy.kind === 'top-k') layer.policy = topK(layer.policy.k, true);
  });
}
