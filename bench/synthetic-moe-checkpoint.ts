// Full-size synthetic MoE checkpoints for the GPU whole-model bench: a Mixtral-like and a Qwen3-30B-A3B-like
// model, bf16, written as a Hugging Face directory (config.json that transformers' MixtralConfig / Qwen3MoeConfig
// take, one model.safetensors, the tiny test tokenizer) and as a GGUF file llama.cpp loads, both holding the same
// values. They are tens of GB, so nothing is built in memory: every matrix is a seeded window of one pool of normals
// (scaled per tensor, rounded to bf16 once per scale) streamed to disk in chunks. The repeats a pool causes do not
// matter to speed, and the router windows differ per layer, so routing is as varied as with fresh normals.
import * as fs from 'fs';
import * as path from 'path';
import { SeededRandom } from '../lib/seeded-random';
import { tinyTokenizerGgufMetadata, writeTinyTokenizer } from '../test/tokenizer-fixtures';

export type GpuBenchArch = 'mixtral' | 'qwen3-moe';

/** One model shape of the GPU bench. */
export interface GpuBenchShape {
  /** Short key (BENCH_GPU_MODELS picks by it). */
  key: string;
  label: string;
  arch: GpuBenchArch;
  layers: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  experts: number;
  /** The model's trained top-k. */
  topK: number;
  /** Each expert's FFN width. */
  ffn: number;
  vocab: number;
  ropeTheta: number;
  rmsEps: number;
  maxContext: number;
}

export const MIXTRAL_LIKE: GpuBenchShape = {
  key: 'mixtral',
  label: 'Mixtral-like',
  arch: 'mixtral',
  layers: 8,
  hidden: 4096,
  heads: 32,
  kvHeads: 8,
  headDim: 128,
  experts: 8,
  topK: 2,
  ffn: 14336,
  vocab: 32000,
  ropeTheta: 1e6,
  rmsEps: 1e-5,
  maxContext: 32768,
};

export const QWEN3_MOE_LIKE: GpuBenchShape = {
  key: 'qwen3',
  label: 'Qwen3-30B-A3B-like',
  arch: 'qwen3-moe',
  layers: 8,
  hidden: 2048,
  heads: 32,
  kvHeads: 4,
  headDim: 128,
  experts: 128,
  topK: 8,
  ffn: 768,
  vocab: 151936,
  ropeTheta: 1e6,
  rmsEps: 1e-6,
  maxContext: 40960,
};

/** The same architecture and routing at a size a CPU runs in seconds (BENCH_GPU_SHAPES=tiny, for checking the bench). */
export function tinyShape(shape: GpuBenchShape): GpuBenchShape {
  return {
    ...shape,
    layers: 2,
    hidden: 256,
    heads: 4,
    kvHeads: shape.kvHeads === 8 ? 2 : 1,
    headDim: 64,
    ffn: shape.arch === 'mixtral' ? 512 : 128,
    vocab: shape.arch === 'mixtral' ? 512 : 1024,
  };
}

/** Layers cut to `layers` (BENCH_GPU_LAYERS). */
export function withLayers(shape: GpuBenchShape, layers: number): GpuBenchShape {
  return { ...shape, layers };
}

// ---------------------------------------------------------------------------------------------------------------
// Tensor plan: what each file holds, as windows of the pool.

// A prime pool length, so that consecutive rows of a matrix start at different pool phases.
const POOL = 4_194_301;
// Logit std of the routers: 2 gives top-p 0.4 about 1.2 of 8 experts and 3.6 of 128 (the CPU bench used 2 too).
const ROUTER_LOGIT_STD = 2;

/** One Hugging Face matrix: element (r, c) is pool[(start + r * cols + c) mod POOL] * std. */
interface Window {
  start: number;
  rows: number;
  cols: number;
  std: number;
  /** llama.cpp's converter's q/k row order (RoPE on adjacent pairs): GGUF row `to` holds HF row `from`. */
  pairs?: { heads: number; headDim: number };
}

interface PlannedTensor {
  name: string;
  /** Row-major, outermost first. */
  shape: number[];
  dtype: 'bf16' | 'f32';
  /** 'ones': a norm weight; else the matrices it stacks, in order. */
  fill: 'ones' | Window[];
}

