// A tiny random LongCat-Flash checkpoint (shortcut-connected double layers, MLA, identity zero experts), written by
// the tests as Hugging Face safetensors. Names, shapes and config keys follow modeling_longcat_flash.py and
// configuration_longcat_flash.py (the released checkpoint's per-expert tensors), independently of lib/model/.
import { toBf16 } from '../lib/dtype';
import { TensorInput } from '../lib/formats/tensor-store';
import { writeHfDirectory } from './hf-directory';
import { RefLongcatAttention, RefLongcatLayer, RefLongcatModel } from './reference/longcat-model';
import { Rng } from './reference/random';

export interface TinyLongcatModel extends RefLongcatModel {
  config: Record<string, unknown>;
}

const VOCAB = 277; // the 'spm' tiny tokenizer's

/**
 * A tiny random LongCat-Flash (deterministic for a seed): 2 double layers, 8 FFN experts and 4 identity experts,
 * top-3. The zero experts' selection bias is raised so that they win a share of the slots, as in the real model.
 */
export function makeTinyLongcat(seed: number): TinyLongcatModel {
  const rng = new Rng(seed);
  const matrix = (rows: number, cols: number, std = 1 / Math.sqrt(cols)) =>
    Float32Array.from({ length: rows * cols }, () => rng.normal() * std);
  const norm = (n: number) => Float32Array.from({ length: n }, () => 1 + 0.1 * rng.normal());
  const hidden = 64;
  const heads = 4;
  const qLoraRank = 32;
  const kvLoraRank = 24;
  const nopeDim = 16;
  const ropeDim = 8;
  const valueDim = 12;
  const experts = 8;
  const zeroExperts = 4;
  const expertFfn = 32;
  const denseFfn = 48;
  const k = 3;
  const routedScale = 3;
  const qHead = nopeDim + ropeDim;
  const attention = (): RefLongcatAttention => ({
    attnNorm: norm(hidden), qA: matrix(qLoraRank, hidden), qANorm: norm(qLoraRank), qB: matrix(heads * qHead, qLoraRank),
    kvA: matrix(kvLoraRank + ropeDim, hidden), kvANorm: norm(kvLoraRank),
    // The LoRA scales (sqrt(64 / 32), sqrt(64 / 24)) grow the query and latent: smaller up-projections keep the
    // softmax away from saturation.
    kvB: matrix(heads * (nopeDim + valueDim), kvLoraRank, 0.5 / Math.sqrt(kvLoraRank)), o: matrix(hidden, heads * valueDim),
  });
  const mlp = () => ({ gate: matrix(denseFfn, hidden), up: matrix(denseFfn, hidden), down: matrix(hidden, denseFfn) });
  const layers: RefLongcatLayer[] = [0, 1].map(() => ({
    attnNorm: [norm(hidden), norm(hidden)],
    mlpNorm: [norm(hidden), norm(hidden)],
    attn: [attention(), attention()],
    mlps: [mlp(), mlp()],
    router: matrix(experts + zeroExperts, hidden, 2 / Math.sqrt(hidden)),
    selectionBias: Float32Array.from({ length: experts + zeroExperts }, (_, e) => 0.02 * rng.normal() + (e >= experts ? 0.06 : 0)),
    gate: Array.from({ length: experts }, () => matrix(expertFfn, hidden)),
    up: Array.from({ length: experts }, () => matrix(expertFfn, hidden)),
    down: Array.from({ length: experts }, () => matrix(hidden, expertFfn)),
  }));
  const config = {
    architectures: ['LongcatFlashForCausalLM'], model_type: 'longcat_flash', vocab_size: VOCAB, hidden_size: hidden,
    ffn_hidden_size: denseFfn, expert_ffn_hidden_size: expertFfn, num_layers: layers.length,
    num_attention_heads: heads, kv_lora_rank: kvLoraRank, q_lora_rank: qLoraRank, qk_rope_head_dim: ropeDim,
    qk_nope_head_dim: nopeDim, v_head_dim: valueDim, head_dim: ropeDim, n_routed_experts: experts, moe_topk: k,
    zero_expert_num: zeroExperts, zero_expert_type: 'identity', routed_scaling_factor: routedScale,
    max_position_embeddings: 512, rms_norm_eps: 1e-5, rope_theta: 10000, attention_bias: false,
    attention_method: 'MLA', mla_scale_q_lora: true, mla_scale_kv_lora: true, hidden_act: 'silu',
    tie_word_embeddings: false, torch_dtype: 'float32',
  };
  return {
    config, vocab: VOCAB, hidden, heads, qLoraRank, kvLoraRank, nopeDim, ropeDim, valueDim, ropeTheta: 10000,
    rmsNormEpsilon: 1e-5, denseFfn, expertFfn, experts, zeroExperts, k, routedScale,
    embed: matrix(VOCAB, hidden, 1), finalNorm: norm(hidden), lmHead: matrix(VOCAB, hidden), layers,
  };
}

