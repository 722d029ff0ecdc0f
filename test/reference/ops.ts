// Float64 test reference: the dense ops every architecture's reference forward is made of.

export type Values = ArrayLike<number>;

/** rows x [outF][inF] weights (starting at `wOffset` in `w`), plus an optional bias. */
export function linear(x: Float64Array, rows: number, inF: number, w: Values, outF: number, bias?: Values, wOffset = 0): Float64Array {
  const out = new Float64Array(rows * outF);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < outF; o++) {
      let sum = bias ? bias[o] : 0;
      for (let i = 0; i < inF; i++) sum += x[t * inF + i] * w[wOffset + o * inF + i];
      out[t * outF + o] = sum;
    }
  }
  return out;
}

/** RMSNorm of each row of `width` values, over groups of `group` (the whole row by default) sharing weights `w`. */
export function rmsNorm(x: Float64Array, rows: number, width: number, w: Values, eps: number, group = width): Float64Array {
  const out = new Float64Array(x.length);
  for (let t = 0; t < rows; t++) {
    for (let g = 0; g < width; g += group) {
      let squares = 0;
      for (let i = 0; i < group; i++) squares += x[t * width + g + i] ** 2;
      const inv = 1 / Math.sqrt(squares / group + eps);
      for (let i = 0; i < group; i++) out[t * width + g + i] = x[t * width + g + i] * inv * w[i];
    }
  }
  return out;
}

/** Causal grouped-query attention over `rows` positions: softmax(q . k * scale) . v, query head h on kv head h / group. */
export function causalAttention(
  q: Float64Array,
  k: Float64Array,
  v: Float64Array,
  rows: number,
  shape: { heads: number; kvHeads: number; headDim: number; scale: number; chunk?: number },
): Float64Array {
  const { heads, kvHeads, headDim, scale } = shape;
  // Chunked attention (Llama 4): a row sees the earlier positions of its own chunk only.
  const first = (t: number) => (shape.chunk ? Math.floor(t / shape.chunk) * shape.chunk : 0);
  const out = new Float64Array(rows * heads * headDim);
  const group = heads / kvHeads;
  for (let t = 0; t < rows; t++) {
    for (let h = 0; h < heads; h++) {
      const kh = Math.floor(h / group);
      const scores: number[] = [];
      for (let p = first(t); p <= t; p++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) dot += q[(t * heads + h) * headDim + d] * k[(p * kvHeads + kh) * headDim + d];
        scores.push(dot * scale);
      }
      const max = Math.max(...scores);
      const weights = scores.map((s) => Math.exp(s - max));
      const total = weights.reduce((a, b) => a + b, 0);
      for (let p = first(t); p <= t; p++) {
        for (let d = 0; d < headDim; d++) {
          out[(t * heads + h) * headDim + d] += (weights[p - first(t)] / total) * v[(p * kvHeads + kh) * headDim + d];
        }
      }
    }
  }
  return out;
}

/** The k largest logits of a row (ties: lower id first) and a softmax over just those k (gpt-oss, Granite MoE). */
export function topKSoftmax(row: readonly number[], k: number): { ids: number[]; weights: number[] } {
  const kept = row.map((value, e) => ({ value, e })).sort((a, b) => b.value - a.value || a.e - b.e).slice(0, k);
  const exps = kept.map((c) => Math.exp(c.value - kept[0].value));
  const total = exps.reduce((a, b) => a + b, 0);
  return { ids: kept.map((c) => c.e), weights: exps.map((x) => x / total) };
}
