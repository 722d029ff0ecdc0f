// A tiny random gpt-oss checkpoint written by the tests, as Hugging Face safetensors (fused gate_up experts in the
// x @ W layout, interleaved) and as the GGUF llama.cpp's converter makes (arch 'gpt-oss': split, transposed experts,
// post_attention_norm, attn_sinks). Names and layouts are written from modeling_gpt_oss and llama.cpp, not lib/.
import * as fs from 'fs';
import * as path from 'path';
import { toBf16 } from '../lib/dtype';
import { GgufTypedValue, writeGguf } from '../lib/formats/gguf';
import { TensorInput } from '../lib/formats/tensor-store';
import { writeHfDirectory } from './hf-directory';
import { RefGptOssModel } from './reference/gpt-oss';
import { Rng } from './reference/random';
import { tinyTokenizerGgufMetadata } from './tokenizer-fixtures';

export interface TinyGptOss extends RefGptOssModel {
  config: Record<string, unknown>;
}

const VOCAB = 269; // the byte-bpe tiny tokenizer

export interface TinyGptOssOptions {
  /** Sliding window of the sliding layers (default 5). */
  window?: number;
  /** YaRN scaling on (default true). */
  yarn?: boolean;
  /** The SwiGLU clamp (default 2: small enough that the tiny model clamps often). */
  limit?: number;
  /** Expert FFN width (default 40; MXFP4 experts need a multiple of 32). */
  ffn?: number;
}

/** Three layers (sliding, full, sliding), 4 query heads on 2 key/value heads, 4 experts, top-2. */
export function makeTinyGptOss(seed = 1, options: TinyGptOssOptions = {}): TinyGptOss {
  const rng = new Rng(seed);
  const hidden = 64;
  const heads = 4;
  const kvHeads = 2;
  const headDim = 16;
  const experts = 4;
  const ffn = options.ffn ?? 40;
  const window = options.window ?? 5;
  const limit = options.limit ?? 2;
  const types = ['sliding_attention', 'full_attention', 'sliding_attention'];
  const yarn = options.yarn ?? true
    ? { factor: 8, betaFast: 32, betaSlow: 1, originalContext: 256, truncate: false }
    : undefined;
  const m = (rows: number, cols: number, std = 1 / Math.sqrt(cols)) => rng.normalArray(rows * cols, std);
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal());
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  const layers = types.map((type) => ({
    attnNorm: norm(hidden), q: m(qW, hidden), k: m(kvW, hidden), v: m(kvW, hidden), o: m(hidden, qW),
    qBias: rng.normalArray(qW, 0.2), kBias: rng.normalArray(kvW, 0.2), vBias: rng.normalArray(kvW, 0.2),
    oBias: rng.normalArray(hidden, 0.2), sinks: rng.normalArray(heads, 1), postNorm: norm(hidden),
    window: type === 'sliding_attention' ? window : 0,
    moe: {
      experts, k: 2, hidden, ffn, limit, alpha: 1.702,
      router: m(experts, hidden, 2 / Math.sqrt(hidden)), routerBias: rng.normalArray(experts, 0.5),
      gateUp: m(experts * hidden, 2 * ffn, 2 / Math.sqrt(hidden)), gateUpBias: rng.normalArray(experts * 2 * ffn, 0.3),
      down: m(experts * ffn, hidden, 1 / Math.sqrt(ffn)), downBias: rng.normalArray(experts * hidden, 0.2),
    },
  }));
  const config: Record<string, unknown> = {
    model_type: 'gpt_oss', architectures: ['GptOssForCausalLM'], vocab_size: VOCAB, hidden_size: hidden,
    num_attention_heads: heads, num_key_value_heads: kvHeads, head_dim: headDim, num_hidden_layers: types.length,
    num_local_experts: experts, num_experts_per_tok: 2, experts_per_token: 2, intermediate_size: ffn,
    sliding_window: window, layer_types: types, rope_theta: 10000, rms_norm_eps: 1e-5, attention_bias: true,
    swiglu_limit: limit, tie_word_embeddings: false, max_position_embeddings: 2048, torch_dtype: 'float32',
    rope_scaling: yarn
      ? { rope_type: 'yarn', factor: yarn.factor, beta_fast: 32.0, beta_slow: 1.0, original_max_position_embeddings: 256, truncate: false }
      : null,
  };
  return {
    config, vocab: VOCAB, hidden, heads, kvHeads, headDim, ropeTheta: 10000, yarn, rmsNormEpsilon: 1e-5,
    embed: m(VOCAB, hidden, 1), finalNorm: norm(hidden), lmHead: m(VOCAB, hidden), layers,
  };
}

