// Plain float64 reference for the routing contract (shared/docs/ROUTING.md) and the MoE layer, written from the
// contract and independent of lib/, so the tests can hold the native code to it. Also: a seeded RNG, bf16/f16
// round-to-nearest-even helpers, and "fragile token" detectors for the cases where an fp32 implementation may
// legitimately decide differently from float64 (a cumulative sum that lands on p, a near-tie at the cut).

// ---------------------------------------------------------------------------------------------------------------
// Policies (the same shape as the public API, declared here so the reference does not import lib/)

export type RefPolicy =
  | { kind: 'top-k'; k: number; normalize?: boolean; scale?: number }
  | { kind: 'top-p'; p: number; minExperts?: number; maxExperts?: number; normalize?: boolean }
  | { kind: 'threshold'; tau: number; minExperts?: number; maxExperts?: number; normalize?: boolean };

export function kMaxOf(policy: RefPolicy, experts: number): number {
  return policy.kind === 'top-k' ? policy.k : policy.maxExperts ?? experts;
}

export function describePolicy(policy: RefPolicy): string {
  const parts = Object.entries(policy)
    .filter(([key]) => key !== 'kind')
    .map(([key, value]) => `${key}=${value}`);
  return `${policy.kind}(${parts.join(',')})`;
}

// ---------------------------------------------------------------------------------------------------------------
// Seeded RNG: mulberry32 for uniforms, Box-Muller for normals.

export class Rng {
  private state: number;
  private spare: number | null = null;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.next();
  }

  /** Integer in [lo, hi], both inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.next() * items.length)];
  }

  normal(): number {
    if (this.spare !== null) {
      const value = this.spare;
      this.spare = null;
      return value;
    }
    let u = this.next();
    while (u <= 1e-300) u = this.next();
    const v = this.next();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.spare = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v);
  }

  normalArray(length: number, std = 1, mean = 0): Float32Array {
    const out = new Float32Array(length);
    for (let i = 0; i < length; i++) out[i] = mean + std * this.normal();
    return out;
  }

  uniformArray(length: number, lo: number, hi: number): Float32Array {
    const out = new Float32Array(length);
    for (let i = 0; i < length; i++) out[i] = lo + (hi - lo) * this.next();
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Softmax and selection in float64

export function softmax64(z: ArrayLike<number>): Float64Array {
  const n = z.length;
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (z[i] > max) max = z[i];
  const out = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    out[i] = Math.exp(z[i] - max);
    sum += out[i];
  }
  for (let i = 0; i < n; i++) out[i] /= sum;
  return out;
}

/**
 * Expert ids sorted by probability descending; equal probabilities keep the lower id first (ROUTING.md).
 * The contract sorts fp32 probabilities, so the key is the float64 value rounded to fp32: probabilities that
 * underflow in fp32 (far-away logits) are an exact tie at 0 and go by id. Distinct float64 values that round to
 * one fp32 value differ by < 2^-24 relative: such tokens are flagged fragile (see nearTieBefore).
 */
export function sortedExperts(probs: ArrayLike<number>): number[] {
  const order = Array.from({ length: probs.length }, (_, i) => i);
  const key = Array.from({ length: probs.length }, (_, i) => Math.fround(probs[i]));
  order.sort((a, b) => (key[b] - key[a]) || (a - b));
  return order;
}

/** Smallest normal fp32: below it an fp32 implementation may keep a subnormal or flush it to 0. */
export const FP32_MIN_NORMAL = 2 ** -126;
/** A probability below this is 0 in any fp32 softmax of up to 128 experts (see nearTieBefore). */
export const FP32_CERTAIN_ZERO = 2 ** -160;

export interface TokenSelection {
  ids: number[]; // in slot order
  weights: number[];
}

/** How many sorted experts a policy keeps, before clamps (float64). */
function uncampedCount(sortedProbs: number[], policy: RefPolicy): number {
  const experts = sortedProbs.length;
  switch (policy.kind) {
    case 'top-k':
      return policy.k;
    case 'top-p': {
      if (policy.p >= 1) return experts; // "p = 1.0 or more: all experts"
      let cumulative = 0;
      for (let j = 0; j < experts; j++) {
        cumulative += sortedProbs[j];
        if (cumulative > Math.fround(policy.p)) return j + 1; // first C_j > p (strict; p as the fp32 the contract compares)
      }
      return experts; // no position qualifies (rounding): keep all
    }
    case 'threshold': {
      let kept = 0;
      while (kept < experts && sortedProbs[kept] >= Math.fround(policy.tau)) kept++;
      return kept;
    }
  }
}

