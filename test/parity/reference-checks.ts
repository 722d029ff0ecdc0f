// Every backend vs the float64 reference (test/reference.ts): routing as test 20 holds the CPU to it, layer outputs
// as test 30 does, with the documented activation rounding where a backend's kernels round (CUDA f16/bf16).
import { cpuInfo, MoEForwardResult, RoutingPolicy } from '../../lib';
import {
  checkForward,
  cpuRoundsActivations,
  EMULATED_TOLERANCE,
  emulatedRoundingOutput,
  ROUNDED_TOLERANCE,
} from '../layer-fixtures';
import {
  maxRelativeError,
  refLayerOutput,
  RefLayerWeights,
  WeightDtype,
} from '../reference';
import { fragileByNeighbours, FragilityTest } from '../route-checks';
import { Backend } from './backends';
import { rmsDifference } from './compare';

// Hoisted: a global `Math` lookup inside a hot loop is ~100x slower in jest's VM context than a local binding.
const { min } = Math;

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

/** fragility.ts's test, and near-ties between a kept expert and any other (from logits). */
export const fragileRoute: FragilityTest = (probs, policy, logits, kept) =>
  fragileByNeighbours(probs, policy, logits, kept) || (logits !== undefined && nearTieWithKept(logits, kept));


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
