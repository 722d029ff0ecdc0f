// Float64 test reference: softmax and expert selection
import { RefPolicy, kMaxOf } from './policy';

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
    if (sum > 0) weights = weights.map((w) => w / sum); // an all-zero kept set (probabilities input) stays 0
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