type FileDtype = 'f32' | 'bf16';

// 1-D tensors stay f32, as the converters write norms, biases and sinks.
function tensor(name: string, shape: number[], values: Float32Array, dtype: FileDtype): TensorInput {
  if (shape.length === 1 || dtype === 'f32') return { name, shape, dtype: 'f32', data: values };
  return { name, shape, dtype, data: toBf16(values) };
}

/** Writes the Hugging Face checkpoint directory (config.json, model.safetensors, tokenizer), less `omit`'s tensors
 * and with `extra` ones. */
export async function writeGptOssHf(
  dir: string,
  m: TinyGptOss,
  dtype: FileDtype = 'f32',
  { omit = [], extra = [] }: { omit?: string[]; extra?: TensorInput[] } = {},
): Promise<void> {
  const H = m.hidden;
  const qW = m.heads * m.headDim;
  const kvW = m.kvHeads * m.headDim;
  const t: TensorInput[] = [
    tensor('model.embed_tokens.weight', [m.vocab, H], m.embed, dtype),
    tensor('model.norm.weight', [H], m.finalNorm, dtype),
    tensor('lm_head.weight', [m.vocab, H], m.lmHead, dtype),
  ];
  m.layers.forEach((l, i) => {
    const at = (s: string) => `model.layers.${i}.${s}`;
    const { experts: E, ffn: F } = l.moe;
    t.push(
      tensor(at('input_layernorm.weight'), [H], l.attnNorm, dtype),
      tensor(at('post_attention_layernorm.weight'), [H], l.postNorm, dtype),
      tensor(at('self_attn.q_proj.weight'), [qW, H], l.q, dtype), tensor(at('self_attn.q_proj.bias'), [qW], l.qBias, dtype),
      tensor(at('self_attn.k_proj.weight'), [kvW, H], l.k, dtype), tensor(at('self_attn.k_proj.bias'), [kvW], l.kBias, dtype),
      tensor(at('self_attn.v_proj.weight'), [kvW, H], l.v, dtype), tensor(at('self_attn.v_proj.bias'), [kvW], l.vBias, dtype),
      tensor(at('self_attn.o_proj.weight'), [H, qW], l.o, dtype), tensor(at('self_attn.o_proj.bias'), [H], l.oBias, dtype),
      tensor(at('self_attn.sinks'), [m.heads], l.sinks, dtype),
      tensor(at('mlp.router.weight'), [E, H], l.moe.router, dtype), tensor(at('mlp.router.bias'), [E], l.moe.routerBias, dtype),
      tensor(at('mlp.experts.gate_up_proj'), [E, H, 2 * F], l.moe.gateUp, dtype),
      // HF keeps these 2-D biases in the model dtype.
      tensor(at('mlp.experts.gate_up_proj_bias'), [E, 2 * F], l.moe.gateUpBias, dtype),
      tensor(at('mlp.experts.down_proj'), [E, F, H], l.moe.down, dtype),
      tensor(at('mlp.experts.down_proj_bias'), [E, H], l.moe.downBias, dtype),
    );
  });
  await writeHfDirectory(dir, m.config, 'byte-bpe', [...t.filter((x) => !omit.includes(x.name)), ...extra]);
}

/** The experts as llama.cpp's GptOssModel converter writes them: gate, up [E][F][H], down [E][H][F] and biases. */
export function ggufExperts(l: RefGptOssModel['layers'][number]['moe']) {
  const { experts: E, hidden: H, ffn: F } = l;
  const gate = new Float32Array(E * F * H);
  const up = new Float32Array(E * F * H);
  const down = new Float32Array(E * H * F);
  for (let e = 0; e < E; e++) {
    for (let n = 0; n < F; n++) {
      for (let i = 0; i < H; i++) {
        gate[(e * F + n) * H + i] = l.gateUp[(e * H + i) * 2 * F + 2 * n];
        up[(e * F + n) * H + i] = l.gateUp[(e * H + i) * 2 * F + 2 * n + 1];
        down[(e * H + i) * F + n] = l.down[(e * F + n) * H + i];
      }
    }
  }
  const gateBias = l.gateUpBias.filter((_, j) => j % 2 === 0);
  const upBias = l.gateUpBias.filter((_, j) => j % 2 === 1);
  return { gate, up, down, gateBias, upBias, downBias: l.downBias };
}

