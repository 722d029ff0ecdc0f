// Float64 test reference: Fragile tokens: where fp32 arithmetic may legitimately pick a different set or order than float64.
import { RefPolicy } from './policy';
import { FP32_CERTAIN_ZERO, FP32_MIN_NORMAL, selectToken, sortedExperts } from './routing';

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
