// Randomised agreement of route() with the float64 reference (test/reference.ts): every policy, E in 1..128,
// tokens 1..4096, p on a 0.05 grid, tie-heavy and extreme logits, probabilities input, every SIMD kernel family.
// ids must match exactly except on "fragile" tokens (fp32 may legitimately cut elsewhere); those are still held
// to every structural rule, are counted, and must stay rare.
import { cpuInfo, route, RoutingPolicy, RoutingResult } from '../lib';
import { setCpuIsa } from '../lib/backend/internals';
import { checkRouteAgainstReference } from './route-checks';
import {
  describePolicy,
  makeScores,
  refRoute,
  Rng,
  ScoreDistribution,
  sortedExperts,
} from './reference';

type Distribution = Extract<ScoreDistribution, 'normal' | 'ties' | 'extreme80' | 'spread1e3' | 'onehot' | 'probabilities'>;

interface Case {
  name: string;
  experts: number;
  tokens: number;
  policy: RoutingPolicy;
  distribution: Distribution;
  seed: number;
}

const P_GRID = Array.from({ length: 20 }, (_, i) => Math.round((i + 1) * 5) / 100); // 0.05, 0.10, .., 1.00

function randomShape(rng: Rng, budget = 40000): { experts: number; tokens: number } {
  const experts = rng.pick([2, 3, 4, 5, 7, 8, 16, 31, 32, 60, 64, 100, 128]);
  const maxTokens = Math.max(1, Math.min(4096, Math.floor(budget / experts)));
  const tokens = rng.pick([1, 2, 3, rng.int(1, maxTokens), maxTokens]);
  return { experts, tokens };
}

function randomClamps(rng: Rng, experts: number): { minExperts?: number; maxExperts?: number } {
  const clamps: { minExperts?: number; maxExperts?: number } = {};
  if (rng.next() < 0.5) clamps.maxExperts = rng.int(1, experts);
  if (rng.next() < 0.5) clamps.minExperts = rng.int(1, clamps.maxExperts ?? experts);
  return clamps;
}

function buildCases(): Case[] {
  const rng = new Rng(20240611);
  const cases: Case[] = [];
  const add = (distribution: Distribution, shape: { experts: number; tokens: number }, policy: RoutingPolicy) => {
    const seed = rng.int(1, 2 ** 31);
    const name = `${distribution} E=${shape.experts} T=${shape.tokens} ${describePolicy(policy)} seed=${seed}`;
    cases.push({ name, ...shape, policy, distribution, seed });
  };
  for (const p of P_GRID) {
    for (const distribution of ['normal', 'normal', 'onehot', 'ties'] as const) {
      add(distribution, randomShape(rng), { kind: 'top-p', p });
    }
  }
  for (let i = 0; i < 40; i++) {
    const shape = randomShape(rng);
    const policy: RoutingPolicy = {
      kind: 'top-p',
      p: rng.pick(P_GRID),
      ...randomClamps(rng, shape.experts),
      ...(rng.next() < 0.5 ? { normalize: true } : {}),
    };
    add(rng.pick(['normal', 'onehot', 'ties'] as const), shape, policy);
  }
  for (let i = 0; i < 40; i++) {
    const shape = randomShape(rng);
    const policy: RoutingPolicy = {
      kind: 'top-k',
      k: rng.pick([1, 2, Math.min(shape.experts, 4), Math.min(shape.experts, 8), rng.int(1, shape.experts), shape.experts]),
      ...(rng.next() < 0.5 ? { normalize: true } : {}),
      ...(rng.next() < 0.3 ? { scale: rng.pick([0.5, 1, 2.5, 16]) } : {}),
    };
    add(rng.pick(['normal', 'onehot', 'ties'] as const), shape, policy);
  }
  for (let i = 0; i < 40; i++) {
    const shape = randomShape(rng);
    const policy: RoutingPolicy = {
      kind: 'threshold',
      tau: rng.pick([0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.9, 1]),
      ...randomClamps(rng, shape.experts),
      ...(rng.next() < 0.5 ? { normalize: true } : {}),
    };
    add(rng.pick(['normal', 'onehot', 'ties'] as const), shape, policy);
  }
  const anyPolicy = (experts: number): RoutingPolicy =>
    rng.pick<RoutingPolicy>([
      { kind: 'top-p', p: rng.pick(P_GRID) },
      { kind: 'top-p', p: rng.pick(P_GRID), normalize: true, ...randomClamps(rng, experts) },
      { kind: 'top-k', k: rng.int(1, experts), normalize: rng.next() < 0.5 },
      { kind: 'threshold', tau: rng.pick([0, 0.05, 0.2, 0.5, 1]), ...randomClamps(rng, experts) },
    ]);
  for (const distribution of ['extreme80', 'spread1e3', 'probabilities'] as const) {
    for (let i = 0; i < 20; i++) {
      const shape = randomShape(rng);
      add(distribution, shape, anyPolicy(shape.experts));
    }
  }
  // E = 1: every policy keeps the only expert with weight 1
  for (const policy of [
    { kind: 'top-k', k: 1 },
    { kind: 'top-p', p: 0.05 },
    { kind: 'top-p', p: 1 },
    { kind: 'threshold', tau: 1 },
    { kind: 'threshold', tau: 0.3, normalize: true },
  ] as RoutingPolicy[]) {
    add('normal', { experts: 1, tokens: rng.int(1, 300) }, policy);
  }
  // the largest shapes of the brief
  add('normal', { experts: 128, tokens: 4096 }, { kind: 'top-p', p: 0.4 });
  add('normal', { experts: 16, tokens: 4096 }, { kind: 'top-p', p: 0.4 });
  add('normal', { experts: 64, tokens: 4096 }, { kind: 'top-k', k: 8 });
  return cases;
}