/** Each layer's experts as GGUF MXFP4 blocks: gate, up [E][F][H], down [E][H][F]. */
export interface Mxfp4Experts {
  gate: Uint8Array;
  up: Uint8Array;
  down: Uint8Array;
}

// Random MXFP4 blocks of a rows x cols matrix (GGUF's block: an E8M0 byte, then 16 bytes of two 4-bit codes), with
// scales 2^-6..2^-3 so the codes (up to 6 in E2M1) give weights of the size the float model has.
function randomMxfp4(rng: Rng, rows: number, cols: number): Uint8Array {
  const bytes = new Uint8Array((rows * cols) / 32 * 17);
  for (let at = 0; at < bytes.length; at += 17) {
    bytes[at] = rng.int(121, 124);
    for (let j = 1; j < 17; j++) bytes[at + j] = rng.int(0, 255);
  }
  return bytes;
}

/**
 * Replaces `m`'s expert matrices by random MXFP4 ones: returns their blocks, with `m`'s float weights set to the
 * blocks' values (decoded by `decode`, the tests' own dequantizer) in the Hugging Face layout.
 */
export function useMxfp4Experts(
  m: TinyGptOss,
  seed: number,
  decode: (blocks: Uint8Array, rows: number, cols: number) => ArrayLike<number>,
): Mxfp4Experts[] {
  const rng = new Rng(seed);
  return m.layers.map((l) => {
    const { experts: E, hidden: H, ffn: F } = l.moe;
    const blocks = { gate: randomMxfp4(rng, E * F, H), up: randomMxfp4(rng, E * F, H), down: randomMxfp4(rng, E * H, F) };
    const gate = decode(blocks.gate, E * F, H);
    const up = decode(blocks.up, E * F, H);
    const down = decode(blocks.down, E * H, F);
    for (let e = 0; e < E; e++) {
      for (let n = 0; n < F; n++) {
        for (let i = 0; i < H; i++) {
          l.moe.gateUp[(e * H + i) * 2 * F + 2 * n] = gate[(e * F + n) * H + i];
          l.moe.gateUp[(e * H + i) * 2 * F + 2 * n + 1] = up[(e * F + n) * H + i];
          l.moe.down[(e * F + n) * H + i] = down[(e * H + i) * F + n];
        }
      }
    }
    return blocks;
  });
}

/**
 * Writes the model as a llama.cpp 'gpt-oss' GGUF (f32 tensors, or MXFP4 experts as the released conversions have),
 * less `omit`'s tensors.
 */
