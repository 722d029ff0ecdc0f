// routerLosses() against a float64 reference written here (softmax, the ROUTING.md selection, the paper's two losses
// and their logit gradients) on random shapes and every policy; known values on hand-built logits; central finite
// differences of the reference losses for the gradients; input left unchanged; error codes at both boundaries.
import {
  getThreads,
  route,
  routerLosses,
  RouterLosses,
  RouterLossOptions,
  RoutingPolicy,
  RoutingResult,
  setThreads,
} from '../lib';
import { native } from '../lib/addon/native';
import { typedArrayTag } from './helpers';
import { describePolicy, fragileToken, refRoute, Rng, softmax64 } from './reference';

// Losses and Q are double math on both sides; only summation order and libm ulps differ.
const LOSS_RELATIVE_TOLERANCE = 1e-9;
const LOSS_ABSOLUTE_TOLERANCE = 1e-15;
// Gradients are stored as float (half an ulp is 6e-8 relative).
const GRADIENT_RELATIVE_TOLERANCE = 1e-6;
// Where the gradient cancels ((log P + H) or (f_j - sum f P) near 0), double rounding of the terms shows: allow
// this fraction of the terms' size. Below the float range, values round to subnormals or 0.
const GRADIENT_CANCELLATION_TOLERANCE = 1e-12;
const FLOAT_SUBNORMAL_TOLERANCE = 1e-44;

type Distribution = 'normal' | 'ties' | 'equal' | 'extreme80' | 'spread1e3' | 'onehot';

interface Case {
  name: string;
  tokens: number;
  experts: number;
  policy: RoutingPolicy;
  distribution: Distribution;
  gradients: boolean;
  seed: number;
}

/** The float64 reference losses and gradients for given logits and selection fractions f. */
interface ReferenceLosses {
  dynamicLoss: number;
  loadBalanceLoss: number;
  meanProbability: Float64Array;
  dynamicLossGradient: Float64Array;
  loadBalanceLossGradient: Float64Array;
  // the size of the terms each gradient is a difference of (for the cancellation tolerance)
  dynamicTermScale: Float64Array;
  loadBalanceTermScale: Float64Array;
}

/**
 * L_d = mean_t H_t, L_b = E sum_i f_i Q_i, and their gradients with f held fixed, all in float64, from logits `z`
 * (any precision: the finite-difference check perturbs them in double).
 */
function referenceLosses(
  z: ArrayLike<number>,
  tokens: number,
  experts: number,
  fraction: ArrayLike<number>,
): ReferenceLosses {
  const meanProbability = new Float64Array(experts);
  const dynamicLossGradient = new Float64Array(tokens * experts);
  const loadBalanceLossGradient = new Float64Array(tokens * experts);
  const dynamicTermScale = new Float64Array(tokens * experts);
  const loadBalanceTermScale = new Float64Array(tokens * experts);
  let entropySum = 0;
  for (let t = 0; t < tokens; t++) {
    const row = new Float64Array(experts);
    for (let e = 0; e < experts; e++) row[e] = z[t * experts + e];
    const p = softmax64(row);
    let entropy = 0;
    for (let e = 0; e < experts; e++) if (p[e] > 0) entropy -= p[e] * Math.log(p[e]);
    entropySum += entropy;
    let expectedFraction = 0;
    for (let e = 0; e < experts; e++) {
      meanProbability[e] += p[e];
      expectedFraction += fraction[e] * p[e];
    }
    for (let e = 0; e < experts; e++) {
      const i = t * experts + e;
      const logP = p[e] > 0 ? Math.log(p[e]) : 0;
      dynamicLossGradient[i] = p[e] > 0 ? (-1 / tokens) * p[e] * (logP + entropy) : 0;
      dynamicTermScale[i] = (p[e] * (Math.abs(logP) + entropy + 1)) / tokens;
      loadBalanceLossGradient[i] = (experts / tokens) * p[e] * (fraction[e] - expectedFraction);
      loadBalanceTermScale[i] = ((experts / tokens) * p[e] * (fraction[e] + expectedFraction + 1));
    }
  }
  let balance = 0;
  for (let e = 0; e < experts; e++) {
    meanProbability[e] /= tokens;
    balance += fraction[e] * meanProbability[e];
  }
  return {
    dynamicLoss: entropySum / tokens,
    loadBalanceLoss: experts * balance,
    meanProbability,
    dynamicLossGradient,
    loadBalanceLossGradient,
    dynamicTermScale,
    loadBalanceTermScale,
  };
}