// Every matrix of the model, keyed by its Hugging Face name, with its window; the GGUF plan reuses the same windows.
function matrices(shape: GpuBenchShape): Map<string, Window> {
  const { hidden: H, heads, kvHeads, headDim, experts, ffn, vocab, layers } = shape;
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  const out = new Map<string, Window>();
  let seed = 1;
  const add = (name: string, rows: number, cols: number, std: number) => {
    // Knuth's multiplicative hash spreads the windows over the pool.
    out.set(name, { start: (seed++ * 2654435761) % POOL, rows, cols, std });
  };
  add('model.embed_tokens.weight', vocab, H, 1);
  add('lm_head.weight', vocab, H, 1 / Math.sqrt(H));
  const ffnNames = ffnNamesOf(shape);
  for (let l = 0; l < layers; l++) {
    const at = (s: string) => `model.layers.${l}.${s}`;
    add(at('self_attn.q_proj.weight'), qW, H, 1 / Math.sqrt(H));
    add(at('self_attn.k_proj.weight'), kvW, H, 1 / Math.sqrt(H));
    add(at('self_attn.v_proj.weight'), kvW, H, 1 / Math.sqrt(H));
    add(at('self_attn.o_proj.weight'), H, qW, 1 / Math.sqrt(qW));
    add(at(`${ffnNames.router}.weight`), experts, H, ROUTER_LOGIT_STD / Math.sqrt(H));
    for (let e = 0; e < experts; e++) {
      add(at(`${ffnNames.experts}.${e}.${ffnNames.g}.weight`), ffn, H, 1 / Math.sqrt(H));
      add(at(`${ffnNames.experts}.${e}.${ffnNames.u}.weight`), ffn, H, 1 / Math.sqrt(H));
      add(at(`${ffnNames.experts}.${e}.${ffnNames.d}.weight`), H, ffn, 1 / Math.sqrt(ffn));
    }
  }
  return out;
}

function ffnNamesOf(shape: GpuBenchShape) {
  return shape.arch === 'mixtral'
    ? { router: 'block_sparse_moe.gate', experts: 'block_sparse_moe.experts', g: 'w1', u: 'w3', d: 'w2' }
    : { router: 'mlp.gate', experts: 'mlp.experts', g: 'gate_proj', u: 'up_proj', d: 'down_proj' };
}

function hfPlan(shape: GpuBenchShape): PlannedTensor[] {
  const m = matrices(shape);
  const { hidden: H, headDim } = shape;
  const norm = (name: string, n: number): PlannedTensor => ({ name, shape: [n], dtype: 'f32', fill: 'ones' });
  // 1-D norms (f32, as the converters write them) first, so that every bf16 tensor stays 2-byte aligned.
  const out: PlannedTensor[] = [norm('model.norm.weight', H)];
  for (let l = 0; l < shape.layers; l++) {
    out.push(norm(`model.layers.${l}.input_layernorm.weight`, H), norm(`model.layers.${l}.post_attention_layernorm.weight`, H));
    if (shape.arch === 'qwen3-moe') {
      out.push(norm(`model.layers.${l}.self_attn.q_norm.weight`, headDim), norm(`model.layers.${l}.self_attn.k_norm.weight`, headDim));
    }
  }
  for (const [name, w] of m) out.push({ name, shape: [w.rows, w.cols], dtype: 'bf16', fill: [w] });
  return out;
}

