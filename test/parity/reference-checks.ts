// Every backend vs the float64 reference (test/reference.ts): routing as test 20 holds the CPU to it, layer outputs
// as test 30 does, with the documented activation rounding where a backend's kernels round (CUDA f16/bf16).
import { cpuInfo, MoEForwardResult, RoutingPolicy, RoutingResult } from '../../lib';
import { typedArrayTag } from '../helpers';
import {
  checkForward,
  cpuRoundsActivations,
  EMULATED_TOLERANCE,
  emulatedRoundingOutput,
  ROUNDED_TOLERANCE,
} from '../layer-fixtures';
import {
  fragileToken,
  idHistogram,
  kMaxOf,
  maxRelativeError,
  refLayerOutput,
  RefLayerWeights,
  RefPolicy,
  refRoute,
  sumOf,
  weightsForSet,
  WeightDtype,
} from '../reference';
import { Backend } from './backends';
import { rmsDifference } from './compare';

// Hoisted: a global `Math` lookup inside a hot loop is ~100x slower in jest's VM context than a local binding.
const { abs, min } = Math;

// Routing weights agree to 1e-6 relative; the absolute floor covers probabilities so small (< 1e-3) that fp32's
// rounding of (z - max) before exp moves them by more than 1e-6 of themselves (test 20's bounds).
const WEIGHT_RELATIVE_TOLERANCE = 1e-6;
const WEIGHT_ABSOLUTE_TOLERANCE = 1e-9;

// fragility.ts's near-tie slack: fp32 rounds z - max (ulp grows with the distance to the max), exp is off an ulp or two
const slack = (zMax: number, z: number) => 1e-6 + 4 * 2 ** -23 * (zMax - z);

/** A kept expert within that slack of a different logit (fragileToken checks only neighbours in the reference's
 * order, where an exact tie can hide the next, nearly equal logit: ulp-neighbour rows). */
function nearTieWithKept(logits: ArrayLike<number>, kept: readonly number[]): boolean {
  const sorted = Float64Array.from(logits).sort().reverse();
  const zMax = sorted[0];
  const near = new Map<number, boolean>(); // logit -> a different logit lies within the slack
  for (let i = 0; i < sorted.length; ) {
    let end = i + 1;
    while (end < sorted.length && sorted[end] === sorted[i]) end++;
    const above = i > 0 && sorted[i - 1] - sorted[i] <= slack(zMax, sorted[i]);
    const below = end < sorted.length && sorted[i] - sorted[end] <= slack(zMax, sorted[end]);
    near.set(sorted[i], above || below);
    i = end;
  }
  return kept.some((e) => near.get(logits[e]));
}

/** fragileToken, and near-ties between a kept expert and any other (from logits). */
function fragileRoute(
  probs: ArrayLike<number>,
  policy: RefPolicy,
  logits: ArrayLike<number> | undefined,
  kept: number[],
): boolean {
  if (fragileToken(probs, policy, logits ? { logits } : {})) return true;
  return logits !== undefined && nearTieWithKept(logits, kept);
}

/** Holds one routing to the float64 reference: exact ids off fragile tokens, structure on all; returns the fragile. */
export function checkRouteAgainstReference(
  scores: Float32Array,
  tokens: number,
  experts: number,
  policy: RoutingPolicy,
  input: 'logits' | 'probabilities',
  result: RoutingResult,
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
    if (fragileRoute(probs, policy, logits, refIds)) {
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

/** Whether `backend`'s kernels round x and the SwiGLU intermediate to the weight dtype (layer-fixtures.ts says why). */
export function roundsActivations(backend: Backend, dtype: WeightDtype): dtype is 'f16' | 'bf16' {
  return backend === 'cuda' ? dtype !== 'f32' : cpuRoundsActivations(cpuInfo().isa, dtype);
}

// f32 layers, and f16/bf16 ones that keep activations in f32: the GEMMs accumulate in fp32 over H or F <= 256
// terms (~1e-6 relative); 1e-4 is the contract's bound (test 30's), with room for exp/silu. Rounding kernels:
// ROUNDED_TOLERANCE and EMULATED_TOLERANCE (layer-fixtures.ts says why those bounds).
export function layerTolerance(backend: Backend, dtype: WeightDtype): number {
  return roundsActivations(backend, dtype) ? ROUNDED_TOLERANCE[dtype] : 1e-4;
}

/**
 * The full check of one forward against the float64 reference (checkForward: ids on non-fragile tokens, weights,
 * load = histogram = work rows, output within the tolerance) and, where the backend rounds activations, the
 * documented rounding. Returns how many tokens were fragile.
 */
export function checkLayerAgainstReference(
  backend: Backend,
  dtype: WeightDtype,
  ref: RefLayerWeights,
  x: Float32Array,
  tokens: number,
  policy: RoutingPolicy,
  result: MoEForwardResult,
): number {
  const check = checkForward(ref, x, tokens, policy, result, layerTolerance(backend, dtype));
  if (roundsActivations(backend, dtype)) {
    // on the first 2048 tokens at most: two more float64 layers in jest's VM context are not cheap
    const n = min(tokens, 2048);
    const { kMax } = result.routing;
    const ids = result.routing.ids.subarray(0, n * kMax);
    const weights = result.routing.weights.subarray(0, n * kMax);
    const xs = x.subarray(0, n * ref.hidden);
    const output = result.output.subarray(0, n * ref.hidden);
    const emulated = emulatedRoundingOutput(ref, xs, n, kMax, ids, weights, dtype);
    expect(maxRelativeError(output, emulated)).toBeLessThanOrEqual(EMULATED_TOLERANCE[dtype]);
    if (n >= 64) {
      // The rounding really happens where documented: the output is far closer to the emulated reference than
      // to the f32-activation one (a kernel that kept x or `a` in f32 would be as close to both; measured on
      // enough elements for the RMS to be stable). A simulation of the documented kernels in fp32 gives ratios
      // below 0.04 on these cases.
      const unrounded = refLayerOutput(ref, xs, n, kMax, ids, weights);
      expect(rmsDifference(output, emulated)).toBeLessThan(0.5 * rmsDifference(output, unrounded));
    }
  }
  return check.fragile;
}