/**
 * The reference selection: float64 refRoute (ROUTING.md), except on "fragile" tokens where fp32 may legitimately cut
 * or order differently; those take route()'s selection (held to the contract by 20.routing.reference) and are
 * counted. Returns counts per token and f.
 */
function referenceSelection(
  logits: Float32Array,
  tokens: number,
  experts: number,
  policy: RoutingPolicy,
  routed: RoutingResult,
): { counts: Int32Array; fraction: Float64Array; fragile: number } {
  const ref = refRoute(logits, tokens, experts, policy);
  const counts = new Int32Array(tokens);
  const load = new Float64Array(experts);
  let fragile = 0;
  for (let t = 0; t < tokens; t++) {
    const probs = ref.probs.subarray(t * experts, (t + 1) * experts);
    const isFragile = fragileToken(probs, policy, { logits: logits.subarray(t * experts, (t + 1) * experts) });
    const source = isFragile ? routed : ref;
    if (isFragile) fragile++;
    counts[t] = source.counts[t];
    for (let s = 0; s < source.counts[t]; s++) load[source.ids[t * source.kMax + s]]++;
  }
  return { counts, fraction: load.map((n) => n / tokens), fragile };
}

function makeLogits(rng: Rng, distribution: Distribution, tokens: number, experts: number): Float32Array {
  const logits = new Float32Array(tokens * experts);
  const std = rng.pick([0.5, 1, 2, 4]);
  const tieRange = rng.pick([1, 2, 4]);
  const constant = rng.uniform(-3, 3);
  for (let t = 0; t < tokens; t++) {
    const row = logits.subarray(t * experts, (t + 1) * experts);
    for (let e = 0; e < experts; e++) {
      switch (distribution) {
        case 'normal':
          row[e] = std * rng.normal();
          break;
        case 'ties': // integers in a small range: many exact ties
          row[e] = rng.int(-tieRange, tieRange);
          break;
        case 'equal': // every expert tied: P = 1/E
          row[e] = constant;
          break;
        case 'extreme80': // softmax saturates, fp32 exp underflows
          row[e] = rng.next() < 0.5 ? rng.pick([-80, 80]) : rng.uniform(-80, 80);
          break;
        case 'spread1e3': // even double exp underflows: P is exactly 0 for far-away experts
          row[e] = rng.uniform(-500, 500);
          break;
        case 'onehot': // one dominant expert per token
          row[e] = rng.normal();
          break;
      }
    }
    if (distribution === 'onehot') row[rng.int(0, experts - 1)] += 20;
  }
  return logits;
}

function randomShape(rng: Rng, budget = 60000): { tokens: number; experts: number } {
  const experts = rng.pick([1, 2, 3, 4, 5, 7, 8, 16, 31, 32, 60, 64, 100, 128]);
  const maxTokens = Math.max(1, Math.min(2048, Math.floor(budget / experts)));
  const tokens = rng.pick([1, 2, 3, rng.int(1, maxTokens), maxTokens]);
  return { tokens, experts };
}

function randomClamps(rng: Rng, experts: number): { minExperts?: number; maxExperts?: number } {
  const clamps: { minExperts?: number; maxExperts?: number } = {};
  if (rng.next() < 0.4) clamps.maxExperts = rng.int(1, experts);
  if (rng.next() < 0.4) clamps.minExperts = rng.int(1, clamps.maxExperts ?? experts);
  return clamps;
}

function randomPolicy(rng: Rng, kind: RoutingPolicy['kind'], experts: number): RoutingPolicy {
  const normalize = rng.next() < 0.3 ? { normalize: true } : {};
  switch (kind) {
    case 'top-p':
      return { kind, p: rng.pick([0.05, 0.2, 0.4, 0.5, 0.7, 0.9, 1]), ...randomClamps(rng, experts), ...normalize };
    case 'top-k':
      return { kind, k: rng.pick([1, Math.min(2, experts), rng.int(1, experts), experts]), ...normalize };
    case 'threshold':
      return { kind, tau: rng.pick([0, 0.01, 0.05, 0.1, 0.2, 0.5, 1]), ...randomClamps(rng, experts), ...normalize };
  }
}