function ggufPlan(shape: GpuBenchShape): PlannedTensor[] {
  const m = matrices(shape);
  const { hidden: H, headDim, heads, kvHeads, experts, ffn } = shape;
  const get = (name: string) => m.get(name)!;
  const n = ffnNamesOf(shape);
  // Mixtral's GGUF architecture is 'llama': its converter reorders q/k rows for pairwise RoPE; qwen3moe keeps them.
  const pairs = shape.arch === 'mixtral';
  const norm = (name: string, size: number): PlannedTensor => ({ name, shape: [size], dtype: 'f32', fill: 'ones' });
  const mat = (name: string, w: Window, dtype: 'bf16' | 'f32' = 'bf16'): PlannedTensor => ({ name, shape: [w.rows, w.cols], dtype, fill: [w] });
  const out: PlannedTensor[] = [
    mat('token_embd.weight', get('model.embed_tokens.weight')),
    norm('output_norm.weight', H),
    mat('output.weight', get('lm_head.weight')),
  ];
  for (let l = 0; l < shape.layers; l++) {
    const hf = (s: string) => get(`model.layers.${l}.${s}`);
    const at = (s: string) => `blk.${l}.${s}`;
    const q = hf('self_attn.q_proj.weight');
    const k = hf('self_attn.k_proj.weight');
    out.push(
      norm(at('attn_norm.weight'), H),
      norm(at('ffn_norm.weight'), H),
      mat(at('attn_q.weight'), pairs ? { ...q, pairs: { heads, headDim } } : q),
      mat(at('attn_k.weight'), pairs ? { ...k, pairs: { heads: kvHeads, headDim } } : k),
      mat(at('attn_v.weight'), hf('self_attn.v_proj.weight')),
      mat(at('attn_output.weight'), hf('self_attn.o_proj.weight')),
    );
    if (shape.arch === 'qwen3-moe') out.push(norm(at('attn_q_norm.weight'), headDim), norm(at('attn_k_norm.weight'), headDim));
    // llama.cpp keeps the router in f32: the bf16 values widened, so both files hold the same numbers.
    out.push(mat(at('ffn_gate_inp.weight'), hf(`${n.router}.weight`), 'f32'));
    const stacked = (name: string, proj: string, rows: number, cols: number): PlannedTensor => ({
      name: at(name),
      shape: [experts, rows, cols],
      dtype: 'bf16',
      fill: Array.from({ length: experts }, (_, e) => hf(`${n.experts}.${e}.${proj}.weight`)),
    });
    out.push(
      stacked('ffn_gate_exps.weight', n.g, ffn, H),
      stacked('ffn_up_exps.weight', n.u, ffn, H),
      stacked('ffn_down_exps.weight', n.d, H, ffn),
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Values: the pool, rounded to bf16 once per scale.

let normalPool: Float32Array | undefined;
const bf16Pools = new Map<number, Uint16Array>();

function bf16Bits(value: number, scratch: Float32Array, bits: Uint32Array): number {
  scratch[0] = value;
  const b = bits[0];
  // Round to nearest even (the synthetic values are finite).
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

function poolFor(std: number): Uint16Array {
  let pool = bf16Pools.get(std);
  if (pool) return pool;
  normalPool ??= new SeededRandom(2024).normals(POOL, 1);
  pool = new Uint16Array(POOL);
  const scratch = new Float32Array(1);
  const bits = new Uint32Array(scratch.buffer);
  for (let i = 0; i < POOL; i++) pool[i] = bf16Bits(normalPool[i] * std, scratch, bits);
  bf16Pools.set(std, pool);
  return pool;
}

/** Copies `count` pool elements from `start` (wrapping) into `out` at `at`. */
function copyWrapped(pool: Uint16Array, start: number, count: number, out: Uint16Array, at: number): void {
  let from = start % POOL;
  while (count > 0) {
    const n = Math.min(count, POOL - from);
    out.set(pool.subarray(from, from + n), at);
    at += n;
    count -= n;
    from = 0;
  }
}

const CHUNK_ELEMENTS = 1 << 25; // 64 MiB of bf16 per write

/** A tensor's bytes, in chunks of whole rows (a row is at most a few thousand elements). */
function* tensorChunks(tensor: PlannedTensor): Generator<Uint8Array> {
  const total = tensor.shape.reduce((a, b) => a * b, 1);
  if (tensor.fill === 'ones') {
    const ones = tensor.dtype === 'f32' ? new Float32Array(total).fill(1) : new Uint16Array(total).fill(0x3f80);
    yield new Uint8Array(ones.buffer);
    return;
  }
  const chunk = new Uint16Array(CHUNK_ELEMENTS);
  for (const w of tensor.fill) {
    const pool = poolFor(w.std);
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_ELEMENTS / w.cols));
    for (let r0 = 0; r0 < w.rows; r0 += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, w.rows - r0);
      const used = rows * w.cols;
      if (w.pairs) {
        const { headDim } = w.pairs;
        const half = headDim / 2;
        for (let r = 0; r < rows; r++) {
          // GGUF row `to` = h * headDim + i * 2 + j holds HF row h * headDim + j * half + i (llama.cpp's permute).
          const to = r0 + r;
          const h = Math.floor(to / headDim);
          const i = Math.floor((to % headDim) / 2);
          const j = to % 2;
          const from = h * headDim + j * half + i;
          copyWrapped(pool, w.start + from * w.cols, w.cols, chunk, r * w.cols);
        }
      } else {
        copyWrapped(pool, w.start + r0 * w.cols, used, chunk, 0);
      }
      if (tensor.dtype === 'bf16') {
        yield new Uint8Array(chunk.buffer, 0, used * 2);
      } else {
        const wide = new Uint32Array(used);
        for (let e = 0; e < used; e++) wide[e] = chunk[e] << 16;
        yield new Uint8Array(wide.buffer);
      }
    }
  }
}

function tensorBytes(tensor: PlannedTensor): number {
  return tensor.shape.reduce((a, b) => a * b, 1) * (tensor.dtype === 'f32' ? 4 : 2);
}

async function writeAll(handle: fs.promises.FileHandle, bytes: Uint8Array): Promise<void> {
  let at = 0;
  while (at < bytes.length) {
    const { bytesWritten } = await handle.write(bytes, at, Math.min(bytes.length - at, 1 << 30));
    at += bytesWritten;
  }
}

async function writeTensors(handle: fs.promises.FileHandle, tensors: PlannedTensor[], alignment: number): Promise<void> {
  for (const tensor of tensors) {
    for (const bytes of tensorChunks(tensor)) await writeAll(handle, bytes);
    const pad = alignUp(tensorBytes(tensor), alignment) - tensorBytes(tensor);
    if (pad > 0) await writeAll(handle, new Uint8Array(pad));
  }
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}

// ---------------------------------------------------------------------------------------------------------------
// Hugging Face directory.

/** config.json as the released models' configs have it (every field transformers' configs read). */
export function hfConfig(shape: GpuBenchShape): Record<string, unknown> {
  const common = {
    hidden_size: shape.hidden,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    num_key_value_heads: shape.kvHeads,
    head_dim: shape.headDim,
    vocab_size: shape.vocab,
    max_position_embeddings: shape.maxContext,
    rms_norm_eps: shape.rmsEps,
    rope_theta: shape.ropeTheta,
    rope_scaling: null,
    hidden_act: 'silu',
    initializer_range: 0.02,
    tie_word_embeddings: false,
    use_cache: true,
    attention_dropout: 0.0,
    num_experts_per_tok: shape.topK,
    output_router_logits: false,
    // The tiny SentencePiece tokenizer's <s> and </s>.
    bos_token_id: 1,
    eos_token_id: 2,
    torch_dtype: 'bfloat16',
    dtype: 'bfloat16',
  };
  if (shape.arch === 'mixtral') {
    return {
      architectures: ['MixtralForCausalLM'],
      model_type: 'mixtral',
      ...common,
      intermediate_size: shape.ffn,
      num_local_experts: shape.experts,
      sliding_window: null,
      router_aux_loss_coef: 0.02,
      router_jitter_noise: 0.0,
    };
  }
  return {
    architectures: ['Qwen3MoeForCausalLM'],
    model_type: 'qwen3_moe',
    ...common,
    intermediate_size: shape.ffn * shape.topK,
    moe_intermediate_size: shape.ffn,
    num_experts: shape.experts,
    norm_topk_prob: true,
    decoder_sparse_step: 1,
    mlp_only_layers: [],
    attention_bias: false,
    use_sliding_window: false,
    sliding_window: null,
    max_window_layers: shape.layers,
    router_aux_loss_coef: 0.001,
  };
}

// Fields transformers' configs type as float: its strict validation rejects `0` for `router_jitter_noise: float`, and
// JSON.stringify writes 0.0 and 1e6 as integers.
const FLOAT_FIELDS = ['rms_norm_eps', 'rope_theta', 'attention_dropout', 'router_jitter_noise', 'router_aux_loss_coef', 'initializer_range'];

/** config.json's text, with the float fields written as floats (`0.0`, `1000000.0`). */
export function configJson(config: Record<string, unknown>): string {
  let text = JSON.stringify(config, null, 2);
  for (const key of FLOAT_FIELDS) text = text.replace(new RegExp(`("${key}": )(-?\\d+)(,?\n)`), '$1$2.0$3');
  return text;
}

/** Writes config.json, tokenizer.json / tokenizer_config.json and one model.safetensors into `dir`. */
export async function writeSyntheticHfDirectory(dir: string, shape: GpuBenchShape): Promise<void> {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'config.json'), configJson(hfConfig(shape)));
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ bos_token_id: 1, eos_token_id: 2 }, null, 2));
  writeTinyTokenizer(dir, 'spm');
  const tensors = hfPlan(shape);
  const fields: string[] = [`"__metadata__":${JSON.stringify({ format: 'pt' })}`];
  let offset = 0;
  for (const t of tensors) {
    const bytes = tensorBytes(t);
    const entry = { dtype: t.dtype === 'f32' ? 'F32' : 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes] };
    fields.push(`${JSON.stringify(t.name)}:${JSON.stringify(entry)}`);
    offset += bytes;
  }
  // Spaces pad the header so the data section starts 8-byte aligned.
  const json = Buffer.from(`{${fields.join(',')}}`, 'utf8');
  const header = Buffer.alloc(8 + alignUp(json.length, 8), 0x20);
  header.writeBigUInt64LE(BigInt(header.length - 8), 0);
  json.copy(header, 8);
  const handle = await fs.promises.open(path.join(dir, 'model.safetensors'), 'w');
  try {
    await writeAll(handle, header);
    await writeTensors(handle, tensors, 1);
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// GGUF file.

type Meta =
  | { type: 'u32'; value: number }
  | { type: 'f32'; value: number }
  | { type: 'bool'; value: boolean }
  | { type: 'string'; value: string }
  | { type: 'array'; itemType: string; value: readonly (number | string | bigint | boolean)[] };

// GGUF value type ids.
const TYPE_ID: Record<string, number> = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 };