export async function writeGptOssGguf(file: string, m: TinyGptOss, omit: string[] = [], mxfp4?: Mxfp4Experts[]): Promise<void> {
  const H = m.hidden;
  const qW = m.heads * m.headDim;
  const kvW = m.kvHeads * m.headDim;
  const { experts: E, ffn: F } = m.layers[0].moe;
  const arch = 'gpt-oss';
  const u32 = (value: number): GgufTypedValue => ({ type: 'u32', value });
  const f32 = (value: number): GgufTypedValue => ({ type: 'f32', value });
  const window = m.layers.find((l) => l.window > 0)?.window ?? 0;
  const metadata: Array<[string, GgufTypedValue]> = [
    ['general.architecture', { type: 'string', value: arch }],
    ['general.name', { type: 'string', value: 'tiny-gpt-oss' }],
    [`${arch}.block_count`, u32(m.layers.length)],
    [`${arch}.context_length`, u32(2048)],
    [`${arch}.embedding_length`, u32(H)],
    [`${arch}.feed_forward_length`, u32(F)],
    [`${arch}.expert_feed_forward_length`, u32(F)],
    [`${arch}.attention.head_count`, u32(m.heads)],
    [`${arch}.attention.head_count_kv`, u32(m.kvHeads)],
    [`${arch}.attention.key_length`, u32(m.headDim)],
    [`${arch}.attention.value_length`, u32(m.headDim)],
    [`${arch}.attention.sliding_window`, u32(window)],
    [`${arch}.attention.layer_norm_rms_epsilon`, f32(m.rmsNormEpsilon)],
    [`${arch}.rope.freq_base`, f32(m.ropeTheta)],
    [`${arch}.expert_count`, u32(E)],
    [`${arch}.expert_used_count`, u32(m.layers[0].moe.k)],
    ...(m.yarn
      ? ([
          [`${arch}.rope.scaling.type`, { type: 'string', value: 'yarn' }],
          [`${arch}.rope.scaling.factor`, f32(m.yarn.factor)],
          [`${arch}.rope.scaling.original_context_length`, u32(m.yarn.originalContext)],
        ] as Array<[string, GgufTypedValue]>)
      : []),
    ...tinyTokenizerGgufMetadata('byte-bpe'),
  ];
  const t: TensorInput[] = [
    tensor('token_embd.weight', [m.vocab, H], m.embed, 'f32'),
    tensor('output_norm.weight', [H], m.finalNorm, 'f32'),
    tensor('output.weight', [m.vocab, H], m.lmHead, 'f32'),
  ];
  m.layers.forEach((l, i) => {
    const at = (s: string) => `blk.${i}.${s}`;
    const x = ggufExperts(l.moe);
    t.push(
      tensor(at('attn_norm.weight'), [H], l.attnNorm, 'f32'),
      tensor(at('post_attention_norm.weight'), [H], l.postNorm, 'f32'),
      tensor(at('attn_q.weight'), [qW, H], l.q, 'f32'), tensor(at('attn_q.bias'), [qW], l.qBias, 'f32'),
      tensor(at('attn_k.weight'), [kvW, H], l.k, 'f32'), tensor(at('attn_k.bias'), [kvW], l.kBias, 'f32'),
      tensor(at('attn_v.weight'), [kvW, H], l.v, 'f32'), tensor(at('attn_v.bias'), [kvW], l.vBias, 'f32'),
      tensor(at('attn_output.weight'), [H, qW], l.o, 'f32'), tensor(at('attn_output.bias'), [H], l.oBias, 'f32'),
      tensor(at('attn_sinks.weight'), [m.heads], l.sinks, 'f32'),
      tensor(at('ffn_gate_inp.weight'), [E, H], l.moe.router, 'f32'), tensor(at('ffn_gate_inp.bias'), [E], l.moe.routerBias, 'f32'),
      tensor(at('ffn_gate_exps.bias'), [E, F], x.gateBias, 'f32'),
      tensor(at('ffn_up_exps.bias'), [E, F], x.upBias, 'f32'),
      tensor(at('ffn_down_exps.bias'), [E, H], x.downBias, 'f32'),
    );
    const q = mxfp4?.[i];
    t.push(
      q ? { name: at('ffn_gate_exps.weight'), shape: [E, F, H], dtype: 'mxfp4', data: q.gate } : tensor(at('ffn_gate_exps.weight'), [E, F, H], x.gate, 'f32'),
      q ? { name: at('ffn_up_exps.weight'), shape: [E, F, H], dtype: 'mxfp4', data: q.up } : tensor(at('ffn_up_exps.weight'), [E, F, H], x.up, 'f32'),
      q ? { name: at('ffn_down_exps.weight'), shape: [E, H, F], dtype: 'mxfp4', data: q.down } : tensor(at('ffn_down_exps.weight'), [E, H, F], x.down, 'f32'),
    );
  });
  await writeGguf(file, { metadata, tensors: t.filter((x) => !omit.includes(x.name)) });
}

// E2M1 code -> value, as the OCP MX format and HF's gpt-oss define it.
const FP4_VALUES = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0, -0.5, -1, -1.5, -2, -3, -4, -6];

/** The released checkpoints' MXFP4 experts of one layer: `*_blocks` [E][rows][cols/32][16] and `*_scales`. */
export interface HfMxfp4Experts {
  gateUpBlocks: Uint8Array;
  gateUpScales: Uint8Array;
  downBlocks: Uint8Array;
  downScales: Uint8Array;
}

/**
 * Replaces `m`'s expert matrices by random MXFP4 ones in Hugging Face's layout (gate_up's rows interleave gate and
 * up; byte k of a block holds elements 2k in its low nibble and 2k + 1 in its high one; weight = value * 2^(scale -
 * 127)), setting `m`'s float weights to what they decode to.
 */