function clampCount(count: number, policy: RefPolicy, experts: number): number {
  if (policy.kind === 'top-k') return count;
  const lo = policy.minExperts ?? 1;
  const hi = policy.maxExperts ?? experts;
  return Math.min(Math.max(count, lo), hi);
}

/** Combine weights of a given kept set (ids in slot order): raw P, renormalised, and/or scaled. */
export function weightsForSet(probs: ArrayLike<number>, ids: readonly number[], policy: RefPolicy): number[] {
  let weights = ids.map((e) => probs[e]);
  if (policy.normalize) {
    const sum = weights.reduce((a, b) => a + b, 0);
    weights = weights.map((w) => w / sum);
  }
  if (policy.kind === 'top-k' && policy.scale !== undefined) {
    const scale = policy.scale;
    weights = weights.map((w) => w * scale);
  }
  return weights;
}

/** The float64 routing of one token whose probabilities are `probs`. */
export function selectToken(probs: ArrayLike<number>, policy: RefPolicy): TokenSelection {
  const order = sortedExperts(probs);
  const sortedProbs = order.map((e) => probs[e]);
  const count = clampCount(uncampedCount(sortedProbs, policy), policy, probs.length);
  const ids = order.slice(0, count);
  return { ids, weights: weightsForSet(probs, ids, policy) };
}

export interface RefRouting {
  kMax: number;
  ids: Int32Array;
  weights: Float64Array;
  counts: Int32Array;
  expertLoad: Int32Array;
  /** float64 probabilities, [tokens][experts] */
  probs: Float64Array;
}

/** Float64 routing of a [tokens][experts] score matrix, in the fixed-shape output format. */
export function refRoute(
  scores: ArrayLike<number>,
  tokens: number,
  experts: number,
  policy: RefPolicy,
  input: 'logits' | 'probabilities' = 'logits',
): RefRouting {
  const kMax = kMaxOf(policy, experts);
  const ids = new Int32Array(tokens * kMax).fill(-1);
  const weights = new Float64Array(tokens * kMax);
  const counts = new Int32Array(tokens);
  const expertLoad = new Int32Array(experts);
  const probs = new Float64Array(tokens * experts);
  for (let t = 0; t < tokens; t++) {
    const row = Array.from({ length: experts }, (_, e) => scores[t * experts + e]);
    const p = input === 'logits' ? softmax64(row) : Float64Array.from(row);
    probs.set(p, t * experts);
    const selection = selectToken(p, policy);
    counts[t] = selection.ids.length;
    selection.ids.forEach((e, s) => {
      ids[t * kMax + s] = e;
      weights[t * kMax + s] = selection.weights[s];
      expertLoad[e]++;
    });
  }
  return { kMax, ids, weights, counts, expertLoad, probs };
}

// ---------------------------------------------------------------------------------------------------------------
// Fragile tokens: where fp32 arithmetic may legitimately pick a different set or order than float64.

export interface FragilityOptions {
  /** fp32 logits of the token (when the input was logits); near-ties are then judged in logit space. */
  logits?: ArrayLike<number>;
  /** Absolute uncertainty of each logit (e.g. fp32 GEMV error in the layer tests); 0 when logits are given. */
  logitError?: number;
  /** How close a cumulative sum may come to p before the cut is called fragile (default 1e-5). */
  cutTolerance?: number;
}

const FP32_EPS = 2 ** -23;

/**
 * True when adjacent sorted experts j, j+1 (for j < `upTo`) are so close that fp32 may order them differently.
 * Exactly equal probabilities (equal logits) are not fragile: fp32 ties them too, and both sides break ties by id.
 */
