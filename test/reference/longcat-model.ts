// Float64 test reference: a LongCat-Flash decoder, written from Hugging Face's modeling_longcat_flash.py,
// independent of lib/. Each layer: two MLA attentions (the MLA reference, with the query and latent LoRA scales),
// two dense SwiGLU MLPs, and one MoE block fed by the first MLP's normed input and added after the second MLP:
//   h = x + attn0(ln_in0(x)); n = ln_post0(h); m = moe(n); h = h + mlp0(n);
//   h = h + attn1(ln_in1(h)); out = h + mlp1(ln_post1(h)) + m.
// The router: softmax over experts + zero experts (fp32 logits), ranked with e_score_correction_bias, weights the
// unbiased probabilities times routed_scaling_factor; a zero (identity) expert adds weight * n.
import { mlaAttention, RefMlaLayer, RefMlaModel } from './mla-model';
import { linear, rmsNorm } from './ops';
import { RefPolicy } from './policy';
import { selectByRule } from './router-rule';

export type RefLongcatAttention = Omit<RefMlaLayer, 'mlpNorm' | 'ffn'>;

export interface RefDenseMlp {
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
}

export interface RefLongcatLayer {
  /** input_layernorm.{0,1} */
  attnNorm: [Float32Array, Float32Array];
  /** post_attention_layernorm.{0,1} */
  mlpNorm: [Float32Array, Float32Array];
  attn: [RefLongcatAttention, RefLongcatAttention];
  mlps: [RefDenseMlp, RefDenseMlp];
  /** router.classifier [experts + zeroExperts][hidden] */
  router: Float32Array;
  /** router.e_score_correction_bias [experts + zeroExperts] */
  selectionBias: Float32Array;
  gate: Float32Array[];
  up: Float32Array[];
  down: Float32Array[];
}

export interface RefLongcatModel extends Omit<RefMlaModel, 'layers'> {
  denseFfn: number;
  expertFfn: number;
  experts: number;
  zeroExperts: number;
  k: number;
  routedScale: number;
  layers: RefLongcatLayer[];
}

function swiglu(x: Float64Array, rows: number, hidden: number, ffn: number, w: RefDenseMlp): Float64Array {
  const gate = linear(x, rows, hidden, w.gate, ffn);
  const up = linear(x, rows, hidden, w.up, ffn);
  const act = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
  return linear(act, rows, ffn, w.down, hidden);
}

export interface RefLongcatResult {
  logits: Float64Array;
  /** Per MoE layer, per token: routed slots (FFN and zero experts). */
  counts: Int32Array[];
  /** Per MoE layer, per token: FFN experts among them. */
  ffnCounts: Int32Array[];
}

function moe(m: RefLongcatModel, l: RefLongcatLayer, x: Float64Array, T: number, policy: RefPolicy) {
  const H = m.hidden;
  const slots = m.experts + m.zeroExperts;
  const logits = linear(x, T, H, l.router, slots);
  const out = new Float64Array(T * H);
  const counts = new Int32Array(T);
  const ffnCounts = new Int32Array(T);
  for (let t = 0; t < T; t++) {
    const row = Float32Array.from(logits.subarray(t * slots, (t + 1) * slots));
    const { ids, weights } = selectByRule(row, { scoring: 'softmax', selectionBias: l.selectionBias, scale: m.routedScale }, policy);
    counts[t] = ids.length;
    const xt = x.subarray(t * H, (t + 1) * H);
    ids.forEach((e, s) => {
      const w = weights[s];
      if (e >= m.experts) {
        for (let i = 0; i < H; i++) out[t * H + i] += w * xt[i];
        return;
      }
      ffnCounts[t]++;
      const y = swiglu(Float64Array.from(xt), 1, H, m.expertFfn, { gate: l.gate[e], up: l.up[e], down: l.down[e] });
      for (let i = 0; i < H; i++) out[t * H + i] += w * y[i];
    });
  }
  return { out, counts, ffnCounts };
}

/** Logits [tokens][vocab] of a fresh sequence under `policy` (default: the model's top-k). */
export function refLongcatForward(m: RefLongcatModel, tokens: readonly number[], policy?: RefPolicy): RefLongcatResult {
  const { hidden: H, rmsNormEpsilon: eps } = m;
  const T = tokens.length;
  const used = policy ?? { kind: 'top-k', k: m.k };
  const scales = { query: Math.sqrt(H / m.qLoraRank!), latent: Math.sqrt(H / m.kvLoraRank) };
  let x = new Float64Array(T * H);
  tokens.forEach((id, t) => {
    for (let i = 0; i < H; i++) x[t * H + i] = m.embed[id * H + i];
  });
  const counts: Int32Array[] = [];
  const ffnCounts: Int32Array[] = [];
  const add = (a: Float64Array, b: Float64Array) => a.map((v, i) => v + b[i]);
  for (const l of m.layers) {
    x = add(x, mlaAttention(m, l.attn[0], rmsNorm(x, T, H, l.attnNorm[0], eps), T, scales));
    const normed = rmsNorm(x, T, H, l.mlpNorm[0], eps);
    const shortcut = moe(m, l, normed, T, used);
    counts.push(shortcut.counts);
    ffnCounts.push(shortcut.ffnCounts);
    x = add(x, swiglu(normed, T, H, m.denseFfn, l.mlps[0]));
    x = add(x, mlaAttention(m, l.attn[1], rmsNorm(x, T, H, l.attnNorm[1], eps), T, scales));
    x = add(add(x, swiglu(rmsNorm(x, T, H, l.mlpNorm[1], eps), T, H, m.denseFfn, l.mlps[1])), shortcut.out);
  }
  return { logits: linear(rmsNorm(x, T, H, m.finalNorm, eps), T, H, m.lmHead, m.vocab), counts, ffnCounts };
}