export function useHfMxfp4Experts(m: TinyGptOss, seed: number): HfMxfp4Experts[] {
  const rng = new Rng(seed);
  return m.layers.map((l) => {
    const { experts: E, hidden: H, ffn: F } = l.moe;
    const random = (rows: number, cols: number) => {
      const blocks = Uint8Array.from({ length: (rows * cols) / 2 }, () => rng.int(0, 255));
      const scales = Uint8Array.from({ length: (rows * cols) / 32 }, () => rng.int(121, 124));
      return { blocks, scales };
    };
    // value of row r, column c of a [rows][cols] MXFP4 matrix
    const decode = (q: { blocks: Uint8Array; scales: Uint8Array }, cols: number, r: number, c: number) => {
      const index = r * cols + c;
      const code = (q.blocks[index >> 1] >> ((index & 1) * 4)) & 15;
      return FP4_VALUES[code] * 2 ** (q.scales[Math.floor(index / 32)] - 127);
    };
    const gateUp = random(E * 2 * F, H);
    const down = random(E * H, F);
    for (let e = 0; e < E; e++) {
      for (let n = 0; n < 2 * F; n++) {
        // HF's dequantized gate_up_proj is [E][H][2F]: the transpose of the blocks' [2F][H] rows.
        for (let i = 0; i < H; i++) l.moe.gateUp[(e * H + i) * 2 * F + n] = decode(gateUp, H, e * 2 * F + n, i);
      }
      for (let i = 0; i < H; i++) {
        for (let n = 0; n < F; n++) l.moe.down[(e * F + n) * H + i] = decode(down, F, e * H + i, n);
      }
    }
    return { gateUpBlocks: gateUp.blocks, gateUpScales: gateUp.scales, downBlocks: down.blocks, downScales: down.scales };
  });
}

/** A safetensors file of raw U8 tensors (the format's own layout: header length, JSON header, data). */
function writeU8Safetensors(file: string, tensors: Array<{ name: string; shape: number[]; data: Uint8Array }>): void {
  const header: Record<string, unknown> = {};
  let at = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'U8', shape: t.shape, data_offsets: [at, at + t.data.length] };
    at += t.data.length;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([length, Buffer.from(json), ...tensors.map((t) => Buffer.from(t.data))]));
}

/** The checkpoint with its experts as the released MXFP4 `*_blocks` / `*_scales`, in a second shard. */
export async function writeGptOssHfMxfp4(dir: string, m: TinyGptOss, experts: HfMxfp4Experts[]): Promise<void> {
  const expertNames = (i: number) => [`model.layers.${i}.mlp.experts.gate_up_proj`, `model.layers.${i}.mlp.experts.down_proj`];
  await writeGptOssHf(dir, m, 'f32', { omit: m.layers.flatMap((_, i) => expertNames(i)) });
  const first = 'model-00001-of-00002.safetensors';
  const second = 'model-00002-of-00002.safetensors';
  fs.renameSync(path.join(dir, 'model.safetensors'), path.join(dir, first));
  const raw = fs.readFileSync(path.join(dir, first));
  const names = Object.keys(JSON.parse(raw.subarray(8, 8 + Number(raw.readBigUInt64LE(0))).toString())).filter((n) => n !== '__metadata__');
  const u8 = m.layers.flatMap((l, i) => {
    const { experts: E, hidden: H, ffn: F } = l.moe;
    const at = `model.layers.${i}.mlp.experts`;
    const q = experts[i];
    return [
      { name: `${at}.gate_up_proj_blocks`, shape: [E, 2 * F, H / 32, 16], data: q.gateUpBlocks },
      { name: `${at}.gate_up_proj_scales`, shape: [E, 2 * F, H / 32], data: q.gateUpScales },
      { name: `${at}.down_proj_blocks`, shape: [E, H, F / 32, 16], data: q.downBlocks },
      { name: `${at}.down_proj_scales`, shape: [E, H, F / 32], data: q.downScales },
    ];
  });
  writeU8Safetensors(path.join(dir, second), u8);
  const weightMap = Object.fromEntries([...names.map((n) => [n, first]), ...u8.map((t) => [t.name, second])]);
  fs.writeFileSync(path.join(dir, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
}
