// Router score generators for the routing tests: logits and probabilities shaped to hit every hard case of the
// ROUTING.md contract (ties, near-ties one ulp apart, saturated softmax, cumulative sums landing on p).
import { Rng } from './random';
import { sumOf } from './layer';

export type ScoreDistribution =
  | 'normal'
  | 'onehot'
  | 'ties'
  | 'equal'
  | 'duplicates'
  | 'ulpNeighbours'
  | 'extreme80'
  | 'spread1e3'
  | 'logSteps'
  | 'probabilities'
  | 'zeroedProbabilities'
  | 'sparseProbabilities'
  | 'stepProbabilities';

/** Whether a distribution gives probabilities (route with input 'probabilities') rather than logits. */
export const isProbabilities = (d: ScoreDistribution): boolean => d.endsWith('robabilities');

// `value` moved by `steps` fp32 ulps.
const nextUp = (value: number, steps: number): number => {
  if (value === 0) return value; // stepping the bits of 0 down would give NaN
  const f = new Float32Array([value]);
  const i = new Int32Array(f.buffer);
  i[0] += value >= 0 ? steps : -steps;
  return f[0];
};

/** A composition of 10 tenths over `experts` (many zeros when experts > 10): running sums land on 0.1, 0.4, 0.9. */
function tenths(rng: Rng, experts: number): number[] {
  const parts = new Array<number>(experts).fill(0);
  for (let i = 0; i < 10; i++) parts[rng.int(0, experts - 1)]++;
  return parts;
}

/** `tokens` rows of `experts` router scores (logits, or probabilities for the *robabilities kinds). */
export function makeScores(rng: Rng, distribution: ScoreDistribution, tokens: number, experts: number): Float32Array {
  const scores = new Float32Array(tokens * experts);
  const std = rng.pick([0.5, 1, 2, 4]);
  const range = rng.pick([1, 2, 4]);
  for (let t = 0; t < tokens; t++) {
    const row = scores.subarray(t * experts, (t + 1) * experts);
    switch (distribution) {
      case 'normal':
        for (let e = 0; e < experts; e++) row[e] = std * rng.normal();
        break;
      case 'onehot':
        for (let e = 0; e < experts; e++) row[e] = rng.normal();
        row[rng.int(0, experts - 1)] += 20;
        break;
      case 'ties': // small integers: exact ties everywhere
        for (let e = 0; e < experts; e++) row[e] = rng.int(-range, range);
        break;
      case 'equal': // a whole row of one value (0 on some rows)
        row.fill(rng.next() < 0.3 ? 0 : std * rng.normal());
        break;
      case 'duplicates': {
        // a few non-integer values, each repeated: ties between probabilities that are not round numbers
        const palette = Array.from({ length: range + 1 }, () => std * rng.normal());
        for (let e = 0; e < experts; e++) row[e] = rng.pick(palette);
        break;
      }
      case 'ulpNeighbours': {
        // values one or two fp32 ulps apart: the near-ties that fp32 arithmetic must order the same way everywhere
        const base = std * rng.normal();
        for (let e = 0; e < experts; e++) row[e] = nextUp(base, rng.int(-2, 2));
        break;
      }
      case 'extreme80': // +-80 and values between: saturated softmax, underflowing exp
        for (let e = 0; e < experts; e++) row[e] = rng.next() < 0.5 ? rng.pick([-80, 80]) : rng.uniform(-80, 80);
        break;
      case 'spread1e3':
        for (let e = 0; e < experts; e++) row[e] = rng.uniform(-500, 500);
        break;
      case 'logSteps': // logits whose softmax is (about) tenths: cumulative sums within rounding of p
        tenths(rng, experts).forEach((n, e) => (row[e] = n === 0 ? -80 : Math.log(n / 10)));
        break;
      case 'probabilities': {
        // at most one probability exactly 0
        const weights = Array.from({ length: experts }, () => Math.exp(std * rng.normal()));
        if (rng.next() < 0.2) weights[rng.int(0, experts - 1)] = 0;
        const sum = weights.reduce((a, b) => a + b, 0) || 1;
        for (let e = 0; e < experts; e++) row[e] = weights[e] / sum;
        break;
      }
      case 'zeroedProbabilities': {
        // each probability 0 one time in five (all of them, now and then)
        const weights = Array.from({ length: experts }, () => Math.exp(std * rng.normal()));
        for (let e = 0; e < experts; e++) if (rng.next() < 0.2) weights[e] = 0;
        const sum = weights.reduce((a, b) => a + b, 0);
        for (let e = 0; e < experts; e++) row[e] = sum > 0 ? weights[e] / sum : 0;
        break;
      }
      case 'sparseProbabilities': {
        // most probabilities exactly 0; a third of the rows put everything on one expert
        if (rng.next() < 0.33) row[rng.int(0, experts - 1)] = 1;
        else {
          const nonzero = Math.min(experts, rng.int(1, 3));
          for (let i = 0; i < nonzero; i++) row[rng.int(0, experts - 1)] = rng.next();
          const sum = sumOf(row);
          for (let e = 0; e < experts; e++) row[e] = sum > 0 ? row[e] / sum : 0;
        }
        break;
      }
      case 'stepProbabilities': // exact tenths (as fp32): running sums land on p = 0.1, 0.4, 0.9
        tenths(rng, experts).forEach((n, e) => (row[e] = n / 10));
        break;
    }
  }
  return scores;
}