function nearTieBefore(probs: ArrayLike<number>, order: number[], upTo: number, options: FragilityOptions): boolean {
  const { logits, logitError = 0 } = options;
  const last = Math.min(upTo, order.length - 1);
  let zMax = -Infinity;
  if (logits) for (let e = 0; e < logits.length; e++) zMax = Math.max(zMax, logits[e]);
  // From logits, an fp32 probability below the normal range may come out as a subnormal or as 0 depending on the
  // kernel (exp(z - max) = P * sum with 1 <= sum <= E <= 2^7, so below 2^-160 it is surely 0). The reference ranks
  // all of them as 0 (a tie, by id); if the slots reach that tail while such a maybe-nonzero expert exists, the
  // order there is up to the kernel.
  let subnormalBand = false;
  if (logits) {
    for (let e = 0; e < probs.length; e++) {
      if (probs[e] >= FP32_CERTAIN_ZERO && probs[e] < FP32_MIN_NORMAL) subnormalBand = true;
    }
  }
  for (let j = 0; j < last; j++) {
    const a = order[j];
    const b = order[j + 1];
    if (probs[b] < FP32_MIN_NORMAL && logits) {
      if (subnormalBand) return true;
      continue; // b is surely 0 in fp32: either a is larger, or both are 0 and tie by id
    }
    if (logits) {
      const gap = logits[a] - logits[b];
      if (gap === 0 && logitError === 0) continue;
      // fp32 rounds z - max (ulp grows with the distance to the max) and exp may be off by an ulp or two
      const slack = 1e-6 + 4 * FP32_EPS * (zMax - logits[b]) + 2 * logitError;
      if (gap <= slack) return true;
    } else {
      const pa = probs[a];
      const pb = probs[b];
      if (pa === pb) continue;
      if (pa - pb <= 1e-6 * pa) return true;
    }
  }
  return false;
}

/** Relative uncertainty of an fp32 probability derived from logits with absolute error `logitError`. */
function probRelError(options: FragilityOptions): number {
  return 2 * (options.logitError ?? 0);
}

/**
 * Tokens where an fp32 top-p implementation may choose a different cut than float64: a running sum within
 * ~1e-5 of p, or a near-tie among the kept experts or at the boundary. p >= 1 is never fragile (all experts).
 */
export function fragileTopP(
  probs64: ArrayLike<number>,
  p: number,
  options: FragilityOptions & { minExperts?: number; maxExperts?: number } = {},
): boolean {
  const experts = probs64.length;
  const order = sortedExperts(probs64);
  const selection = selectToken(probs64, {
    kind: 'top-p',
    p,
    minExperts: options.minExperts,
    maxExperts: options.maxExperts,
  });
  // ordering matters for every slot written and for the first expert left out
  if (nearTieBefore(probs64, order, selection.ids.length, options)) return true;
  if (p >= 1) return false;
  const tolerance = (options.cutTolerance ?? 1e-5) + probRelError(options);
  let cumulative = 0;
  for (let j = 0; j < experts; j++) {
    cumulative += probs64[order[j]];
    if (Math.abs(cumulative - p) <= tolerance) return true;
    if (cumulative > p + tolerance) break;
  }
  return false;
}