function buildCases(): Case[] {
  const rng = new Rng(93);
  const cases: Case[] = [];
  const add = (distribution: Distribution, shape: { tokens: number; experts: number }, policy: RoutingPolicy) => {
    const seed = rng.int(1, 2 ** 31);
    const gradients = rng.next() < 0.75;
    const what = `${distribution} T=${shape.tokens} E=${shape.experts} ${describePolicy(policy)}`;
    const name = `${what}${gradients ? ' +grad' : ''} seed=${seed}`;
    cases.push({ name, ...shape, policy, distribution, gradients, seed });
  };
  for (const kind of ['top-p', 'top-k', 'threshold'] as const) {
    for (let i = 0; i < 14; i++) {
      const shape = randomShape(rng);
      add(rng.pick(['normal', 'normal', 'onehot', 'ties'] as const), shape, randomPolicy(rng, kind, shape.experts));
    }
  }
  for (const distribution of ['extreme80', 'spread1e3', 'equal'] as const) {
    for (let i = 0; i < 6; i++) {
      const shape = randomShape(rng);
      const kind = rng.pick(['top-p', 'top-k', 'threshold'] as const);
      add(distribution, shape, randomPolicy(rng, kind, shape.experts));
    }
  }
  // the largest shapes of the brief, the seed paper's setting, and p = 1 (every expert)
  add('normal', { tokens: 2048, experts: 128 }, { kind: 'top-p', p: 0.4 });
  add('normal', { tokens: 2048, experts: 16 }, { kind: 'top-p', p: 0.4 });
  add('normal', { tokens: 1000, experts: 64 }, { kind: 'top-p', p: 1 });
  add('normal', { tokens: 2048, experts: 8 }, { kind: 'top-k', k: 2, normalize: true });
  add('normal', { tokens: 777, experts: 60 }, { kind: 'threshold', tau: 0.05 });
  return cases;
}

function closeTo(actual: number, expected: number, relative: number, absolute: number): boolean {
  return Math.abs(actual - expected) <= relative * Math.abs(expected) + absolute;
}

/** Indices (up to 3, described) where `actual` differs from `expected` beyond the tolerance. */
function gradientMismatches(
  actual: Float32Array,
  expected: Float64Array,
  termScale: Float64Array,
  experts: number,
): string[] {
  const problems: string[] = [];
  for (let i = 0; i < expected.length && problems.length < 3; i++) {
    const tolerance =
      GRADIENT_RELATIVE_TOLERANCE * Math.abs(expected[i]) +
      GRADIENT_CANCELLATION_TOLERANCE * termScale[i] +
      FLOAT_SUBNORMAL_TOLERANCE;
    if (!(Math.abs(actual[i] - expected[i]) <= tolerance)) {
      problems.push(`token ${Math.floor(i / experts)} expert ${i % experts}: ${actual[i]} vs ${expected[i]}`);
    }
  }
  return problems;
}

