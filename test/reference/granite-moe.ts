// Float64 test reference of Granite MoE, written from Hugging Face's modeling_granitemoe (independent of lib/):
// embeddings times embedding_multiplier; Llama attention (optional q/k/v/o biases, RoPE on halves) with
// attention_multiplier as the softmax scale; each sublayer's output times residual_multiplier before the residual
// add; top-k of the router logits with a softmax over the kept k; experts stacked with gate and up fused in
// input_linear [E][2F][H] (chunk(2): gate first), output_linear [E][H][F]; the optional shared MLP (granitemoeshared)
// fused the same way and added to the experts' output; logits divided by logits_scaling.
import { causalAttention, linear, rmsNorm, topKSoftmax } from './ops';

type Values = ArrayLike<number>;

export interface RefGraniteMoe {
  experts: number;
  k: number;
  ffn: number;
  router: Float32Array; // [E][H]
  inputLinear: Float32Array; // [E][2F][H]
  outputLinear: Float32Array; // [E][H][F]
  /** granitemoeshared: input_linear [2S][H], output_linear [H][S]. */
  shared?: { ffn: number; inputLinear: Float32Array; outputLinear: Float32Array };
}

export interface RefGraniteLayer {
  attnNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  bias?: { q: Float32Array; k: Float32Array; v: Float32Array; o: Float32Array };
  postNorm: Float32Array;
  moe: RefGraniteMoe;
}

export interface RefGraniteModel {
  vocab: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  ropeTheta: number;
  rmsNormEpsilon: number;
  embeddingMultiplier: number;
  residualMultiplier: number;
  attentionMultiplier: number;
  logitsScaling: number;
  embed: Float32Array;
  finalNorm: Float32Array;
  /** Absent: tied to the embeddings. */
  lmHead?: Float32Array;
  layers: RefGraniteLayer[];
}



// rotate_half RoPE: dimension i with i + headDim / 2.
function rope(x: Float64Array, rows: number, heads: number, headDim: number, theta: number): void {
  const half = headDim / 2;
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t / theta ** ((2 * i) / headDim);
      const c = Math.cos(angle);
      const s = Math.sin(angle);
      for (let h = 0; h < heads; h++) {
        const base = (t * heads + h) * headDim;
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * c - b * s;
        x[base + i + half] = b * c + a * s;
      }
    }
  }
}


// silu(gate) * up of a fused [2F][H] input_linear at `offset`, then its [H][F] output_linear at `downOffset`.
function fusedMlp(x: Float64Array, t: number, H: number, F: number, inW: Values, offset: number, outW: Values, downOffset: number): Float64Array {
  const row = x.subarray(t * H, (t + 1) * H);
  const act = new Float64Array(F);
  for (let n = 0; n < F; n++) {
    let gate = 0;
    let up = 0;
    for (let i = 0; i < H; i++) {
      gate += row[i] * inW[offset + n * H + i];
      up += row[i] * inW[offset + (F + n) * H + i];
    }
    act[n] = (gate / (1 + Math.exp(-gate))) * up;
  }
  const out = new Float64Array(H);
  for (let o = 0; o < H; o++) {
    let sum = 0;
    for (let n = 0; n < F; n++) sum += act[n] * outW[downOffset + o * F + n];
    out[o] = sum;
  }
  return out;
}

/** The MoE block's output (shared MLP included) for `rows` rows of x, and the experts each row kept. */
export function refGraniteMoe(f: RefGraniteMoe, x: Float64Array, rows: number, H: number): { out: Float64Array; ids: number[][] } {
  const { experts, ffn: F } = f;
  const out = new Float64Array(rows * H);
  const logits = linear(x, rows, H, f.router, experts);
  const ids: number[][] = [];
  for (let t = 0; t < rows; t++) {
    const kept = topKSoftmax(Array.from(logits.subarray(t * experts, (t + 1) * experts)), f.k);
    ids.push(kept.ids);
    kept.ids.forEach((e, j) => {
      const y = fusedMlp(x, t, H, F, f.inputLinear, e * 2 * F * H, f.outputLinear, e * H * F);
      for (let o = 0; o < H; o++) out[t * H + o] += kept.weights[j] * y[o];
    });
    if (f.shared) {
      const y = fusedMlp(x, t, H, f.shared.ffn, f.shared.inputLinear, 0, f.shared.outputLinear, 0);
      for (let o = 0; o < H; o++) out[t * H + o] += y[o];
    }
  }
  return { out, ids };
}

/** Logits [tokens][vocab] of a fresh sequence. */
export function refGraniteForward(m: RefGraniteModel, tokens: readonly number[]): Float64Array {
  const { hidden: H, heads, kvHeads, rmsNormEpsilon: eps } = m;
  const headDim = H / heads;
  const T = tokens.length;
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  let x = new Float64Array(T * H);
  tokens.forEach((id, t) => {
    for (let h = 0; h < H; h++) x[t * H + h] = m.embed[id * H + h] * m.embeddingMultiplier;
  });
  for (const layer of m.layers) {
    const h = rmsNorm(x, T, H, layer.attnNorm, eps);
    const q = linear(h, T, H, layer.q, qW, layer.bias?.q);
    const k = linear(h, T, H, layer.k, kvW, layer.bias?.k);
    const v = linear(h, T, H, layer.v, kvW, layer.bias?.v);
    rope(q, T, heads, headDim, m.ropeTheta);
    rope(k, T, kvHeads, headDim, m.ropeTheta);
    const attn = linear(causalAttention(q, k, v, T, { heads: m.heads, kvHeads: m.kvHeads, headDim: m.hidden / m.heads, scale: m.attentionMultiplier }), T, qW, layer.o, H, layer.bias?.o);
    x = x.map((value, i) => value + attn[i] * m.residualMultiplier);
    const ff = refGraniteMoe(layer.moe, rmsNorm(x, T, H, layer.postNorm, eps), T, H).out;
    x = x.map((value, i) => value + ff[i] * m.residualMultiplier);
  }
  const logits = linear(rmsNorm(x, T, H, m.finalNorm, eps), T, H, m.lmHead ?? m.embed, m.vocab);
  return logits.map((value) => value / m.logitsScaling);
}