class HeaderBytes {
  private parts: Buffer[] = [];
  length = 0;
  push(b: Buffer): void {
    this.parts.push(b);
    this.length += b.length;
  }
  u32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v);
    this.push(b);
  }
  i32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeInt32LE(v);
    this.push(b);
  }
  u64(v: number): void {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.push(b);
  }
  f32(v: number): void {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v);
    this.push(b);
  }
  string(s: string): void {
    const b = Buffer.from(s, 'utf8');
    this.u64(b.length);
    this.push(b);
  }
  item(type: string, v: number | string | bigint | boolean): void {
    if (type === 'string') this.string(String(v));
    else if (type === 'u32') this.u32(Number(v));
    else if (type === 'i32') this.i32(Number(v));
    else if (type === 'f32') this.f32(Number(v));
    else if (type === 'bool') this.push(Buffer.from([v ? 1 : 0]));
    else throw new Error(`synthetic GGUF: no encoder for ${type}`);
  }
  value(m: Meta): void {
    this.u32(TYPE_ID[m.type]);
    if (m.type === 'array') {
      this.u32(TYPE_ID[m.itemType]);
      this.u64(m.value.length);
      for (const v of m.value) this.item(m.itemType, v);
    } else {
      this.item(m.type, m.value);
    }
  }
  bytes(alignment: number): Buffer {
    const pad = alignUp(this.length, alignment) - this.length;
    return Buffer.concat([...this.parts, Buffer.alloc(pad)]);
  }
}