/** Asserts a routerLosses() result against the reference and route(); returns the count of fragile tokens. */
async function checkCase(c: Case, logits: Float32Array, result: RouterLosses): Promise<number> {
  const { tokens: T, experts: E, policy } = c;
  expect(typedArrayTag(result.fraction)).toBe('Float64Array');
  expect(typedArrayTag(result.meanProbability)).toBe('Float64Array');
  expect(typedArrayTag(result.counts)).toBe('Int32Array');
  expect(result.fraction.length).toBe(E);
  expect(result.meanProbability.length).toBe(E);
  expect(result.counts.length).toBe(T);

  // the selection is route()'s, bit for bit
  const routed = await route(logits, { tokens: T, experts: E, policy });
  expect(Array.from(result.counts)).toEqual(Array.from(routed.counts));
  expect(Array.from(result.fraction)).toEqual(Array.from(routed.expertLoad, (n) => n / T));

  // and the float64 contract's, apart from fragile tokens
  const selection = referenceSelection(logits, T, E, policy, routed);
  expect(Array.from(result.counts)).toEqual(Array.from(selection.counts));
  expect(Array.from(result.fraction)).toEqual(Array.from(selection.fraction));
  expect(result.expertsPerToken).toBe(selection.counts.reduce((a, b) => a + b, 0) / T);

  const ref = referenceLosses(logits, T, E, selection.fraction);
  const lossProblems: string[] = [];
  if (!closeTo(result.dynamicLoss, ref.dynamicLoss, LOSS_RELATIVE_TOLERANCE, LOSS_ABSOLUTE_TOLERANCE)) {
    lossProblems.push(`dynamicLoss ${result.dynamicLoss} vs ${ref.dynamicLoss}`);
  }
  if (!closeTo(result.loadBalanceLoss, ref.loadBalanceLoss, LOSS_RELATIVE_TOLERANCE, LOSS_ABSOLUTE_TOLERANCE)) {
    lossProblems.push(`loadBalanceLoss ${result.loadBalanceLoss} vs ${ref.loadBalanceLoss}`);
  }
  for (let e = 0; e < E; e++) {
    if (!closeTo(result.meanProbability[e], ref.meanProbability[e], LOSS_RELATIVE_TOLERANCE, 1e-300)) {
      lossProblems.push(`Q[${e}] ${result.meanProbability[e]} vs ${ref.meanProbability[e]}`);
      break;
    }
  }
  expect(lossProblems).toEqual([]);

  if (c.gradients) {
    expect(typedArrayTag(result.dynamicLossGradient)).toBe('Float32Array');
    expect(typedArrayTag(result.loadBalanceLossGradient)).toBe('Float32Array');
    const dynamic = result.dynamicLossGradient as Float32Array;
    const balance = result.loadBalanceLossGradient as Float32Array;
    expect(dynamic.length).toBe(T * E);
    expect(balance.length).toBe(T * E);
    expect(gradientMismatches(dynamic, ref.dynamicLossGradient, ref.dynamicTermScale, E)).toEqual([]);
    expect(gradientMismatches(balance, ref.loadBalanceLossGradient, ref.loadBalanceTermScale, E)).toEqual([]);
  } else {
    expect(result.dynamicLossGradient).toBeUndefined();
    expect(result.loadBalanceLossGradient).toBeUndefined();
  }
  return selection.fragile;
}

