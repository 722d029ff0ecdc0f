// Holds one route() result to the float64 reference (test/reference.ts): exact ids and counts off fragile tokens, a
// top prefix in probability order on them, the policy's weights of the set chosen, the padding and the expert load.
// Used by test 20 (the CPU) and the backend-parity table (every backend).
import { RoutingPolicy, RoutingResult } from '../lib';
import { typedArrayTag } from './helpers';
import { fragileToken, idHistogram, kMaxOf, RefPolicy, refRoute, sumOf, weightsForSet } from './reference';

// Hoisted: a global `Math` lookup inside a hot loop is ~100x slower in jest's VM context than a local binding.
const { abs, min } = Math;

// Routing weights agree to 1e-6 relative; the absolute floor covers probabilities so small (< 1e-3) that fp32's
// rounding of (z - max) before exp moves them by more than 1e-6 of themselves.
export const WEIGHT_RELATIVE_TOLERANCE = 1e-6;
export const WEIGHT_ABSOLUTE_TOLERANCE = 1e-9;

/** Whether a token's selection may differ from the reference's within rounding (refIds: the reference's picks). */
export type FragilityTest = (
  probs: ArrayLike<number>,
  policy: RefPolicy,
  logits: ArrayLike<number> | undefined,
  refIds: number[],
) => boolean;

/** fragility.ts's test: a near-tie between neighbours in the reference's order, or a cumulative sum near p. */
export const fragileByNeighbours: FragilityTest = (probs, policy, logits) =>
  fragileToken(probs, policy, logits ? { logits } : {});

/** Holds one routing to the float64 reference: exact ids off fragile tokens, structure on all; returns the fragile. */
export function checkRouteAgainstReference(
  scores: Float32Array,
  tokens: number,
  experts: number,
  policy: RoutingPolicy,
  input: 'logits' | 'probabilities',
  result: RoutingResult,
  isFragile: FragilityTest = fragileByNeighbours,
): number {
  const [E, T] = [experts, tokens];
  const ref = refRoute(scores, T, E, policy, input);
  const kMax = kMaxOf(policy, E);
  expect(result.kMax).toBe(kMax);
  expect(typedArrayTag(result.ids)).toBe('Int32Array');
  expect(typedArrayTag(result.weights)).toBe('Float32Array');
  expect([result.ids.length, result.weights.length, result.counts.length, result.expertLoad.length]).toEqual([
    T * kMax,
    T * kMax,
    T,
    E,
  ]);
  const lo = policy.kind === 'top-k' ? policy.k : policy.minExperts ?? 1;
  const hi = policy.kind === 'top-k' ? policy.k : policy.maxExperts ?? E;
  let fragile = 0;
  const problems: string[] = [];
  const report = (t: number, what: string) => {
    const row = Array.from(scores.subarray(t * E, min((t + 1) * E, t * E + 24)));
    if (problems.length < 5) problems.push(`token ${t}: ${what}; scores=[${row}]`);
  };
  for (let t = 0; t < T; t++) {
    const count = result.counts[t];
    const ids = Array.from(result.ids.subarray(t * kMax, t * kMax + kMax));
    const weights = Array.from(result.weights.subarray(t * kMax, t * kMax + kMax));
    const probs = ref.probs.subarray(t * E, (t + 1) * E);
    // structure: count within clamps, ids valid and distinct, padding -1 / 0
    if (!(count >= lo && count <= hi && count >= 1)) report(t, `count ${count} outside [${lo}, ${hi}]`);
    const used = ids.slice(0, count);
    if (used.some((e) => !(e >= 0 && e < E)) || new Set(used).size !== used.length) report(t, `bad ids ${ids}`);
    if (ids.slice(count).some((e) => e !== -1)) report(t, `padding ids not -1: ${ids}`);
    if (weights.slice(count).some((w) => w !== 0)) report(t, `padding weights not 0: ${weights}`);
    if (problems.length) continue;
    const logits = input === 'logits' ? scores.subarray(t * E, (t + 1) * E) : undefined;
    const refIds = Array.from(ref.ids.subarray(t * kMax, t * kMax + ref.counts[t]));
    if (isFragile(probs, policy, logits, refIds)) {
      fragile++;
      // a fragile token may cut or order differently, but must still be a top prefix in P order
      const usedProbs = used.map((e) => probs[e]);
      const minKept = min(...usedProbs);
      for (let e = 0; e < E; e++) {
        if (!used.includes(e) && probs[e] > minKept * (1 + 1e-4) + 1e-30) report(t, 'fragile token skipped a larger P');
      }
      for (let s = 1; s < count; s++) {
        if (usedProbs[s] > usedProbs[s - 1] * (1 + 1e-4) + 1e-30) report(t, 'fragile token out of order');
      }
    } else {
      if (used.join() !== refIds.join()) report(t, `ids [${used}] != reference [${refIds}]`);
    }
    // weights: the policy's weights of the set actually chosen
    const expected = weightsForSet(probs, used, policy);
    for (let s = 0; s < count; s++) {
      const diff = abs(weights[s] - expected[s]);
      if (!(diff <= WEIGHT_RELATIVE_TOLERANCE * abs(expected[s]) + WEIGHT_ABSOLUTE_TOLERANCE)) {
        report(t, `slot ${s} weight ${weights[s]} != reference ${expected[s]} (diff ${diff.toExponential(2)})`);
      }
    }
  }
  expect(problems).toEqual([]);
  // expertLoad is the histogram of the ids, and sums to the slots used
  expect(Array.from(result.expertLoad)).toEqual(Array.from(idHistogram(result.ids, E)));
  expect(sumOf(result.expertLoad)).toBe(sumOf(result.counts));
  if (fragile === 0) expect(Array.from(result.expertLoad)).toEqual(Array.from(ref.expertLoad));
  return fragile;
}
