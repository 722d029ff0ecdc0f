// Random MoE layers for the layer tests: weights from the seeded RNG, the matching float64 reference weights, and
// one check that holds a forward() result to the reference (routing, output, work counts).
import { MoEForwardResult, MoELayer, MoELayerWeights, RoutingPolicy } from '../lib';
import {
  bf16BitsToF32,
  f16BitsToF32,
  f32ToBf16Bits,
  f32ToF16Bits,
  fragileToken,
  idHistogram,
  kMaxOf,
  maxRelativeError,
  quantise,
  refLayerOutput,
  RefLayerWeights,
  refRoute,
  refRouterLogits,
  Rng,
  weightsForSet,
  WeightDtype,
} from './reference';

export interface LayerSpec {
  hidden: number;
  ffn: number;
  experts: number;
  dtype: WeightDtype;
  shared?: { ffn: number; gated: boolean };
  seed: number;
  /** std of the router weights times sqrt(hidden): larger means more peaked routing. */
  routerScale?: number;
}

export interface RawWeights {
  router: Float32Array;
  gate: Float32Array;
  up: Float32Array;
  down: Float32Array;
  shared?: { ffn: number; gate: Float32Array; up: Float32Array; down: Float32Array; gateWeight?: Float32Array };
}

export function makeRawWeights(spec: LayerSpec): RawWeights {
  const rng = new Rng(spec.seed);
  const { hidden: H, ffn: F, experts: E } = spec;
  const raw: RawWeights = {
    router: rng.normalArray(E * H, (spec.routerScale ?? 2) / Math.sqrt(H)),
    gate: rng.normalArray(E * F * H, 1 / Math.sqrt(H)),
    up: rng.normalArray(E * F * H, 1 / Math.sqrt(H)),
    down: rng.normalArray(E * H * F, 1 / Math.sqrt(F)),
  };
  if (spec.shared) {
    const Fs = spec.shared.ffn;
    raw.shared = {
      ffn: Fs,
      gate: rng.normalArray(Fs * H, 1 / Math.sqrt(H)),
      up: rng.normalArray(Fs * H, 1 / Math.sqrt(H)),
      down: rng.normalArray(H * Fs, 1 / Math.sqrt(Fs)),
    };
    if (spec.shared.gated) {
      const gateWeight = rng.normalArray(H, 1 / Math.sqrt(H));
      // A bf16/f16 layer could reasonably keep gateWeight in fp32 (like the router) or convert it: give values
      // that are exact in the layer dtype so both readings agree and the test pins only what the API promises.
      raw.shared.gateWeight = quantise(gateWeight, spec.dtype);
    }
  }
  return raw;
}

/** The values the layer holds: expert weights rounded to dtype (RNE); router (and gateWeight) stay fp32. */
export function referenceWeights(spec: LayerSpec, raw: RawWeights): RefLayerWeights {
  const q = (values: Float32Array) => quantise(values, spec.dtype);
  return {
    hidden: spec.hidden,
    ffn: spec.ffn,
    experts: spec.experts,
    router: raw.router,
    gate: q(raw.gate),
    up: q(raw.up),
    down: q(raw.down),
    shared: raw.shared && {
      ffn: raw.shared.ffn,
      gate: q(raw.shared.gate),
      up: q(raw.shared.up),
      down: q(raw.shared.down),
      gateWeight: raw.shared.gateWeight,
    },
  };
}

/** The MoELayer weights of a random layer. */
export function layerWeights(spec: LayerSpec, raw: RawWeights): MoELayerWeights {
  return {
    hidden: spec.hidden,
    ffn: spec.ffn,
    experts: spec.experts,
    dtype: spec.dtype,
    router: raw.router,
    gate: raw.gate,
    up: raw.up,
    down: raw.down,
    shared: raw.shared,
  };
}

export function buildLayer(spec: LayerSpec, raw: RawWeights): MoELayer {
  return MoELayer.fromWeights(layerWeights(spec, raw));
}

export function makeInput(seed: number, tokens: number, hidden: number): Float32Array {
  return new Rng(seed).normalArray(tokens * hidden, 1);
}

export interface LayerCheck {
  error: number;
  fragile: number;
}