/** Fragility for any policy (top-p delegates to fragileTopP). */
export function fragileToken(probs64: ArrayLike<number>, policy: RefPolicy, options: FragilityOptions = {}): boolean {
  if (policy.kind === 'top-p') {
    return fragileTopP(probs64, policy.p, { ...options, minExperts: policy.minExperts, maxExperts: policy.maxExperts });
  }
  const order = sortedExperts(probs64);
  const selection = selectToken(probs64, policy);
  if (nearTieBefore(probs64, order, selection.ids.length, options)) return true;
  if (policy.kind === 'threshold') {
    const relative = 1e-5 + probRelError(options);
    for (let e = 0; e < probs64.length; e++) {
      if (Math.abs(probs64[e] - policy.tau) <= relative * policy.tau + 1e-30) return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------------
// bf16 / f16: our own round-to-nearest-even conversions (cross-checked against lib's in the tests)

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

export function f32ToBf16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  if ((bits & 0x7f800000) === 0x7f800000 && (bits & 0x007fffff) !== 0) return ((bits >>> 16) | 0x0040) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(bits: number): number {
  u32Scratch[0] = (bits & 0xffff) << 16;
  return f32Scratch[0];
}

export function f32ToF16Bits(value: number): number {
  f32Scratch[0] = value;
  const bits = u32Scratch[0];
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | (mantissa !== 0 ? 0x7e00 : 0x7c00);
  const magnitude = Math.abs(f32Scratch[0]);
  if (magnitude >= 65520) return sign | 0x7c00; // 65520 is the tie between 65504 and 2^16: even -> infinity
  if (magnitude < 2 ** -14) {
    // subnormal f16: units of 2^-24; magnitude * 2^24 is exact in float64
    const units = magnitude * 2 ** 24;
    let rounded = Math.floor(units);
    const rest = units - rounded;
    if (rest > 0.5 || (rest === 0.5 && (rounded & 1) === 1)) rounded++;
    return sign | rounded;
  }
  const halfMantissa = mantissa >>> 13;
  const rest = mantissa & 0x1fff;
  let half = ((exponent - 127 + 15) << 10) | halfMantissa;
  if (rest > 0x1000 || (rest === 0x1000 && (halfMantissa & 1) === 1)) half++;
  return sign | half;
}

export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

export type WeightDtype = 'f32' | 'f16' | 'bf16';

export function toBitsArray(values: Float32Array, dtype: 'f16' | 'bf16'): Uint16Array {
  const convert = dtype === 'bf16' ? f32ToBf16Bits : f32ToF16Bits;
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = convert(values[i]);
  return out;
}

export function fromBitsArray(bits: Uint16Array, dtype: 'f16' | 'bf16'): Float32Array {
  const convert = dtype === 'bf16' ? bf16BitsToF32 : f16BitsToF32;
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) out[i] = convert(bits[i]);
  return out;
}

/** The values a layer of `dtype` actually holds for these f32 weights (identity for f32). */
export function quantise(values: Float32Array, dtype: WeightDtype): Float32Array {
  return dtype === 'f32' ? values : fromBitsArray(toBitsArray(values, dtype), dtype);
}

// ---------------------------------------------------------------------------------------------------------------
// Float64 MoE layer

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
): void {
  const activation = new Float64Array(ffn);
  for (let f = 0; f < ffn; f++) {
    let g = 0;
    let u = 0;
    const row = offsetGateUp + f * hidden;
    for (let h = 0; h < hidden; h++) {
      const xv = x[xOffset + h];
      g += gate[row + h] * xv;
      u += up[row + h] * xv;
    }
    activation[f] = silu(g) * u;
  }
  for (let h = 0; h < hidden; h++) {
    let sum = 0;
    const row = offsetDown + h * ffn;
    for (let f = 0; f < ffn; f++) sum += down[row + f] * activation[f];
    out[h] += scale * sum;
  }
}

/**
 * Float64 layer output for a given routing (ids [tokens][kMax] with -1 padding and per-slot weights): the
 * routed experts' SwiGLU outputs times their weights, plus the shared expert (times sigmoid(gateWeight . x)).
 */
export function refLayerOutput(
  w: RefLayerWeights,
  x: ArrayLike<number>,
  tokens: number,
  kMax: number,
  ids: ArrayLike<number>,
  weights: ArrayLike<number>,
): Float64Array {
  const { hidden: H, ffn: F } = w;
  const out = new Float64Array(tokens * H);
  const tokenOut = new Float64Array(H);
  for (let t = 0; t < tokens; t++) {
    tokenOut.fill(0);
    for (let s = 0; s < kMax; s++) {
      const e = ids[t * kMax + s];
      if (e < 0) continue;
      swiglu64(x, t * H, H, F, w.gate, w.up, w.down, e * F * H, e * H * F, tokenOut, weights[t * kMax + s]);
    }
    if (w.shared) {
      const shared = w.shared;
      let scale = 1;
      if (shared.gateWeight) {
        let dot = 0;
        for (let h = 0; h < H; h++) dot += shared.gateWeight[h] * x[t * H + h];
        scale = sigmoid(dot);
      }
      swiglu64(x, t * H, H, shared.ffn, shared.gate, shared.up, shared.down, 0, 0, tokenOut, scale);
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
