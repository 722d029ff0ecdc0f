// Backend vs CPU comparisons: routing bit for bit, layer outputs within a tolerance (a token may differ only where
// the float64 reference calls it fragile), and digests that compare whole forward results bit for bit.
import { createHash } from 'crypto';
import { MoEForwardResult, RoutingPolicy, RoutingResult } from '../../lib';
import { typedArrayTag } from '../helpers';
import { fragileToken, RefLayerWeights, refRoute, refRouterLogits } from '../reference';

// Hoisted: a global `Math` lookup inside a hot loop is ~100x slower in jest's VM context than a local binding.
const { abs, max } = Math;

/** The bytes of a typed array (its own view, not the whole buffer it may share). */
export function bytes(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

const sha = (view: ArrayBufferView) => createHash('sha256').update(bytes(view)).digest('hex').slice(0, 16);

/** Every array of a forward result as a hash, so two results compare bit for bit and a mismatch names the field. */
export function digest(result: MoEForwardResult): Record<string, string | number> {
  return {
    output: sha(result.output),
    kMax: result.routing.kMax,
    ids: sha(result.routing.ids),
    weights: sha(result.routing.weights),
    counts: sha(result.routing.counts),
    expertLoad: sha(result.routing.expertLoad),
    gateUpRows: sha(result.work.gateUpRows),
    downRows: sha(result.work.downRows),
  };
}

/** Routing of another backend against the CPU's: ids, weight bits, counts and expertLoad identical. */
export function expectIdenticalRouting(other: RoutingResult, cpu: RoutingResult, scores: Float32Array, experts: number): void {
  expect(other.kMax).toBe(cpu.kMax);
  expect(typedArrayTag(other.ids)).toBe('Int32Array');
  expect(typedArrayTag(other.weights)).toBe('Float32Array');
  expect(typedArrayTag(other.counts)).toBe('Int32Array');
  expect(typedArrayTag(other.expertLoad)).toBe('Int32Array');
  expect([other.ids.length, other.weights.length, other.counts.length, other.expertLoad.length]).toEqual([
    cpu.ids.length,
    cpu.weights.length,
    cpu.counts.length,
    cpu.expertLoad.length,
  ]);
  const kMax = cpu.kMax;
  const problems: string[] = [];
  const same =
    bytes(other.ids).equals(bytes(cpu.ids)) &&
    bytes(other.weights).equals(bytes(cpu.weights)) &&
    bytes(other.counts).equals(bytes(cpu.counts));
  if (!same) {
    const hex = (w: ArrayLike<number>) => Array.from(bytes(Float32Array.from(w)).toString('hex').match(/.{8}/g) ?? []);
    for (let t = 0; t < cpu.counts.length && problems.length < 5; t++) {
      const slice = <T extends Int32Array | Float32Array>(a: T) => a.subarray(t * kMax, (t + 1) * kMax);
      if (
        bytes(slice(other.ids)).equals(bytes(slice(cpu.ids))) &&
        bytes(slice(other.weights)).equals(bytes(slice(cpu.weights))) &&
        other.counts[t] === cpu.counts[t]
      ) {
        continue;
      }
      const row = Array.from(scores.subarray(t * experts, Math.min((t + 1) * experts, t * experts + 24)));
      problems.push(
        `token ${t}: ids [${Array.from(slice(other.ids))}] weights [${hex(slice(other.weights))}] count ${other.counts[t]}; ` +
          `cpu ids [${Array.from(slice(cpu.ids))}] weights [${hex(slice(cpu.weights))}] count ${cpu.counts[t]}; scores [${row}]`,
      );
    }
  }
  expect(problems).toEqual([]);
  expect(same).toBe(true);
  expect(Array.from(other.expertLoad)).toEqual(Array.from(cpu.expertLoad));
}

export function rmsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += (a[i] - b[i]) ** 2;
  return Math.sqrt(sum / a.length);
}

