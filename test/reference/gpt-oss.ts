// Float64 test reference of gpt-oss, written from Hugging Face's modeling_gpt_oss (independent of lib/): attention
// with q/k/v/o biases, YaRN RoPE on halves, a learned sink logit per head joining each softmax's denominator, a
// sliding window on the layers that have one; an MoE of top-k over biased router logits with a softmax over the kept
// k, experts in HF's fused layout with biases and the clamped SwiGLU.
import { linear, rmsNorm, topKSoftmax } from './ops';

/** One MoE block in the Hugging Face layout: x @ W, gate and up interleaved in gate_up's last dimension. */
export interface RefGptOssExperts {
  experts: number;
  k: number;
  hidden: number;
  ffn: number;
  router: Float32Array; // [E][H]
  routerBias: Float32Array; // [E]
  gateUp: Float32Array; // [E][H][2F]
  gateUpBias: Float32Array; // [E][2F]
  down: Float32Array; // [E][F][H]
  downBias: Float32Array; // [E][H]
  limit: number;
  alpha: number;
}

export interface RefGptOssLayer {
  attnNorm: Float32Array;
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
  o: Float32Array;
  qBias: Float32Array;
  kBias: Float32Array;
  vBias: Float32Array;
  oBias: Float32Array;
  sinks: Float32Array; // [heads]
  postNorm: Float32Array;
  window: number; // 0: full attention
  moe: RefGptOssExperts;
}

export interface RefYarn {
  factor: number;
  betaFast: number;
  betaSlow: number;
  originalContext: number;
  truncate: boolean;
}

export interface RefGptOssModel {
  vocab: number;
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  ropeTheta: number;
  yarn?: RefYarn;
  rmsNormEpsilon: number;
  embed: Float32Array;
  finalNorm: Float32Array;
  lmHead: Float32Array;
  layers: RefGptOssLayer[];
}



/** HF _compute_yarn_parameters: inverse frequencies and the attention factor (0.1 ln(factor) + 1). */
export function refYarn(yarn: RefYarn | undefined, headDim: number, theta: number): { inv: number[]; scale: number } {
  const inv: number[] = [];
  for (let i = 0; i < headDim / 2; i++) inv.push(1 / theta ** ((2 * i) / headDim));
  if (!yarn) return { inv, scale: 1 };
  const corr = (rot: number) => (headDim * Math.log(yarn.originalContext / (rot * 2 * Math.PI))) / (2 * Math.log(theta));
  let low = corr(yarn.betaFast);
  let high = corr(yarn.betaSlow);
  if (yarn.truncate) {
    low = Math.floor(low);
    high = Math.ceil(high);
  }
  low = Math.max(low, 0);
  high = Math.min(high, headDim - 1);
  if (low === high) high += 0.001;
  const scaled = inv.map((extrapolated, i) => {
    const ramp = Math.min(1, Math.max(0, (i - low) / (high - low)));
    const extrapolationFactor = 1 - ramp;
    return (extrapolated / yarn.factor) * (1 - extrapolationFactor) + extrapolated * extrapolationFactor;
  });
  return { inv: scaled, scale: yarn.factor > 1 ? 0.1 * Math.log(yarn.factor) + 1 : 1 };
}