export type FileDtype = 'f32' | 'bf16';

function tensor(name: string, shape: number[], values: Float32Array, dtype: FileDtype): TensorInput {
  const as = shape.length === 1 ? 'f32' : dtype; // norms and the correction bias stay f32
  return { name, shape, dtype: as, data: as === 'f32' ? values : toBf16(values) };
}

/** The checkpoint's tensors (modeling_longcat_flash.py's module names, one tensor per expert). */
export function longcatHfTensors(m: TinyLongcatModel, dtype: FileDtype): TensorInput[] {
  const H = m.hidden;
  const qHead = m.nopeDim + m.ropeDim;
  const out = [
    tensor('model.embed_tokens.weight', [m.vocab, H], m.embed, dtype), tensor('model.norm.weight', [H], m.finalNorm, dtype),
    tensor('lm_head.weight', [m.vocab, H], m.lmHead, dtype),
  ];
  m.layers.forEach((l, i) => {
    const at = (s: string) => `model.layers.${i}.${s}`;
    for (const j of [0, 1]) {
      const a = l.attn[j];
      out.push(
        tensor(at(`input_layernorm.${j}.weight`), [H], l.attnNorm[j], dtype),
        tensor(at(`post_attention_layernorm.${j}.weight`), [H], l.mlpNorm[j], dtype),
        tensor(at(`self_attn.${j}.q_a_proj.weight`), [m.qLoraRank!, H], a.qA!, dtype),
        tensor(at(`self_attn.${j}.q_a_layernorm.weight`), [m.qLoraRank!], a.qANorm!, dtype),
        tensor(at(`self_attn.${j}.q_b_proj.weight`), [m.heads * qHead, m.qLoraRank!], a.qB!, dtype),
        tensor(at(`self_attn.${j}.kv_a_proj_with_mqa.weight`), [m.kvLoraRank + m.ropeDim, H], a.kvA, dtype),
        tensor(at(`self_attn.${j}.kv_a_layernorm.weight`), [m.kvLoraRank], a.kvANorm, dtype),
        tensor(at(`self_attn.${j}.kv_b_proj.weight`), [m.heads * (m.nopeDim + m.valueDim), m.kvLoraRank], a.kvB, dtype),
        tensor(at(`self_attn.${j}.o_proj.weight`), [H, m.heads * m.valueDim], a.o, dtype),
        tensor(at(`mlps.${j}.gate_proj.weight`), [m.denseFfn, H], l.mlps[j].gate, dtype),
        tensor(at(`mlps.${j}.up_proj.weight`), [m.denseFfn, H], l.mlps[j].up, dtype),
        tensor(at(`mlps.${j}.down_proj.weight`), [H, m.denseFfn], l.mlps[j].down, dtype),
      );
    }
    const slots = m.experts + m.zeroExperts;
    // HF keeps the classifier in f32 (_keep_in_fp32_modules) and the correction bias is an f32 buffer.
    out.push(
      tensor(at('mlp.router.classifier.weight'), [slots, H], l.router, 'f32'),
      tensor(at('mlp.router.e_score_correction_bias'), [slots], l.selectionBias, 'f32'),
    );
    for (let e = 0; e < m.experts; e++) {
      out.push(
        tensor(at(`mlp.experts.${e}.gate_proj.weight`), [m.expertFfn, H], l.gate[e], dtype),
        tensor(at(`mlp.experts.${e}.up_proj.weight`), [m.expertFfn, H], l.up[e], dtype),
        tensor(at(`mlp.experts.${e}.down_proj.weight`), [H, m.expertFfn], l.down[e], dtype),
      );
    }
  });
  return out;
}

/** Writes a Hugging Face checkpoint directory; `edit` may change the config or the tensors first (bad inputs). */
export async function writeLongcatHf(
  dir: string,
  m: TinyLongcatModel,
  dtype: FileDtype = 'f32',
  edit?: (config: Record<string, unknown>, tensors: TensorInput[]) => TensorInput[],
): Promise<void> {
  const config = { ...m.config };
  const tensors = longcatHfTensors(m, dtype);
  await writeHfDirectory(dir, config, 'spm', edit ? edit(config, tensors) : tensors);
}