/**
 * Holds one forward result to the float64 reference: ids exact on non-fragile tokens, output within
 * `tolerance` (max |a - b| / max |ref|), expertLoad = histogram of ids, work rows = expertLoad.
 * The reference output is computed for the experts the layer actually chose, with float64 weights, so a fragile
 * token that legitimately picked a different set is still checked for its output.
 */
export function checkForward(
  ref: RefLayerWeights,
  x: Float32Array,
  tokens: number,
  policy: RoutingPolicy,
  result: MoEForwardResult,
  tolerance: number,
): LayerCheck {
  const { hidden: H, experts: E } = ref;
  const { logits, magnitudes } = refRouterLogits(ref, x, tokens);
  const routing = refRoute(logits, tokens, E, policy);
  const kMax = kMaxOf(policy, E);
  const got = result.routing;
  expect(got.kMax).toBe(kMax);
  expect(got.ids.length).toBe(tokens * kMax);
  expect(result.output.length).toBe(tokens * H);

  let fragile = 0;
  const weights64 = new Float64Array(tokens * kMax);
  const mismatches: string[] = [];
  for (let t = 0; t < tokens; t++) {
    const probs = routing.probs.subarray(t * E, (t + 1) * E);
    let magnitude = 0;
    for (let e = 0; e < E; e++) magnitude = Math.max(magnitude, magnitudes[t * E + e]);
    // worst-case fp32 dot-product error of the router GEMV (n * 2^-24 * sum |terms|)
    const logitError = (H + 2) * 2 ** -24 * magnitude;
    const isFragile = fragileToken(probs, policy, { logits: logits.subarray(t * E, (t + 1) * E), logitError });
    const ids = Array.from(got.ids.subarray(t * kMax, (t + 1) * kMax));
    if (isFragile) fragile++;
    else {
      const refIds = Array.from(routing.ids.subarray(t * kMax, (t + 1) * kMax));
      if (ids.join() !== refIds.join() && mismatches.length < 5) {
        mismatches.push(`token ${t}: ids [${ids}] != reference [${refIds}]`);
      }
    }
    const count = got.counts[t];
    const used = ids.slice(0, count);
    weightsForSet(probs, used, policy).forEach((w, s) => (weights64[t * kMax + s] = w));
    // the routing weights the layer reports are the ones it used: compare them too
    for (let s = 0; s < count; s++) {
      const diff = Math.abs(got.weights[t * kMax + s] - weights64[t * kMax + s]);
      if (diff > 1e-5 * Math.abs(weights64[t * kMax + s]) + 1e-7 && mismatches.length < 5) {
        mismatches.push(`token ${t} slot ${s}: weight ${got.weights[t * kMax + s]} != ${weights64[t * kMax + s]}`);
      }
    }
  }
  expect(mismatches).toEqual([]);

  const histogram = Array.from(idHistogram(got.ids, E));
  expect(Array.from(got.expertLoad)).toEqual(histogram);
  expect(Array.from(result.work.gateUpRows)).toEqual(histogram);
  expect(Array.from(result.work.downRows)).toEqual(histogram);

  const expected = refLayerOutput(ref, x, tokens, kMax, got.ids, weights64);
  const error = maxRelativeError(result.output, expected);
  expect(error).toBeLessThanOrEqual(tolerance);
  return { error, fragile };
}

export const POLICIES: RoutingPolicy[] = [
  { kind: 'top-k', k: 1 },
  { kind: 'top-k', k: 2, normalize: true },
  { kind: 'top-k', k: 2, scale: 2.5 },
  { kind: 'top-p', p: 0.4 },
  { kind: 'top-p', p: 0.9, normalize: true },
  { kind: 'top-p', p: 1 },
  { kind: 'threshold', tau: 0.1 },
  { kind: 'threshold', tau: 0.3, minExperts: 2, normalize: true },
];

/** A policy valid for `experts` experts (k and clamps capped). */
export function fitPolicy(policy: RoutingPolicy, experts: number): RoutingPolicy {
  if (policy.kind === 'top-k') return { ...policy, k: Math.min(policy.k, experts) };
  const fitted = { ...policy };
  if (fitted.minExperts !== undefined) fitted.minExperts = Math.min(fitted.minExperts, experts);
  if (fitted.maxExperts !== undefined) fitted.maxExperts = Math.min(fitted.maxExperts, experts);
  return fitted;
}