// The tiny SentencePiece tokenizer, its lists padded with unused tokens to the model's vocabulary: llama.cpp takes
// the vocabulary size from the token list and checks the embedding against it.
function tokenizerMetadata(vocab: number): Array<[string, Meta]> {
  return tinyTokenizerGgufMetadata('spm').map(([key, typed]): [string, Meta] => {
    if (typed.type !== 'array') return [key, typed as Meta];
    const items = typed.value as readonly (number | string)[];
    const pad = vocab - items.length;
    if (key === 'tokenizer.ggml.tokens') return [key, { type: 'array', itemType: 'string', value: [...items, ...Array.from({ length: pad }, (_, i) => `<unused_${i}>`)] }];
    // 5: LLAMA_TOKEN_TYPE_UNUSED.
    if (key === 'tokenizer.ggml.token_type') return [key, { type: 'array', itemType: 'i32', value: [...items, ...new Array<number>(pad).fill(5)] }];
    if (key === 'tokenizer.ggml.scores') return [key, { type: 'array', itemType: 'f32', value: [...items, ...new Array<number>(pad).fill(0)] }];
    return [key, { type: 'array', itemType: typed.itemType, value: items }];
  });
}

function ggufMetadata(shape: GpuBenchShape): Array<[string, Meta]> {
  const arch = shape.arch === 'mixtral' ? 'llama' : 'qwen3moe';
  const u32 = (value: number): Meta => ({ type: 'u32', value });
  const meta: Array<[string, Meta]> = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: `synthetic-${shape.key}` }],
    ['general.file_type', u32(32)], // LLAMA_FTYPE_MOSTLY_BF16
    [`${arch}.block_count`, u32(shape.layers)],
    [`${arch}.context_length`, u32(shape.maxContext)],
    [`${arch}.embedding_length`, u32(shape.hidden)],
    [`${arch}.feed_forward_length`, u32(shape.arch === 'mixtral' ? shape.ffn : shape.ffn * shape.topK)],
    [`${arch}.attention.head_count`, u32(shape.heads)],
    [`${arch}.attention.head_count_kv`, u32(shape.kvHeads)],
    [`${arch}.attention.key_length`, u32(shape.headDim)],
    [`${arch}.attention.value_length`, u32(shape.headDim)],
    [`${arch}.rope.dimension_count`, u32(shape.headDim)],
    [`${arch}.rope.freq_base`, { type: 'f32', value: shape.ropeTheta }],
    [`${arch}.attention.layer_norm_rms_epsilon`, { type: 'f32', value: shape.rmsEps }],
    [`${arch}.expert_count`, u32(shape.experts)],
    [`${arch}.expert_used_count`, u32(shape.topK)],
    [`${arch}.vocab_size`, u32(shape.vocab)],
  ];
  if (shape.arch === 'qwen3-moe') meta.push([`${arch}.expert_feed_forward_length`, u32(shape.ffn)]);
  return [...meta, ...tokenizerMetadata(shape.vocab)];
}