interface Tally {
  tokens: number;
  fragile: number;
}
const tallies: Record<string, Tally> = {};

/** Checks one routing result against the reference; returns how many tokens were fragile. */
function checkAgainstReference(c: Case, scores: Float32Array, result: RoutingResult): number {
  const input = c.distribution === 'probabilities' ? 'probabilities' : 'logits';
  return checkRouteAgainstReference(scores, c.tokens, c.experts, c.policy, input, result);
}

const CASES = buildCases();

describe('route() agrees with the float64 reference', () => {
  it('has a few hundred cases covering every policy, E = 1 and E = 128, tokens = 1 and 4096', () => {
    expect(CASES.length).toBeGreaterThan(250);
    expect(CASES.length).toBeLessThan(400);
    const kinds = new Set(CASES.map((c) => c.policy.kind));
    expect(kinds).toEqual(new Set(['top-k', 'top-p', 'threshold']));
    expect(CASES.some((c) => c.experts === 1)).toBe(true);
    expect(CASES.some((c) => c.experts === 128)).toBe(true);
    expect(CASES.some((c) => c.tokens === 1)).toBe(true);
    expect(CASES.some((c) => c.tokens === 4096)).toBe(true);
  });

  it.each(CASES.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const rng = new Rng(c.seed);
    const scores = makeScores(rng, c.distribution, c.tokens, c.experts);
    const copy = scores.slice();
    const input = c.distribution === 'probabilities' ? 'probabilities' : 'logits';
    const result = await route(scores, { tokens: c.tokens, experts: c.experts, policy: c.policy, input });
    expect(scores).toEqual(copy); // the caller's array is not mutated
    const fragile = checkAgainstReference(c, scores, result);
    const tally = (tallies[c.distribution] ??= { tokens: 0, fragile: 0 });
    tally.tokens += c.tokens;
    tally.fragile += fragile;
  });

  it('skipped only a few fragile tokens (fp32 cut or near-tie ambiguities)', () => {
    const all = Object.values(tallies).reduce((a, b) => ({ tokens: a.tokens + b.tokens, fragile: a.fragile + b.fragile }), {
      tokens: 0,
      fragile: 0,
    });
    expect(all.tokens).toBeGreaterThan(100000);
    // random real-valued logits: fragile tokens are a rounding accident
    for (const d of ['normal', 'onehot', 'probabilities'] as const) {
      expect(tallies[d].fragile / tallies[d].tokens).toBeLessThan(0.01);
    }
    // integer logits tie exactly (not fragile) but some running sums land exactly on p: allow more, not most
    expect(tallies.ties.fragile / tallies.ties.tokens).toBeLessThan(0.1);
    // +-80 and +-500 logits put many probabilities in fp32's subnormal range, where a kernel may keep or flush
    // them: tokens whose slots reach that tail are only checked structurally, but most tokens must stay exact
    expect(tallies.extreme80.fragile / tallies.extreme80.tokens).toBeLessThan(0.5);
    expect(tallies.spread1e3.fragile / tallies.spread1e3.tokens).toBeLessThan(0.5);
  });
});