// ---- kernels that round activations ---------------------------------------------------------------------------
// The CUDA kernels for f16/bf16 weights, and the CPU's 'avx512bf16' family for bf16 weights, round x to the weight
// dtype before GEMM 1 and the SwiGLU intermediate a = silu(g) * u to it before GEMM 2, with unit roundoff
// u = 2^-8 (bf16) or 2^-11 (f16). Against a reference that uses the dtype-rounded weights but f32 activations (what
// the other CPU families compute), x's rounding moves g and u by about u relative each (random-signed terms:
// relative to the dot product, not to sum |terms|), silu' <= 1.1, and rounding a adds u: about 4u per intermediate
// element. GEMM 2 sums those independent errors with random-signed weights, so the output error is about 4u times
// the output's scale, at most 4u * max|y| for the worst token: 1.6e-2 (bf16) and 2e-3 (f16). The bounds are twice
// that and more. (An fp32 simulation of these kernels on test 72's cases gave at most 6e-3 and 6e-4: a fifth.)
export const ROUNDED_TOLERANCE = { bf16: 3e-2, f16: 5e-3 };
// The same outputs against a reference that rounds exactly where the kernels do (emulatedRoundingOutput): what is
// left is fp32 accumulation (~1e-6) and the rare element of `a` whose fp32 value lies within that 1e-6 of a rounding
// boundary and rounds the other way (one ulp = 2u of one element of `a`, spread over F terms of GEMM 2: ~0.2u of
// max|y|). Two units of roundoff (one ulp at 1) leave a margin of about ten (the simulation: at most 0.2 of these).
export const EMULATED_TOLERANCE = { bf16: 2 * 2 ** -8, f16: 2 * 2 ** -11 };

export function roundTo(dtype: 'f16' | 'bf16', value: number): number {
  return dtype === 'bf16' ? bf16BitsToF32(f32ToBf16Bits(value)) : f16BitsToF32(f32ToF16Bits(value));
}

/**
 * Float64 layer output that rounds where kernels with 16-bit activations do: x to the dtype before the expert GEMMs
 * (routed and shared), the SwiGLU intermediate to the dtype before GEMM 2; the router and the shared gate
 * sigmoid(gateWeight . x) read the f32 x. `w` holds the dtype-rounded weights (referenceWeights).
 */
export function emulatedRoundingOutput(
  w: RefLayerWeights,
  x: Float32Array,
  tokens: number,
  kMax: number,
  ids: ArrayLike<number>,
  weights: ArrayLike<number>,
  dtype: 'f16' | 'bf16',
): Float64Array {
  return refLayerOutput(w, x, tokens, kMax, ids, weights, {
    expertInput: quantise(x, dtype),
    roundIntermediate: (value) => roundTo(dtype, value),
  });
}

/** Whether the CPU kernel family `isa` rounds the activations of layers with `dtype` weights. */
export function cpuRoundsActivations(isa: string, dtype: WeightDtype): dtype is 'bf16' {
  return isa === 'avx512bf16' && dtype === 'bf16';
}

/**
 * checkForward for a CPU layer on kernel family `isa`: within `tolerance` of the float64 reference, or, where the
 * family rounds activations, within ROUNDED_TOLERANCE of it and EMULATED_TOLERANCE of the reference that rounds
 * where the kernels do.
 */
export function checkCpuForward(
  isa: string,
  dtype: WeightDtype,
  ref: RefLayerWeights,
  x: Float32Array,
  tokens: number,
  policy: RoutingPolicy,
  result: MoEForwardResult,
  tolerance: number,
): LayerCheck {
  if (!cpuRoundsActivations(isa, dtype)) return checkForward(ref, x, tokens, policy, result, tolerance);
  const check = checkForward(ref, x, tokens, policy, result, ROUNDED_TOLERANCE[dtype]);
  const { kMax, ids, weights } = result.routing;
  const emulated = emulatedRoundingOutput(ref, x, tokens, kMax, ids, weights, dtype);
  expect(maxRelativeError(result.output, emulated)).toBeLessThanOrEqual(EMULATED_TOLERANCE[dtype]);
  return check;
}
