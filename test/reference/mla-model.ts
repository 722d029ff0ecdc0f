// Float64 test reference: a DeepSeek-V2 decoder (multi-head latent attention, MoE with shared experts), written from
// Hugging Face's modeling_deepseek.py in its plain (non-absorbed) form, independent of lib/: keys and values are
// expanded from the latent for every head, and RoPE de-interleaves q and k before rotate_half as HF does.
// The feed-forward (dense, or MoE under its router rule) is the Llama-family reference's.
import { feedForward, RefFeedForward } from './model';
import { linear, rmsNorm } from './ops';

type Values = ArrayLike<number>;

export interface RefMlaLayer {
  attnNorm: Float32Array;
  /** With a low-rank query: q_a_proj [qLoraRank][hidden], its norm, q_b_proj [heads * qHead][qLoraRank]. */
  qA?: Float32Array;
  qANorm?: Float32Array;
  qB?: Float32Array;
  /** Without: q_proj [heads * qHead][hidden]. */
  q?: Float32Array;
  /** kv_a_proj_with_mqa [kvLoraRank + ropeDim][hidden]. */
  kvA: Float32Array;
  kvANorm: Float32Array;
  /** kv_b_proj [heads * (nopeDim + valueDim)][kvLoraRank]. */
  kvB: Float32Array;
  /** o_proj [hidden][heads * valueDim]. */
  o: Float32Array;
  mlpNorm: Float32Array;
  ffn: RefFeedForward;
}

export interface RefDeepseekYarn {
  factor: number;
  originalContext: number;
  betaFast: number;
  betaSlow: number;
  mscale: number;
  mscaleAllDim: number;
}

// HF yarn_get_mscale.
const yarnMscale = (scale: number, m: number): number => (scale <= 1 ? 1 : 0.1 * m * Math.log(scale) + 1);

