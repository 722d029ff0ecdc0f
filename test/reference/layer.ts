// Float64 test reference: the MoE layer

export interface RefSharedExpert {
  ffn: number;
  gate: ArrayLike<number>; // [F_s][H]
  up: ArrayLike<number>; // [F_s][H]
  down: ArrayLike<number>; // [H][F_s]
  gateWeight?: ArrayLike<number>; // [H]
}

export interface RefLayerWeights {
  hidden: number;
  ffn: number;
  experts: number;
  router: ArrayLike<number>; // [E][H]
  gate: ArrayLike<number>; // [E][F][H]
  up: ArrayLike<number>; // [E][F][H]
  down: ArrayLike<number>; // [E][H][F]
  shared?: RefSharedExpert;
}

const silu = (g: number): number => g / (1 + Math.exp(-g));
const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));

/** Router logits in float64: z[t][e] = router[e] . x[t]; also sum |router[e][h] x[t][h]| for error bounds. */
export function refRouterLogits(
  w: RefLayerWeights,
  x: ArrayLike<number>,
  tokens: number,
): { logits: Float64Array; magnitudes: Float64Array } {
  const { hidden: H, experts: E } = w;
  const logits = new Float64Array(tokens * E);
  const magnitudes = new Float64Array(tokens * E);
  for (let t = 0; t < tokens; t++) {
    for (let e = 0; e < E; e++) {
      let sum = 0;
      let magnitude = 0;
      for (let h = 0; h < H; h++) {
        const term = w.router[e * H + h] * x[t * H + h];
        sum += term;
        magnitude += Math.abs(term);
      }
      logits[t * E + e] = sum;
      magnitudes[t * E + e] = magnitude;
    }
  }
  return { logits, magnitudes };
}

/** down(silu(gate x) * up x) for one token, float64; `gate`/`up` are [F][H] at offset, `down` [H][F] at offset. */
function swiglu64(
  x: ArrayLike<number>,
  xOffset: number,
  hidden: number,
  ffn: number,
  gate: ArrayLike<number>,
  up: ArrayLike<number>,
  down: ArrayLike<number>,
  offsetGateUp: number,
  offsetDown: number,
  out: Float64Array,
  scale: number,
  roundIntermediate: (value: number) => number,
  inputScale = 1,
): void {
  const activation = new Float64Array(ffn);
  for (let f = 0; f < ffn; f++) {
    let g = 0;
    let u = 0;
    const row = offsetGateUp + f * hidden;
    for (let h = 0; h < hidden; h++) {
      const xv = inputScale * x[xOffset + h];
      g += gate[row + h] * xv;
      u += up[row + h] * xv;
    }
    activation[f] = roundIntermediate(silu(g) * u);
  }
  for (let h = 0; h < hidden; h++) {
    let sum = 0;
    const row = offsetDown + h * ffn;
    for (let f = 0; f < ffn; f++) sum += down[row + f] * activation[f];
    out[h] += scale * sum;
  }
}

/** Where a reduced-precision kernel rounds, for a reference that rounds at the same places. */
export interface KernelRounding {
  /** The activations the expert GEMMs read (x rounded to the weight dtype); the router and shared gate read x. */
  expertInput: ArrayLike<number>;
  /** Rounding of the SwiGLU intermediate before the second GEMM. */
  roundIntermediate: (value: number) => number;
}

const NO_ROUNDING = (value: number): number => value;

/**
 * Float64 layer output for a given routing (ids [tokens][kMax] with -1 padding and per-slot weights): the
 * routed experts' SwiGLU outputs times their weights, plus the shared expert (times sigmoid(gateWeight . x)).
 * With `rounding`, rounds where the kernels do (otherwise nowhere). `weightOnInput` (Llama 4): each routed expert
 * reads its weight times x and its output is not scaled.
 */
export function refLayerOutput(
  w: RefLayerWeights,
  x: ArrayLike<number>,
  tokens: number,
  kMax: number,
  ids: ArrayLike<number>,
  weights: ArrayLike<number>,
  rounding?: KernelRounding,
  weightOnInput = false,
): Float64Array {
  const { hidden: H, ffn: F } = w;
  const xe = rounding ? rounding.expertInput : x;
  const roundIntermediate = rounding ? rounding.roundIntermediate : NO_ROUNDING;
  const out = new Float64Array(tokens * H);
  const tokenOut = new Float64Array(H);
  for (let t = 0; t < tokens; t++) {
    tokenOut.fill(0);
    for (let s = 0; s < kMax; s++) {
      const e = ids[t * kMax + s];
      if (e < 0) continue;
      const weight = weights[t * kMax + s];
      swiglu64(xe, t * H, H, F, w.gate, w.up, w.down, e * F * H, e * H * F, tokenOut, weightOnInput ? 1 : weight, roundIntermediate,
        weightOnInput ? weight : 1);
    }
    if (w.shared) {
      const shared = w.shared;
      let scale = 1;
      if (shared.gateWeight) {
        let dot = 0;
        for (let h = 0; h < H; h++) dot += shared.gateWeight[h] * x[t * H + h];
        scale = sigmoid(dot);
      }
      swiglu64(xe, t * H, H, shared.ffn, shared.gate, shared.up, shared.down, 0, 0, tokenOut, scale, roundIntermediate);
    }
    out.set(tokenOut, t * H);
  }
  return out;
}

/** max |a - b| / max |ref| over the whole output. */
export function maxRelativeError(actual: ArrayLike<number>, reference: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < reference.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i] - reference[i]));
    maxRef = Math.max(maxRef, Math.abs(reference[i]));
  }
  if (Number.isNaN(maxDiff) || Array.from(actual as ArrayLike<number>).some((v) => !Number.isFinite(v))) return Infinity;
  return maxRef === 0 ? maxDiff : maxDiff / maxRef;
}

/** Histogram of the used ids (>= 0). */
export function idHistogram(ids: ArrayLike<number>, experts: number): Int32Array {
  const histogram = new Int32Array(experts);
  for (let i = 0; i < ids.length; i++) if (ids[i] >= 0) histogram[ids[i]]++;
  return histogram;
}

export function sumOf(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i];
  return sum;
}