// ---------------------------------------------------------------------------------------------------------------
describe('routerLosses() agrees with the float64 reference', () => {
  const cases = buildCases();
  let tokensSeen = 0;
  let fragileSeen = 0;
  const seen = { 'top-p': 0, 'top-k': 0, threshold: 0, pEqualsOne: 0, oneToken: 0, oneExpert: 0, maxTokens: 0 };

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const logits = makeLogits(new Rng(c.seed), c.distribution, c.tokens, c.experts);
    const before = logits.slice();
    const result = await routerLosses(logits, {
      tokens: c.tokens,
      experts: c.experts,
      policy: c.policy,
      gradients: c.gradients,
    });
    expect(Buffer.from(logits.buffer).equals(Buffer.from(before.buffer))).toBe(true);
    const fragile = await checkCase(c, logits, result);
    // ties, equal logits and saturated softmaxes make fragile tokens on purpose; for random reals they are accidents
    if (c.distribution === 'normal') {
      fragileSeen += fragile;
      tokensSeen += c.tokens;
    }
    seen[c.policy.kind]++;
    if (c.policy.kind === 'top-p' && c.policy.p === 1) seen.pEqualsOne++;
    if (c.tokens === 1) seen.oneToken++;
    if (c.experts === 1) seen.oneExpert++;
    if (c.tokens === 2048) seen.maxTokens++;
  });

  it('covered every policy kind, p = 1, one token, one expert and 2048 tokens; fragile tokens stayed rare', () => {
    expect(Object.entries(seen).filter(([, n]) => n === 0)).toEqual([]);
    expect(tokensSeen).toBeGreaterThan(10000);
    expect(fragileSeen / tokensSeen).toBeLessThan(0.01);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('routerLosses() known values', () => {
  it('one expert: L_d = 0, L_b = 1, f = Q = 1, zero gradients, for every policy', async () => {
    const logits = new Rng(1).normalArray(37, 3);
    for (const policy of [
      { kind: 'top-k', k: 1 },
      { kind: 'top-p', p: 0.05 },
      { kind: 'top-p', p: 1 },
      { kind: 'threshold', tau: 1 },
    ] as RoutingPolicy[]) {
      const r = await routerLosses(logits, { tokens: 37, experts: 1, policy, gradients: true });
      expect(r.dynamicLoss).toBe(0);
      expect(r.loadBalanceLoss).toBe(1);
      expect(r.expertsPerToken).toBe(1);
      expect(Array.from(r.fraction)).toEqual([1]);
      expect(Array.from(r.meanProbability)).toEqual([1]);
      expect(Array.from(r.counts)).toEqual(Array(37).fill(1));
      expect(Array.from(r.dynamicLossGradient as Float32Array).every((g) => g === 0)).toBe(true);
      expect(Array.from(r.loadBalanceLossGradient as Float32Array).every((g) => g === 0)).toBe(true);
    }
  });

  it('16 equal logits, top-p 0.4: 7 experts (ties by id), L_d = ln 16, L_b = 7, dL_d = 0', async () => {
    const r = await routerLosses(new Float32Array(3 * 16).fill(0.25), {
      tokens: 3,
      experts: 16,
      policy: { kind: 'top-p', p: 0.4 },
      gradients: true,
    });
    expect(Array.from(r.counts)).toEqual([7, 7, 7]);
    expect(Array.from(r.fraction)).toEqual([...Array(7).fill(1), ...Array(9).fill(0)]);
    expect(r.dynamicLoss).toBeCloseTo(Math.log(16), 13);
    expect(r.loadBalanceLoss).toBeCloseTo(7, 13);
    expect(Math.max(...Array.from(r.dynamicLossGradient as Float32Array, Math.abs))).toBeLessThan(1e-15);
    // dL_b/dz_tj = (E/T)(1/E)(f_j - 7/16)
    const expected = Array.from({ length: 48 }, (_, i) => ((i % 16 < 7 ? 1 : 0) - 7 / 16) / 3);
    Array.from(r.loadBalanceLossGradient as Float32Array).forEach((g, i) => expect(g).toBeCloseTo(expected[i], 7));
  });

  it('the worked example of ROUTING.md (p = 0.4): e1, e3 kept; L_b from f = [0, 1, 0, 1, 0, 0]', async () => {
    const z = [0.2, 1.0, 0.0, 0.8, 0.4, 0.6];
    const r = await routerLosses(Float32Array.from(z), { tokens: 1, experts: 6, policy: { kind: 'top-p', p: 0.4 } });
    const p = softmax64(Float32Array.from(z));
    expect(Array.from(r.fraction)).toEqual([0, 1, 0, 1, 0, 0]);
    expect(r.loadBalanceLoss).toBeCloseTo(6 * (p[1] + p[3]), 12); // 6 * .4717762
    expect(r.loadBalanceLoss).toBeCloseTo(2.8306573, 6);
    expect(r.dynamicLoss).toBeCloseTo(-p.reduce((s, q) => s + q * Math.log(q), 0), 12);
  });

  it('balanced top-1 over E experts gives L_b = 1; everything on one expert gives L_b = E', async () => {
    const E = 8;
    const balanced = new Float32Array(E * E).fill(-30);
    const collapsed = new Float32Array(E * E).fill(-30);
    for (let t = 0; t < E; t++) {
      balanced[t * E + t] = 30; // token t prefers expert t
      collapsed[t * E] = 30; // every token prefers expert 0
    }
    const policy: RoutingPolicy = { kind: 'top-k', k: 1 };
    const b = await routerLosses(balanced, { tokens: E, experts: E, policy });
    const c = await routerLosses(collapsed, { tokens: E, experts: E, policy });
    expect(b.loadBalanceLoss).toBeCloseTo(1, 12);
    expect(c.loadBalanceLoss).toBeCloseTo(E, 12);
    expect(b.dynamicLoss).toBeLessThan(1e-20); // near one-hot: H = 7 * 60 e^-60 (+ rounding), tiny but positive
    expect(b.dynamicLoss).toBeGreaterThan(0);
  });

  it('far-apart logits (P underflows to 0 in double) give finite losses and gradients', async () => {
    const logits = Float32Array.from([500, -500, 0, -80, 80, 80, -1000, 3]);
    const r = await routerLosses(logits, { tokens: 2, experts: 4, policy: { kind: 'top-p', p: 0.9 }, gradients: true });
    expect(Number.isFinite(r.dynamicLoss) && Number.isFinite(r.loadBalanceLoss)).toBe(true);
    expect(Array.from(r.dynamicLossGradient as Float32Array).every(Number.isFinite)).toBe(true);
    expect(Array.from(r.loadBalanceLossGradient as Float32Array).every(Number.isFinite)).toBe(true);
    expect(Array.from(r.counts)).toEqual([1, 2]); // token 1: two tied 80s (P = .5 each); the sum passes .9 at the 2nd
    expect(r.dynamicLoss).toBeCloseTo(Math.log(2) / 2, 12);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('routerLosses() gradients match finite differences of the reference losses (f held fixed)', () => {
  const STEP = 1e-5;
  const rng = new Rng(9393);
  const fdCases: Array<{ name: string; tokens: number; experts: number; policy: RoutingPolicy; logits: Float32Array }> =
    [];
  for (let i = 0; i < 6; i++) {
    const tokens = rng.int(1, 4);
    const experts = rng.int(2, 8);
    const policy = randomPolicy(rng, rng.pick(['top-p', 'top-k', 'threshold'] as const), experts);
    const logits = rng.normalArray(tokens * experts, rng.pick([0.5, 1, 2]));
    fdCases.push({ name: `T=${tokens} E=${experts} ${describePolicy(policy)}`, tokens, experts, policy, logits });
  }
  fdCases.push({
    name: 'ties T=2 E=6 top-p(p=0.4)',
    tokens: 2,
    experts: 6,
    policy: { kind: 'top-p', p: 0.4 },
    logits: Float32Array.from([0, 0, 0, 0, 0, 0, 1, 1, 0, -1, 2, 2]),
  });

  it.each(fdCases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    const { tokens: T, experts: E, logits } = c;
    const r = await routerLosses(logits, { tokens: T, experts: E, policy: c.policy, gradients: true });
    const dynamic = r.dynamicLossGradient as Float32Array;
    const balance = r.loadBalanceLossGradient as Float32Array;
    const z = Float64Array.from(logits);
    let largest = 0;
    for (let i = 0; i < T * E; i++) {
      const up = Float64Array.from(z);
      const down = Float64Array.from(z);
      up[i] += STEP;
      down[i] -= STEP;
      const lossUp = referenceLosses(up, T, E, r.fraction);
      const lossDown = referenceLosses(down, T, E, r.fraction);
      const dynamicFd = (lossUp.dynamicLoss - lossDown.dynamicLoss) / (2 * STEP);
      const balanceFd = (lossUp.loadBalanceLoss - lossDown.loadBalanceLoss) / (2 * STEP);
      expect(Math.abs(dynamic[i] - dynamicFd)).toBeLessThanOrEqual(1e-6 * Math.abs(dynamicFd) + 1e-9);
      expect(Math.abs(balance[i] - balanceFd)).toBeLessThanOrEqual(1e-6 * Math.abs(balanceFd) + 1e-9);
      largest = Math.max(largest, Math.abs(dynamicFd), Math.abs(balanceFd));
    }
    expect(largest).toBeGreaterThan(1e-3); // the check compared real slopes, not zeros
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('routerLosses() inputs', () => {
  it('many experts (selection made in several blocks of tokens): route()\'s selection, reference losses', async () => {
    // 2048 top-p slots per token: the native side routes 1024 tokens per block (16 MiB), so 1100 make two
    const T = 1100;
    const E = 2048;
    const policy: RoutingPolicy = { kind: 'top-p', p: 0.4 };
    const logits = new Rng(4).uniformArray(T * E, -5, 5);
    const r = await routerLosses(logits, { tokens: T, experts: E, policy, gradients: true });
    const routed = await route(logits, { tokens: T, experts: E, policy });
    expect(Array.from(r.counts)).toEqual(Array.from(routed.counts));
    const fraction = Array.from(routed.expertLoad, (n) => n / T);
    expect(Array.from(r.fraction)).toEqual(fraction);
    const ref = referenceLosses(logits, T, E, fraction);
    expect(closeTo(r.dynamicLoss, ref.dynamicLoss, LOSS_RELATIVE_TOLERANCE, 0)).toBe(true);
    expect(closeTo(r.loadBalanceLoss, ref.loadBalanceLoss, LOSS_RELATIVE_TOLERANCE, 0)).toBe(true);
    const balance = r.loadBalanceLossGradient as Float32Array;
    expect(gradientMismatches(balance, ref.loadBalanceLossGradient, ref.loadBalanceTermScale, E)).toEqual([]);
  });

  it('copies the logits at the call: changing them before the promise settles does not change the result', async () => {
    const rng = new Rng(5);
    const logits = rng.normalArray(512 * 16);
    const options = { tokens: 512, experts: 16, policy: { kind: 'top-p', p: 0.4 } as RoutingPolicy, gradients: true };
    const expected = await routerLosses(logits.slice(), options);
    const pending = routerLosses(logits, options);
    logits.fill(0);
    const actual = await pending;
    expect(actual.dynamicLoss).toBe(expected.dynamicLoss);
    expect(actual.loadBalanceLoss).toBe(expected.loadBalanceLoss);
    expect(Array.from(actual.counts)).toEqual(Array.from(expected.counts));
    expect(Array.from(actual.dynamicLossGradient as Float32Array)).toEqual(
      Array.from(expected.dynamicLossGradient as Float32Array),
    );
  });

  it('gives the same bits with one thread as with all of them', async () => {
    const logits = new Rng(6).normalArray(1500 * 32, 2);
    const options = { tokens: 1500, experts: 32, policy: { kind: 'top-p', p: 0.5 } as RoutingPolicy, gradients: true };
    const threads = getThreads();
    const many = await routerLosses(logits, options);
    setThreads(1);
    try {
      const one = await routerLosses(logits, options);
      expect(one.dynamicLoss).toBe(many.dynamicLoss);
      expect(one.loadBalanceLoss).toBe(many.loadBalanceLoss);
      expect(Array.from(one.meanProbability)).toEqual(Array.from(many.meanProbability));
      expect(Array.from(one.loadBalanceLossGradient as Float32Array)).toEqual(
        Array.from(many.loadBalanceLossGradient as Float32Array),
      );
    } finally {
      setThreads(threads);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
/** The code and message of the error `call` throws or rejects with (checked by shape, not instanceof). */
async function errorOf(call: () => unknown): Promise<{ code: unknown; message: string }> {
  try {
    await call();
  } catch (error) {
    const { code, message } = error as { code?: unknown; message?: unknown };
    return { code, message: String(message) };
  }
  throw new Error('expected the call to fail');
}

describe('routerLosses() rejects bad input with stable codes', () => {
  const E = 4;
  const good = () => new Rng(7).normalArray(3 * E);
  const policy: RoutingPolicy = { kind: 'top-p', p: 0.4 };
  const TYPE = 'ERR_DYNAMOE_TYPE';
  const SHAPE = 'ERR_DYNAMOE_SHAPE';
  const POLICY = 'ERR_DYNAMOE_POLICY';
  const VALUE = 'ERR_DYNAMOE_VALUE';
  // the public function with `options` (3 tokens of E experts unless overridden) and `logits`
  const call = (options: object, logits: unknown = good()) => () =>
    routerLosses(logits as Float32Array, { tokens: 3, experts: E, policy, ...options } as RouterLossOptions);
  const withLogit = (index: number, value: number) => {
    const logits = good();
    logits[index] = value;
    return logits;
  };
  const bad: Array<{ name: string; call: () => Promise<unknown>; code: string; message: RegExp }> = [
    { name: 'logits a Float64Array', call: call({}, Float64Array.from(good())), code: TYPE, message: /Float32Array/ },
    { name: 'logits too short', call: call({ tokens: 4 }), code: SHAPE, message: /16 elements/ },
    { name: 'options not an object', call: () => routerLosses(good(), null as never), code: TYPE, message: /options/ },
    { name: 'tokens 0', call: call({ tokens: 0 }), code: SHAPE, message: /tokens/ },
    { name: 'experts 2.5', call: call({ experts: 2.5 }), code: SHAPE, message: /experts/ },
    { name: 'experts above 65536', call: call({ experts: 65537 }), code: SHAPE, message: /experts/ },
    { name: 'tokens * experts > 2^31', call: call({ tokens: 2 ** 24, experts: 256 }), code: SHAPE, message: /2\^31/ },
    { name: 'no policy', call: call({ policy: undefined }), code: POLICY, message: /policy must be an object/ },
    { name: 'unknown policy kind', call: call({ policy: { kind: 'top-q' } }), code: POLICY, message: /policy.kind/ },
    { name: 'top-k k above experts', call: call({ policy: { kind: 'top-k', k: 5 } }), code: POLICY, message: /k must/ },
    { name: 'top-p p = 0', call: call({ policy: { kind: 'top-p', p: 0 } }), code: POLICY, message: /p must/ },
    { name: 'gradients not a boolean', call: call({ gradients: 1 }), code: TYPE, message: /gradients/ },
    { name: 'a NaN logit', call: call({}, withLogit(1 * E + 2, NaN)), code: VALUE, message: /token 1, expert 2/ },
    {
      name: 'an infinite logit',
      call: call({ gradients: true }, withLogit(2 * E + 3, -Infinity)),
      code: VALUE,
      message: /token 2, expert 3/,
    },
  ];

  it.each(bad)('$name: rejects (never throws) with the code', async ({ call, code, message }) => {
    let promise: Promise<unknown> | undefined;
    expect(() => {
      promise = call();
      promise.catch(() => undefined); // settled below; keeps it from being reported unhandled meanwhile
    }).not.toThrow();
    const error = await errorOf(() => promise);
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
  });

  // the addon directly, past the TypeScript checks: its own checks must give the same codes
  const sizes = { tokens: 3, experts: E, gradients: false };
  // (the policy as a rest argument, so that an explicit undefined reaches the addon)
  const direct = (logits: unknown, options: unknown, ...policyArgument: unknown[]) => () =>
    native().routerLosses(
      logits as Float32Array,
      options as typeof sizes,
      (policyArgument.length > 0 ? policyArgument[0] : policy) as never,
    );
  const nativeBad: Array<{ name: string; call: () => unknown; code: string; message: RegExp }> = [
    {
      name: 'logits a Float64Array',
      call: direct(Float64Array.from(good()), sizes),
      code: TYPE,
      message: /Float32Array/,
    },
    { name: 'logits too long', call: direct(good(), { ...sizes, tokens: 2 }), code: SHAPE, message: /8 elements/ },
    { name: 'options not an object', call: direct(good(), 7), code: TYPE, message: /options/ },
    { name: 'tokens not an integer', call: direct(good(), { ...sizes, tokens: 1.5 }), code: SHAPE, message: /tokens/ },
    {
      name: 'tokens * experts above 2^31',
      call: direct(good(), { ...sizes, tokens: 2 ** 24, experts: 256 }),
      code: SHAPE,
      message: /2\^31/,
    },
    { name: 'policy missing', call: direct(good(), sizes, undefined), code: POLICY, message: /policy must be/ },
    { name: 'unknown kind', call: direct(good(), sizes, { kind: 'nope' }), code: POLICY, message: /kind/ },
    {
      name: 'top-k k > experts',
      call: direct(good(), sizes, { kind: 'top-k', k: 9 }),
      code: POLICY,
      message: /k must/,
    },
    {
      name: 'gradients a string',
      call: direct(good(), { ...sizes, gradients: 'yes' }),
      code: TYPE,
      message: /gradients/,
    },
    {
      name: 'a NaN logit',
      call: direct(withLogit(2 * E, NaN), { ...sizes, gradients: true }),
      code: VALUE,
      message: /token 2, expert 0/,
    },
  ];

  it.each(nativeBad)('native boundary, $name: the code', async ({ call, code, message }) => {
    const error = await errorOf(call);
    expect(error.code).toBe(code);
    expect(error.message).toMatch(message);
  });

  it('still works after the errors', async () => {
    const r = await routerLosses(good(), { tokens: 3, experts: E, policy, gradients: true });
    expect(Number.isFinite(r.dynamicLoss)).toBe(true);
    expect(r.counts.length).toBe(3);
  });
});