/** DeepSeek's YaRN inverse frequencies over `dim` rotated dims, its cos/sin factor and its softmax factor. */
export function deepseekYarn(y: RefDeepseekYarn, dim: number, base: number): { inv: number[]; cosSin: number; softmax: number } {
  const correction = (rotations: number) => (dim * Math.log(y.originalContext / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  const low = Math.max(Math.floor(correction(y.betaFast)), 0);
  let high = Math.min(Math.ceil(correction(y.betaSlow)), dim - 1);
  if (low === high) high += 0.001;
  const inv: number[] = [];
  for (let i = 0; i < dim / 2; i++) {
    const extrapolation = 1 / base ** ((2 * i) / dim);
    const interpolation = extrapolation / y.factor;
    const mask = 1 - Math.min(1, Math.max(0, (i - low) / (high - low)));
    inv.push(interpolation * (1 - mask) + extrapolation * mask);
  }
  const cosSin = yarnMscale(y.factor, y.mscale) / yarnMscale(y.factor, y.mscaleAllDim);
  const softmax = y.mscaleAllDim ? yarnMscale(y.factor, y.mscaleAllDim) ** 2 : 1;
  return { inv, cosSin, softmax };
}

export interface RefMlaModel {
  vocab: number;
  hidden: number;
  heads: number;
  qLoraRank?: number;
  kvLoraRank: number;
  nopeDim: number;
  ropeDim: number;
  valueDim: number;
  ropeTheta: number;
  /** DeepSeek's YaRN (HF DeepseekV2YarnRotaryEmbedding), when the config has rope_scaling. */
  yarn?: RefDeepseekYarn;
  rmsNormEpsilon: number;
  embed: Float32Array;
  finalNorm: Float32Array;
  lmHead: Float32Array;
  layers: RefMlaLayer[];
}



/**
 * HF DeepSeek-V2 apply_rotary_pos_emb on one vector of `d` values at `position`: x.view(d/2, 2).transpose(),
 * then x * cos + rotate_half(x) * sin with cos/sin of cat(freqs, freqs). Returns the rotated (de-interleaved) vector.
 */
function hfRope(x: Values, position: number, theta: number, yarn?: { inv: number[]; cosSin: number }): Float64Array {
  const d = x.length;
  const half = d / 2;
  const y = new Float64Array(d);
  for (let i = 0; i < half; i++) {
    y[i] = x[2 * i];
    y[i + half] = x[2 * i + 1];
  }
  const out = new Float64Array(d);
  for (let i = 0; i < d; i++) {
    const angle = position * (yarn ? yarn.inv[i % half] : theta ** ((-2 * (i % half)) / d));
    const rotated = i < half ? -y[i + half] : y[i - half];
    const factor = yarn ? yarn.cosSin : 1;
    out[i] = y[i] * Math.cos(angle) * factor + rotated * Math.sin(angle) * factor;
  }
  return out;
}

/**
 * One MLA attention over a fresh sequence. `loraScales` (LongCat-Flash): the query (nope and rope parts) times
 * `query` after q_b_proj, the normed latent times `latent` before kv_b_proj, as modeling_longcat_flash.py does.
 */
export function mlaAttention(
  m: Omit<RefMlaModel, 'layers'>,
  l: Omit<RefMlaLayer, 'mlpNorm' | 'ffn'>,
  h: Float64Array,
  T: number,
  loraScales?: { query: number; latent: number },
): Float64Array {
  const { hidden: H, heads, kvLoraRank: R, nopeDim: N, ropeDim: P, valueDim: V, rmsNormEpsilon: eps } = m;
  const qHead = N + P;
  const yarn = m.yarn ? deepseekYarn(m.yarn, P, m.ropeTheta) : undefined;
  const unscaledQ = m.qLoraRank
    ? linear(rmsNorm(linear(h, T, H, l.qA!, m.qLoraRank), T, m.qLoraRank, l.qANorm!, eps), T, m.qLoraRank, l.qB!, heads * qHead)
    : linear(h, T, H, l.q!, heads * qHead);
  const q = loraScales ? unscaledQ.map((v) => v * loraScales.query) : unscaledQ;
  const ckv = linear(h, T, H, l.kvA, R + P);
  const latent = new Float64Array(T * R);
  for (let t = 0; t < T; t++) latent.set(ckv.subarray(t * (R + P), t * (R + P) + R), t * R);
  const normed = rmsNorm(latent, T, R, l.kvANorm, eps);
  const kv = linear(loraScales ? normed.map((v) => v * loraScales.latent) : normed, T, R, l.kvB, heads * (N + V));
  // Full keys [T][heads][qHead] and values [T][heads][V], as HF builds them for its attention.
  const queries = new Float64Array(T * heads * qHead);
  const keys = new Float64Array(T * heads * qHead);
  const values = new Float64Array(T * heads * V);
  for (let t = 0; t < T; t++) {
    const kPe = hfRope(ckv.subarray(t * (R + P) + R, (t + 1) * (R + P)), t, m.ropeTheta, yarn);
    for (let hd = 0; hd < heads; hd++) {
      const qRow = q.subarray((t * heads + hd) * qHead, (t * heads + hd + 1) * qHead);
      const at = (t * heads + hd) * qHead;
      queries.set(qRow.subarray(0, N), at);
      queries.set(hfRope(qRow.subarray(N), t, m.ropeTheta, yarn), at + N);
      const kvRow = kv.subarray((t * heads + hd) * (N + V), (t * heads + hd + 1) * (N + V));
      keys.set(kvRow.subarray(0, N), at);
      keys.set(kPe, at + N);
      values.set(kvRow.subarray(N), (t * heads + hd) * V);
    }
  }
  const scale = (yarn ? yarn.softmax : 1) / Math.sqrt(qHead);
  const out = new Float64Array(T * heads * V);
  for (let t = 0; t < T; t++) {
    for (let hd = 0; hd < heads; hd++) {
      const scores: number[] = [];
      for (let p = 0; p <= t; p++) {
        let dot = 0;
        for (let d = 0; d < qHead; d++) dot += queries[(t * heads + hd) * qHead + d] * keys[(p * heads + hd) * qHead + d];
        scores.push(dot * scale);
      }
      const max = Math.max(...scores);
      const weights = scores.map((s) => Math.exp(s - max));
      const total = weights.reduce((a, b) => a + b, 0);
      for (let p = 0; p <= t; p++) {
        for (let d = 0; d < V; d++) out[(t * heads + hd) * V + d] += (weights[p] / total) * values[(p * heads + hd) * V + d];
      }
    }
  }
  return linear(out, T, heads * V, l.o, H);
}

/** Logits [tokens][vocab] of a fresh sequence, and the experts each token used in each MoE layer. */
export function refMlaForward(m: RefMlaModel, tokens: readonly number[]): { logits: Float64Array; counts: Int32Array[] } {
  const { hidden: H, rmsNormEpsilon: eps } = m;
  const T = tokens.length;
  let x = new Float64Array(T * H);
  tokens.forEach((id, t) => {
    for (let i = 0; i < H; i++) x[t * H + i] = m.embed[id * H + i];
  });
  const counts: Int32Array[] = [];
  for (const layer of m.layers) {
    const attn = mlaAttention(m, layer, rmsNorm(x, T, H, layer.attnNorm, eps), T);
    x = x.map((value, i) => value + attn[i]);
    const ff = feedForward(layer.ffn, rmsNorm(x, T, H, layer.mlpNorm, eps), T, H);
    if (ff.counts) counts.push(ff.counts);
    x = x.map((value, i) => value + ff.out[i]);
  }
  return { logits: linear(rmsNorm(x, T, H, m.finalNorm, eps), T, H, m.lmHead, m.vocab), counts };
}