/** Per token: may an fp32 router legitimately choose differently from float64 (as checkForward decides)? */
function fragileFlags(ref: RefLayerWeights, x: Float32Array, tokens: number, policy: RoutingPolicy): boolean[] {
  const { hidden: H, experts: E } = ref;
  const { logits, magnitudes } = refRouterLogits(ref, x, tokens);
  const routing = refRoute(logits, tokens, E, policy);
  return Array.from({ length: tokens }, (_, t) => {
    let magnitude = 0;
    for (let e = 0; e < E; e++) magnitude = max(magnitude, magnitudes[t * E + e]);
    const logitError = (H + 2) * 2 ** -24 * magnitude;
    return fragileToken(routing.probs.subarray(t * E, (t + 1) * E), policy, {
      logits: logits.subarray(t * E, (t + 1) * E),
      logitError,
    });
  });
}

/**
 * Another backend's forward vs the CPU's, same layer and input: the router logits come from different GEMMs, so a
 * token may choose differently only where the reference calls it fragile; every other token has the same ids,
 * weights within 1e-5, and an output within `tolerance` (of the CPU output's max magnitude). Returns the tokens
 * that differed.
 */
export function compareLayerWithCpu(
  ref: RefLayerWeights,
  x: Float32Array,
  tokens: number,
  policy: RoutingPolicy,
  other: MoEForwardResult,
  cpu: MoEForwardResult,
  tolerance: number,
): number {
  const { hidden: H } = ref;
  const kMax = cpu.routing.kMax;
  expect(other.routing.kMax).toBe(kMax);
  expect(typedArrayTag(other.output)).toBe('Float32Array');
  expect(typedArrayTag(other.routing.ids)).toBe('Int32Array');
  expect(typedArrayTag(other.routing.weights)).toBe('Float32Array');
  expect(typedArrayTag(other.routing.counts)).toBe('Int32Array');
  expect(typedArrayTag(other.routing.expertLoad)).toBe('Int32Array');
  expect(typedArrayTag(other.work.gateUpRows)).toBe('Int32Array');
  expect(other.output.length).toBe(cpu.output.length);
  expect(other.routing.ids.length).toBe(cpu.routing.ids.length);
  let fragile: boolean[] | undefined; // the float64 routing is costly: computed only if some token differs
  const problems: string[] = [];
  let differing = 0;
  let maxDiff = 0;
  let maxCpu = 0;
  for (let t = 0; t < tokens; t++) {
    const otherIds = Array.from(other.routing.ids.subarray(t * kMax, (t + 1) * kMax));
    const cpuIds = Array.from(cpu.routing.ids.subarray(t * kMax, (t + 1) * kMax));
    for (let h = 0; h < H; h++) maxCpu = max(maxCpu, abs(cpu.output[t * H + h]));
    if (otherIds.join() !== cpuIds.join() || other.routing.counts[t] !== cpu.routing.counts[t]) {
      differing++;
      fragile ??= fragileFlags(ref, x, tokens, policy);
      if (!fragile[t] && problems.length < 5) problems.push(`token ${t}: ids [${otherIds}] != cpu ids [${cpuIds}]`);
      continue;
    }
    for (let s = 0; s < cpu.routing.counts[t]; s++) {
      const a = other.routing.weights[t * kMax + s];
      const b = cpu.routing.weights[t * kMax + s];
      if (!(abs(a - b) <= 1e-5 * abs(b) + 1e-7) && problems.length < 5) {
        problems.push(`token ${t} slot ${s}: weight ${a} != cpu weight ${b}`);
      }
    }
    for (let h = 0; h < H; h++) {
      const diff = abs(other.output[t * H + h] - cpu.output[t * H + h]);
      maxDiff = Number.isNaN(diff) ? Infinity : max(maxDiff, diff);
    }
  }
  expect(problems).toEqual([]);
  expect(maxCpu === 0 ? maxDiff : maxDiff / maxCpu).toBeLessThanOrEqual(tolerance);
  if (differing === 0) {
    expect(Array.from(other.routing.expertLoad)).toEqual(Array.from(cpu.routing.expertLoad));
    expect(Array.from(other.work.gateUpRows)).toEqual(Array.from(cpu.work.gateUpRows));
    expect(Array.from(other.work.downRows)).toEqual(Array.from(cpu.work.downRows));
  }
  return differing;
}
