// What a gpt-oss GGUF (llama.cpp arch 'gpt-oss') adds to the common GGUF spec: which layers slide and by how much,
// the attention sinks and output bias, the router and expert biases, and the clamped SwiGLU llama.cpp hard-codes.
import { DynamoeError } from '../errors';
import { TensorInfo } from '../formats/tensor-store';
import { GPT_OSS_SWIGLU_ALPHA } from './architectures/gpt-oss';
import { ConfigReader } from './config-reader';
import { ggufNamingFor } from './naming';
import { ModelSpec } from './spec';

// llama.cpp's clamp of the gpt-oss SwiGLU (a constant of its graph, not a GGUF key).
const SWIGLU_LIMIT = 7;

// llama.cpp's set_swa_pattern: with period n, layer i slides when i % n < n - 1; a bool array says it per layer.
function slidingLayers(meta: ConfigReader, key: string, layers: number): boolean[] {
  const pattern = meta.raw(key);
  if (Array.isArray(pattern)) {
    if (pattern.length !== layers || !pattern.every((v) => typeof v === 'boolean')) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${meta.source}: '${key}' must hold ${layers} booleans`);
    }
    return pattern as boolean[];
  }
  const period = meta.int(key, 2);
  return Array.from({ length: layers }, (_, i) => i % period < period - 1);
}

/** Adds gpt-oss's parts to `spec` (read as a generic MoE GGUF). */
export function addGgufGptOss(
  spec: ModelSpec,
  meta: ConfigReader,
  key: (name: string) => string,
  tensors: ReadonlyMap<string, TensorInfo>,
): void {
  const names = ggufNamingFor('gpt-oss');
  const window = meta.int(key('attention.sliding_window'));
  spec.attentionWindows = slidingLayers(meta, key('attention.sliding_window_pattern'), spec.layers.length).map(
    (sliding) => (sliding ? window : 0),
  );
  spec.attentionSinks = true;
  spec.outputBias = tensors.has(names.layer(0, 'o_bias'));
  spec.layers.forEach((layer, i) => {
    if (layer.kind !== 'moe') return;
    layer.router = { scoring: 'softmax-of-kept' };
    layer.routerBias = tensors.has(names.layer(i, 'router_bias'));
    layer.expertBiases = tensors.has(names.expertBias!(i, 'gate'));
    layer.activation = { kind: 'swiglu-oai', limit: SWIGLU_LIMIT, alpha: GPT_OSS_SWIGLU_ALPHA };
  });
}