// HF _apply_rotary_emb: first half x1, second half x2; (x1 cos - x2 sin, x2 cos + x1 sin), cos/sin times the scale.
function rope(x: Float64Array, rows: number, heads: number, headDim: number, table: { inv: number[]; scale: number }): void {
  const half = headDim / 2;
  for (let t = 0; t < rows; t++) {
    for (let i = 0; i < half; i++) {
      const c = Math.cos(t * table.inv[i]) * table.scale;
      const s = Math.sin(t * table.inv[i]) * table.scale;
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

function attention(m: RefGptOssModel, layer: RefGptOssLayer, q: Float64Array, k: Float64Array, v: Float64Array, rows: number): Float64Array {
  const { heads, kvHeads, headDim } = m;
  const out = new Float64Array(rows * heads * headDim);
  const group = heads / kvHeads;
  for (let t = 0; t < rows; t++) {
    const first = layer.window > 0 ? Math.max(0, t - layer.window + 1) : 0;
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      const scores: number[] = [];
      for (let p = first; p <= t; p++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[(t * heads + h) * headDim + d] * k[(p * kvHeads + kh) * headDim + d];
        scores.push(dot / Math.sqrt(headDim));
      }
      const sink = layer.sinks[h];
      const max = Math.max(sink, ...scores);
      const weights = scores.map((s) => Math.exp(s - max));
      const total = weights.reduce((a, b) => a + b, 0) + Math.exp(sink - max);
      for (let p = first; p <= t; p++) {
        for (let d = 0; d < headDim; d++) {
          out[(t * heads + h) * headDim + d] += (weights[p - first] / total) * v[(p * kvHeads + kh) * headDim + d];
        }
      }
    }
  }
  return out;
}

/** The MoE block's output for `rows` rows of x, and the experts each row kept. */
export function refGptOssMoe(f: RefGptOssExperts, x: Float64Array, rows: number): { out: Float64Array; ids: number[][] } {
  const { experts, hidden: H, ffn: F } = f;
  const out = new Float64Array(rows * H);
  const logits = linear(x, rows, H, f.router, experts, f.routerBias);
  const ids: number[][] = [];
  for (let t = 0; t < rows; t++) {
    const kept = topKSoftmax(Array.from(logits.subarray(t * experts, (t + 1) * experts)), f.k);
    ids.push(kept.ids);
    kept.ids.forEach((e, j) => {
      const weight = kept.weights[j];
      const hiddenUnits = new Float64Array(F);
      for (let n = 0; n < F; n++) {
        let gate = f.gateUpBias[e * 2 * F + 2 * n];
        let up = f.gateUpBias[e * 2 * F + 2 * n + 1];
        for (let i = 0; i < H; i++) {
          const xi = x[t * H + i];
          gate += xi * f.gateUp[(e * H + i) * 2 * F + 2 * n];
          up += xi * f.gateUp[(e * H + i) * 2 * F + 2 * n + 1];
        }
        gate = Math.min(gate, f.limit);
        up = Math.min(Math.max(up, -f.limit), f.limit);
        const glu = gate / (1 + Math.exp(-f.alpha * gate));
        hiddenUnits[n] = (up + 1) * glu;
      }
      for (let o = 0; o < H; o++) {
        let sum = f.downBias[e * H + o];
        for (let n = 0; n < F; n++) sum += hiddenUnits[n] * f.down[(e * F + n) * H + o];
        out[t * H + o] += weight * sum;
      }
    });
  }
  return { out, ids };
}

/** Logits [tokens][vocab] of a fresh sequence. */
export function refGptOssForward(m: RefGptOssModel, tokens: readonly number[]): Float64Array {
  const { hidden: H, heads, kvHeads, headDim, rmsNormEpsilon: eps } = m;
  const T = tokens.length;
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  const table = refYarn(m.yarn, headDim, m.ropeTheta);
  let x = new Float64Array(T * H);
  tokens.forEach((id, t) => {
    for (let h = 0; h < H; h++) x[t * H + h] = m.embed[id * H + h];
  });
  for (const layer of m.layers) {
    const h = rmsNorm(x, T, H, layer.attnNorm, eps);
    const q = linear(h, T, H, layer.q, qW, layer.qBias);
    const k = linear(h, T, H, layer.k, kvW, layer.kBias);
    const v = linear(h, T, H, layer.v, kvW, layer.vBias);
    rope(q, T, heads, headDim, table);
    rope(k, T, kvHeads, headDim, table);
    const attn = linear(attention(m, layer, q, k, v, T), T, qW, layer.o, H, layer.oBias);
    x = x.map((value, i) => value + attn[i]);
    const ff = refGptOssMoe(layer.moe, rmsNorm(x, T, H, layer.postNorm, eps), T).out;
    x = x.map((value, i) => value + ff[i]);
  }
  return linear(rmsNorm(x, T, H, m.finalNorm, eps), T, H, m.lmHead, m.vocab);
}
