// How much memory a model's weights, its KV cache and one forward step need, checked against what this process can
// use before anything is allocated: a model larger than memory fails with a message naming the size, not an abort.
import * as os from 'os';
import { native } from '../addon/native';
import { DType } from '../dtype';
import { DynamoeError } from '../errors';
import { isQuantType, QUANT_BLOCKS, QuantType } from '../formats/quant-types';
import { ELEMENT_BYTES, TensorStore } from '../formats/tensor-store';
import { formatBytes } from '../format-bytes';
import { attentionSlots, ModelSpec, routedSlots } from './spec';

const F32 = 4;

/**
 * Bytes of packed weights a spec needs in `dtype` (routers and norms stay f32), with the experts' matrices in
 * `experts` when they are quantized as they load.
 */
export function weightBytes(spec: ModelSpec, dtype: DType, experts?: QuantType): number {
  const { hidden, heads, kvHeads, headDim, vocab } = spec;
  const element = ELEMENT_BYTES[dtype];
  const attention = spec.mla ? mlaMatrixValues(spec) : hidden * (heads + 2 * kvHeads) * headDim + heads * headDim * hidden;
  const attentionFloats = spec.mla
    ? (spec.mla.qLoraRank ?? 0) + spec.mla.kvLoraRank
    : (spec.attentionBias ? (heads + 2 * kvHeads) * headDim : 0) + 2 * heads * headDim;
  let matrices = vocab * hidden * (spec.tiedEmbeddings ? 1 : 2);
  let floats = hidden; // final norm
  let quantized = 0;
  // A shortcut-connected layer (LongCat-Flash) has two attentions, two dense MLPs and four norms besides its MoE.
  const sublayers = spec.shortcutMoe ? 2 : 1;
  for (const layer of spec.layers) {
    matrices += sublayers * attention;
    floats += sublayers * (2 * hidden + attentionFloats);
    if (spec.shortcutMoe) matrices += 2 * 3 * hidden * spec.shortcutMoe.denseFfn;
    if (layer.kind === 'dense') {
      matrices += 3 * hidden * layer.ffn;
    } else {
      const expertValues = layer.experts * 3 * hidden * layer.ffn;
      if (experts) quantized += (expertValues / QUANT_BLOCKS[experts].elements) * QUANT_BLOCKS[experts].bytes;
      else matrices += expertValues;
      matrices += layer.shared ? 3 * hidden * layer.shared.ffn : 0;
      floats += routedSlots(layer) * (hidden + 1) + (layer.shared?.gated ? hidden : 0);
    }
  }
  return matrices * element + floats * F32 + quantized;
}

// Values of one MLA layer's matrices: q (low-rank or not), kv_a, the per-head W_uk and W_uv, o.
function mlaMatrixValues(spec: ModelSpec): number {
  const { hidden, heads } = spec;
  const { qLoraRank, kvLoraRank, nopeDim, ropeDim, valueDim } = spec.mla!;
  const q = heads * (nopeDim + ropeDim);
  const query = qLoraRank ? hidden * qLoraRank + qLoraRank * q : hidden * q;
  return query + hidden * (kvLoraRank + ropeDim) + heads * (nopeDim + valueDim) * kvLoraRank + heads * valueDim * hidden;
}

/**
 * Bytes of packed weights of a checkpoint with quantized tensors (undefined when it has none): quantized tensors
 * stay at their size in the file, other matrices take `dtype`, vectors f32.
 */
export function quantizedWeightBytes(store: TensorStore, dtype: DType): number | undefined {
  const tensors = [...store.tensors.values()];
  if (!tensors.some((t) => isQuantType(t.dtype))) return undefined;
  let bytes = 0;
  for (const tensor of tensors) {
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    if (isQuantType(tensor.dtype)) bytes += tensor.byteLength;
    else bytes += elements * (tensor.shape.length > 1 ? ELEMENT_BYTES[dtype] : F32);
  }
  return bytes;
}

/** Bytes of a KV cache holding `capacity` positions. */
export function kvCacheBytes(spec: ModelSpec, capacity: number, elementBytes: number = F32): number {
  // An MLA layer keeps one latent row per position (kvLoraRank + ropeDim values) and no values.
  const perLayer = spec.mla ? spec.mla.kvLoraRank + spec.mla.ropeDim : 2 * spec.kvHeads * spec.headDim;
  return attentionSlots(spec) * capacity * perLayer * elementBytes;
}

/** Bytes of one cached value on `device` for a model of `dtype`: the GPU keeps 16-bit models' caches in bf16. */
export function kvElementBytes(device: 'cpu' | 'cuda', dtype: string): number {
  return device === 'cuda' && dtype !== 'f32' ? 2 : F32;
}

/** Bytes one forward step over `tokens` positions allocates: activations, its KV rows and the returned logits. */
export function stepBytes(spec: ModelSpec, tokens: number, logitRows: number): number {
  const qWidth = spec.heads * spec.headDim;
  const kvWidth = spec.kvHeads * spec.headDim;
  // MLA: its buffers, plus the op's absorbed queries and attended latents (heads x (kvLoraRank + ropeDim) each).
  const mla = spec.mla ? 2 * spec.heads * (spec.mla.kvLoraRank + spec.mla.ropeDim) + (spec.mla.qLoraRank ?? 0) : 0;
  // A shortcut-connected layer holds its MoE output in one more hidden-wide buffer.
  const hiddenBuffers = spec.shortcutMoe ? 4 : 3;
  const activations = tokens * (hiddenBuffers * spec.hidden + 2 * qWidth + 2 * kvWidth + mla) * F32;
  return activations + kvCacheBytes(spec, tokens) + logitRows * spec.vocab * F32;
}

/** Memory this process may use: the machine's, or its cgroup limit when that is lower. */
export function usableMemory(): number {
  const total = os.totalmem();
  const constrained = typeof process.constrainedMemory === 'function' ? (process.constrainedMemory() ?? 0) : 0;
  return constrained > 0 && constrained < total ? constrained : total;
}

/** The GPU's free memory now (0 when no usable GPU: the caller has resolved the device to 'cuda' first). */
export function gpuFreeMemory(): number {
  return native().backendInfo().cudaFreeMemoryBytes ?? 0;
}

/**
 * Throws ERR_DYNAMOE_OUT_OF_MEMORY naming the sizes when a model's weights and KV pool cannot fit in `free` bytes of
 * GPU memory (checked before anything is uploaded).
 */
export function requireGpuMemory(weights: number, kvPool: number, free: number, what: string): void {
  if (!(weights + kvPool <= free)) {
    throw new DynamoeError(
      'ERR_DYNAMOE_OUT_OF_MEMORY',
      `${what} on the GPU needs ${formatBytes(weights)} of weights and ${formatBytes(kvPool)} of KV pool ` +
        `(${weights + kvPool} bytes), more than the ${formatBytes(free)} of GPU memory free; pass a smaller ` +
        'kvPoolTokens or use device \'cpu\'',
    );
  }
}

/** Throws ERR_DYNAMOE_OUT_OF_MEMORY when `bytes` cannot fit in this process's memory. */
export function requireMemory(bytes: number, what: string): void {
  const usable = usableMemory();
  if (!(bytes <= usable)) {
    throw new DynamoeError(
      'ERR_DYNAMOE_OUT_OF_MEMORY',
      `${what} needs ${formatBytes(bytes)} (${bytes} bytes), more than the ${formatBytes(usable)} of memory ` +
        'this process can use',
    );
  }
}
