// GGUF files whose layers hold q, k and v as one `attn_qkv` projection (llama.cpp's bailingmoe2 converter writes
// them so), presented as attn_q / attn_k / attn_v like every other family's: the rows of [q | k | v], split whole,
// quantized or not.
import { TensorStore } from '../formats/tensor-store';
import { ConfigReader } from './config-reader';
import { RowSplitStore } from './row-split-store';

export function splitGgufQkv(store: TensorStore, meta: ConfigReader): TensorStore {
  if (!store.tensors.has('blk.0.attn_qkv.weight')) return store;
  const arch = meta.string('general.architecture');
  const key = (name: string) => `${arch}.${name}`;
  const heads = meta.int(key('attention.head_count'));
  const headDim = meta.int(key('attention.key_length'), Math.floor(meta.int(key('embedding_length')) / heads));
  const kvRows = meta.int(key('attention.head_count_kv'), heads) * headDim;
  const rows = { q: heads * headDim, k: kvRows, v: kvRows };
  const splits = Array.from({ length: meta.layerCount(key('block_count')) }, (_, layer) =>
    (['weight', 'bias'] as const).map((kind) => ({
      fused: `blk.${layer}.attn_qkv.${kind}`,
      parts: (['q', 'k', 'v'] as const).map((part) => ({ name: `blk.${layer}.attn_${part}.${kind}`, rows: rows[part] })),
    })),
  ).flat();
  return new RowSplitStore(store, splits);
}