const GGUF_ALIGNMENT = 32;

/** Writes the model as a bf16 GGUF file as llama.cpp's converter lays it out (stacked experts, f32 norms and routers). */
export async function writeSyntheticGguf(file: string, shape: GpuBenchShape): Promise<void> {
  const tensors = ggufPlan(shape);
  const meta = ggufMetadata(shape);
  const h = new HeaderBytes();
  h.push(Buffer.from('GGUF', 'latin1'));
  h.u32(3);
  h.u64(tensors.length);
  h.u64(meta.length);
  for (const [key, value] of meta) {
    h.string(key);
    h.value(value);
  }
  let offset = 0;
  for (const t of tensors) {
    h.string(t.name);
    h.u32(t.shape.length);
    // ggml's ne: fastest dimension first.
    for (let d = t.shape.length - 1; d >= 0; d--) h.u64(t.shape[d]);
    h.u32(t.dtype === 'f32' ? 0 : 30); // GGML_TYPE_F32, GGML_TYPE_BF16
    h.u64(offset);
    offset += alignUp(tensorBytes(t), GGUF_ALIGNMENT);
  }
  const handle = await fs.promises.open(file, 'w');
  try {
    await writeAll(handle, h.bytes(GGUF_ALIGNMENT));
    await writeTensors(handle, tensors, GGUF_ALIGNMENT);
  } finally {
    await handle.close();
  }
}

/** Bytes of the bf16 weights of each kind, for the roofline figures. */
export function weightCounts(shape: GpuBenchShape) {
  const { hidden: H, heads, kvHeads, headDim, experts, ffn, vocab } = shape;
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  return {
    /** Parameters of one layer's q, k, v and o projections. */
    attention: 2 * H * qW + 2 * H * kvW,
    router: experts * H,
    /** Parameters of one expert (gate, up, down). */
    expert: 3 * H * ffn,
    lmHead: vocab * H,
    /** Bytes of the whole file's tensor data (bf16 matrices). */
    fileBytes: 2 * (2 * vocab * H + shape.layers * (2 * H * qW + 2 * H * kvW + experts * H + experts * 3 * H * ffn)),
  };
}