describe('E = 1 and degenerate inputs', () => {
  it('E = 1 gives id 0, weight exactly 1 for every token and policy', async () => {
    const scores = new Rng(5).normalArray(257, 30);
    for (const policy of [
      { kind: 'top-k', k: 1, normalize: true },
      { kind: 'top-p', p: 0.5, maxExperts: 1 },
      { kind: 'threshold', tau: 1 },
    ] as RoutingPolicy[]) {
      const result = await route(scores, { tokens: 257, experts: 1, policy });
      expect(result.kMax).toBe(1);
      expect(result.ids.every((e) => e === 0)).toBe(true);
      expect(result.weights.every((w) => w === 1)).toBe(true);
      expect(result.counts.every((n) => n === 1)).toBe(true);
      expect(Array.from(result.expertLoad)).toEqual([257]);
    }
  });

  it('all-equal logits of every width tie by id for top-k', async () => {
    for (const E of [2, 3, 7, 16, 33, 64, 128]) {
      const result = await route(new Float32Array(2 * E).fill(0.5), { tokens: 2, experts: E, policy: { kind: 'top-k', k: E } });
      const ids = Array.from({ length: E }, (_, i) => i);
      expect(Array.from(result.ids)).toEqual([...ids, ...ids]);
      result.weights.forEach((w) => expect(w).toBeCloseTo(1 / E, 7));
    }
  });

  it('a saturated softmax (+80 vs -80) keeps one expert at P = 1 for top-p, and the others at P ~ 0 for top-k', async () => {
    const scores = Float32Array.from([-80, -80, 80, -80]);
    const topP = await route(scores, { tokens: 1, experts: 4, policy: { kind: 'top-p', p: 0.95 } });
    expect(Array.from(topP.ids)).toEqual([2, -1, -1, -1]);
    expect(topP.weights[0]).toBe(1);
    const topK = await route(scores, { tokens: 1, experts: 4, policy: { kind: 'top-k', k: 4 } });
    expect(Array.from(topK.ids)).toEqual([2, 0, 1, 3]);
    expect(topK.weights[1]).toBeGreaterThanOrEqual(0);
    expect(topK.weights[1]).toBeLessThan(1e-30);
    expect(Array.from(topK.weights).every(Number.isFinite)).toBe(true);
  });

  it('probabilities input with zeros and ones', async () => {
    const scores = Float32Array.from([0, 1, 0, 0, 0.5, 0.5, 0, 0]);
    const result = await route(scores, { tokens: 2, experts: 4, policy: { kind: 'top-p', p: 0.5 }, input: 'probabilities' });
    // token 0: C0 = 1 > .5 -> e1; token 1: C0 = .5 not > .5, C1 = 1 -> e0, e1
    expect(Array.from(result.ids)).toEqual([1, -1, -1, -1, 0, 1, -1, -1]);
    expect(Array.from(result.weights)).toEqual([1, 0, 0, 0, 0.5, 0.5, 0, 0]);
    expect(Array.from(result.expertLoad)).toEqual([1, 2, 0, 0]);
  });
});

describe('route() on every SIMD kernel family', () => {
  const info = cpuInfo();
  const original = info.isa;
  afterAll(() => setCpuIsa(original));

  it('lists the active ISA among the supported ones, scalar always included', () => {
    expect(info.supportedIsas).toContain('scalar');
    expect(info.supportedIsas).toContain(info.isa);
  });

  it.each(info.supportedIsas.map((isa) => [isa]))('%s gives the same routing as the reference', async (isa) => {
    setCpuIsa(isa);
    expect(cpuInfo().isa).toBe(isa);
    for (const c of CASES.filter((_, i) => i % 37 === 0)) {
      const scores = makeScores(new Rng(c.seed), c.distribution, c.tokens, c.experts);
      const input = c.distribution === 'probabilities' ? 'probabilities' : 'logits';
      const result = await route(scores, { tokens: c.tokens, experts: c.experts, policy: c.policy, input });
      checkAgainstReference(c, scores, result);
    }
  });
});

// Sanity of the reference itself: a plain re-statement of the contract that guards the helpers above.
describe('the float64 reference', () => {
  it('orders by probability, ties by id', () => {
    expect(sortedExperts([0.1, 0.3, 0.1, 0.3, 0.2])).toEqual([1, 3, 4, 0, 2]);
  });

  it('reproduces the ROUTING.md top-p examples', () => {
    const r1 = refRoute([0.2, 1.0, 0.0, 0.8, 0.4, 0.6], 1, 6, { kind: 'top-p', p: 0.4 });
    expect(Array.from(r1.ids)).toEqual([1, 3, -1, -1, -1, -1]);
    const r2 = refRoute(new Float32Array(16), 1, 16, { kind: 'top-p', p: 0.4 });
    expect(r2.counts[0]).toBe(7);
    const r3 = refRoute(Float32Array.from([0.4, 0.3, 0.2, 0.1]), 1, 4, { kind: 'top-p', p: 0.4 }, 'probabilities');
    expect(Array.from(r3.ids)).toEqual([0, 1, -1, -1]);
  });
});
