// Every worked example of shared/docs/ROUTING.md as exact assertions, plus hand-computed top-k and threshold
// examples on the same logits. Expected numbers are written out here, not computed by the library.
import { route, RoutingPolicy, RoutingResult } from '../lib';
import { typedArrayTag } from './helpers';
import { softmax64 } from './reference';

// ROUTING.md example 1 logits and their softmax (the table's P column, 6 digits)
const LOGITS_1 = [0.2, 1.0, 0.0, 0.8, 0.4, 0.6];
// Every expert of LOGITS_1 in descending-P order, with raw P (top-p p = 1, top-k k = E).
const ALL_OF_LOGITS_1 = {
  kMax: 6,
  ids: [1, 3, 5, 4, 0, 2],
  weights: [0.259399, 0.212378, 0.17388, 0.142361, 0.116555, 0.095427],
};
const P_1 = [0.116555, 0.259399, 0.095427, 0.212378, 0.142361, 0.17388];
// sorted by P: e1 .259399, e3 .212378, e5 .173880, e4 .142361, e0 .116555, e2 .095427
// 8 digits, for expectations that scale the weights (2.5 x a 6-digit rounding would exceed toBeCloseTo(.., 6))
const P1_E1 = 0.25939861;
const P1_E3 = 0.21237762;
const KEPT_SUM_13 = 0.259399 + 0.212378; // .471777 (unrounded .4717762)

function routeOne(
  scores: number[],
  policy: RoutingPolicy,
  input?: 'logits' | 'probabilities',
): Promise<RoutingResult> {
  return route(Float32Array.from(scores), { tokens: 1, experts: scores.length, policy, input });
}

/** Asserts the full fixed-shape output of a one-token route. */
function expectRouting(result: RoutingResult, expected: { kMax: number; ids: number[]; weights: number[] }): void {
  const experts = result.expertLoad.length;
  expect(result.kMax).toBe(expected.kMax);
  expect(typedArrayTag(result.ids)).toBe('Int32Array');
  expect(typedArrayTag(result.weights)).toBe('Float32Array');
  expect(typedArrayTag(result.counts)).toBe('Int32Array');
  expect(typedArrayTag(result.expertLoad)).toBe('Int32Array');
  const ids = [...expected.ids, ...Array(expected.kMax - expected.ids.length).fill(-1)];
  expect(Array.from(result.ids)).toEqual(ids);
  expect(Array.from(result.counts)).toEqual([expected.ids.length]);
  expect(result.weights.length).toBe(expected.kMax);
  expected.weights.forEach((w, s) => expect(result.weights[s]).toBeCloseTo(w, 6));
  for (let s = expected.ids.length; s < expected.kMax; s++) expect(result.weights[s]).toBe(0);
  const load = Array(experts).fill(0);
  for (const e of expected.ids) load[e]++;
  expect(Array.from(result.expertLoad)).toEqual(load);
}

describe('ROUTING.md worked examples (top-p, p = 0.4)', () => {
  it('the doc P column is the float64 softmax of the example logits (guards the expectations below)', () => {
    const p = softmax64(LOGITS_1);
    P_1.forEach((value, e) => expect(p[e]).toBeCloseTo(value, 6));
  });

  it('[0.2, 1.0, 0.0, 0.8, 0.4, 0.6] keeps e1, e3 with raw P (.259399, .212378; sum .4718, not rescaled)', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.4 });
    expectRouting(result, { kMax: 6, ids: [1, 3], weights: [0.259399, 0.212378] });
    expect(result.weights[0] + result.weights[1]).toBeCloseTo(0.4718, 4);
  });

  it('[2, 1, 0.5, 0, -1, -2] keeps only e0 (P0 = .557 > .4)', async () => {
    const result = await routeOne([2, 1, 0.5, 0, -1, -2], { kind: 'top-p', p: 0.4 });
    expectRouting(result, { kMax: 6, ids: [0], weights: [0.557275] });
    expect(result.weights[0]).toBeCloseTo(0.557, 3);
  });

  it('6 equal logits keep e0, e1, e2 (ties by id), 1/6 each', async () => {
    const result = await routeOne(Array(6).fill(0.25), { kind: 'top-p', p: 0.4 });
    expectRouting(result, { kMax: 6, ids: [0, 1, 2], weights: [1 / 6, 1 / 6, 1 / 6] });
  });

  it('16 equal logits keep e0..e6 (7 experts: 6/16 = .375 <= .4 < 7/16), 1/16 each', async () => {
    const result = await routeOne(Array(16).fill(-3), { kind: 'top-p', p: 0.4 });
    expectRouting(result, { kMax: 16, ids: [0, 1, 2, 3, 4, 5, 6], weights: Array(7).fill(1 / 16) });
  });

  it("probabilities [.4, .3, .2, .1] given directly keep e0, e1 (strict >: C0 = .4 is not > .4)", async () => {
    const result = await routeOne([0.4, 0.3, 0.2, 0.1], { kind: 'top-p', p: 0.4 }, 'probabilities');
    expectRouting(result, { kMax: 4, ids: [0, 1], weights: [0.4, 0.3] });
    // probabilities are used as given: the weights are exactly the fp32 inputs
    expect(result.weights[0]).toBe(Math.fround(0.4));
    expect(result.weights[1]).toBe(Math.fround(0.3));
  });

  it('probabilities [.1, .2, .3, .4] (same values, reversed ids) keep e3, e2', async () => {
    const result = await routeOne([0.1, 0.2, 0.3, 0.4], { kind: 'top-p', p: 0.4 }, 'probabilities');
    expectRouting(result, { kMax: 4, ids: [3, 2], weights: [0.4, 0.3] });
  });

  it('p = 1.0 keeps all experts, sorted by P, with raw P', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 1.0 });
    expectRouting(result, ALL_OF_LOGITS_1);
  });

  it('p = 1.0 keeps all 16 equal experts in id order (no early cut from fp32 rounding of the running sum)', async () => {
    const result = await routeOne(Array(16).fill(0.7), { kind: 'top-p', p: 1.0 });
    expectRouting(result, { kMax: 16, ids: Array.from({ length: 16 }, (_, i) => i), weights: Array(16).fill(1 / 16) });
  });

  it('p = 1.0 keeps all experts even when most probabilities are tiny', async () => {
    const result = await routeOne([30, 0, -5, 1, -30], { kind: 'top-p', p: 1.0 });
    expect(Array.from(result.ids)).toEqual([0, 3, 1, 2, 4]);
    expect(Array.from(result.counts)).toEqual([5]);
    expect(result.weights[0]).toBeCloseTo(1, 6);
  });

  it('the examples batched as 3 tokens give the same rows and a summed expertLoad', async () => {
    const scores = Float32Array.from([...LOGITS_1, 2, 1, 0.5, 0, -1, -2, ...Array(6).fill(0.25)]);
    const result = await route(scores, { tokens: 3, experts: 6, policy: { kind: 'top-p', p: 0.4 } });
    expect(result.kMax).toBe(6);
    expect(Array.from(result.ids)).toEqual([1, 3, -1, -1, -1, -1, 0, -1, -1, -1, -1, -1, 0, 1, 2, -1, -1, -1]);
    expect(Array.from(result.counts)).toEqual([2, 1, 3]);
    expect(Array.from(result.expertLoad)).toEqual([2, 2, 1, 1, 0, 0]);
    expect(result.weights[0]).toBeCloseTo(0.259399, 6);
    expect(result.weights[1]).toBeCloseTo(0.212378, 6);
    expect(result.weights[6]).toBeCloseTo(0.557275, 6);
    expect(result.weights[12]).toBeCloseTo(1 / 6, 6);
    for (const s of [2, 3, 4, 5, 7, 8, 9, 10, 11, 15, 16, 17]) expect(result.weights[s]).toBe(0);
  });
});

describe('top-p options', () => {
  it('normalize: true renormalises over the kept set (.549834, .450166)', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.4, normalize: true });
    expectRouting(result, { kMax: 6, ids: [1, 3], weights: [0.259399 / KEPT_SUM_13, 0.212378 / KEPT_SUM_13] });
    expect(result.weights[0]).toBeCloseTo(0.549834, 6);
    expect(result.weights[0] + result.weights[1]).toBeCloseTo(1, 6);
  });

  it('normalize: false is the default (same as leaving it out)', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.4, normalize: false });
    expectRouting(result, { kMax: 6, ids: [1, 3], weights: [0.259399, 0.212378] });
  });

  it('minExperts: 3 keeps e1, e3, e5 by rank', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.4, minExperts: 3 });
    expectRouting(result, { kMax: 6, ids: [1, 3, 5], weights: [0.259399, 0.212378, 0.17388] });
  });

  it('maxExperts: 1 keeps only e1 and sets kMax = 1', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.4, maxExperts: 1 });
    expectRouting(result, { kMax: 1, ids: [1], weights: [0.259399] });
  });

  it('maxExperts: 4 on 16 equal logits keeps e0..e3 with kMax = 4', async () => {
    const result = await routeOne(Array(16).fill(0), { kind: 'top-p', p: 0.4, maxExperts: 4 });
    expectRouting(result, { kMax: 4, ids: [0, 1, 2, 3], weights: Array(4).fill(1 / 16) });
  });

  it('maxExperts: 1 with normalize gives weight 1', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.4, maxExperts: 1, normalize: true });
    expectRouting(result, { kMax: 1, ids: [1], weights: [1] });
  });

  it('minExperts = maxExperts = 3 pads nothing and keeps the top 3', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.05, minExperts: 3, maxExperts: 3 });
    expectRouting(result, { kMax: 3, ids: [1, 3, 5], weights: [0.259399, 0.212378, 0.17388] });
  });

  it('p = 0.7 on example 1 keeps e1, e3, e5, e4 (C = .259, .472, .646, .788)', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-p', p: 0.7 });
    expectRouting(result, { kMax: 6, ids: [1, 3, 5, 4], weights: [0.259399, 0.212378, 0.17388, 0.142361] });
  });
});

describe('top-k', () => {
  it('k = 2 keeps e1, e3 with raw P', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-k', k: 2 });
    expectRouting(result, { kMax: 2, ids: [1, 3], weights: [0.259399, 0.212378] });
  });

  it('k = 1 keeps e1', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-k', k: 1 });
    expectRouting(result, { kMax: 1, ids: [1], weights: [0.259399] });
  });

  it('k = 2, normalize: true gives .549834, .450166', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-k', k: 2, normalize: true });
    expectRouting(result, { kMax: 2, ids: [1, 3], weights: [0.549834, 0.450166] });
  });

  it('k = 2, scale: 2.5 multiplies the raw P', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-k', k: 2, scale: 2.5 });
    expectRouting(result, { kMax: 2, ids: [1, 3], weights: [P1_E1 * 2.5, P1_E3 * 2.5] });
  });

  it('k = 2, normalize and scale: 2.5 gives the normalised weights times 2.5 (sum 2.5)', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-k', k: 2, normalize: true, scale: 2.5 });
    expectRouting(result, { kMax: 2, ids: [1, 3], weights: [(P1_E1 / (P1_E1 + P1_E3)) * 2.5, (P1_E3 / (P1_E1 + P1_E3)) * 2.5] });
    expect(result.weights[0] + result.weights[1]).toBeCloseTo(2.5, 5);
  });

  it('k = E keeps every expert in P order', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'top-k', k: 6 });
    expectRouting(result, ALL_OF_LOGITS_1);
  });

  it('k = 3 on 6 equal logits keeps e0, e1, e2', async () => {
    const result = await routeOne(Array(6).fill(1), { kind: 'top-k', k: 3 });
    expectRouting(result, { kMax: 3, ids: [0, 1, 2], weights: Array(3).fill(1 / 6) });
  });
});

describe('threshold', () => {
  it('tau = 0.15 keeps e1, e3, e5 (P >= .15) with raw P', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'threshold', tau: 0.15 });
    expectRouting(result, { kMax: 6, ids: [1, 3, 5], weights: [0.259399, 0.212378, 0.17388] });
  });

  it('tau = 0.15, maxExperts: 2 keeps e1, e3 with kMax = 2', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'threshold', tau: 0.15, maxExperts: 2 });
    expectRouting(result, { kMax: 2, ids: [1, 3], weights: [0.259399, 0.212378] });
  });

  it('tau = 0.3 (nobody qualifies) keeps one expert by rank (minExperts defaults to 1)', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'threshold', tau: 0.3 });
    expectRouting(result, { kMax: 6, ids: [1], weights: [0.259399] });
  });

  it('tau = 0.3, minExperts: 2 keeps e1, e3 by rank', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'threshold', tau: 0.3, minExperts: 2 });
    expectRouting(result, { kMax: 6, ids: [1, 3], weights: [0.259399, 0.212378] });
  });

  it('tau = 0.15, normalize: true renormalises over e1, e3, e5', async () => {
    const sum = 0.259399 + 0.212378 + 0.17388;
    const result = await routeOne(LOGITS_1, { kind: 'threshold', tau: 0.15, normalize: true });
    expectRouting(result, { kMax: 6, ids: [1, 3, 5], weights: [0.259399 / sum, 0.212378 / sum, 0.17388 / sum] });
  });

  it('tau = 0 keeps every expert', async () => {
    const result = await routeOne(LOGITS_1, { kind: 'threshold', tau: 0 });
    expect(Array.from(result.ids)).toEqual([1, 3, 5, 4, 0, 2]);
    expect(Array.from(result.counts)).toEqual([6]);
  });

  it('P exactly equal to tau is kept (>=), with probabilities input', async () => {
    const result = await routeOne([0.25, 0.5, 0.125, 0.125], { kind: 'threshold', tau: 0.25 }, 'probabilities');
    expectRouting(result, { kMax: 4, ids: [1, 0], weights: [0.5, 0.25] });
  });

  it('4 equal logits, tau = 0.25 keeps all four in id order (P = .25 >= .25)', async () => {
    const result = await routeOne([2, 2, 2, 2], { kind: 'threshold', tau: 0.25 });
    expectRouting(result, { kMax: 4, ids: [0, 1, 2, 3], weights: Array(4).fill(0.25) });
  });
});

describe('ties: equal probabilities keep the lower expert id first', () => {
  const TIED = [1, 3, 3, 1, 3]; // P: e1 = e2 = e4 > e0 = e3
  const high = Math.exp(3) / (3 * Math.exp(3) + 2 * Math.exp(1));
  const low = Math.exp(1) / (3 * Math.exp(3) + 2 * Math.exp(1));

  it('top-k k = 2 picks e1, e2', async () => {
    const result = await routeOne(TIED, { kind: 'top-k', k: 2 });
    expectRouting(result, { kMax: 2, ids: [1, 2], weights: [high, high] });
  });

  it('top-k k = 4 picks e1, e2, e4, then e0 before e3', async () => {
    const result = await routeOne(TIED, { kind: 'top-k', k: 4 });
    expectRouting(result, { kMax: 4, ids: [1, 2, 4, 0], weights: [high, high, high, low] });
  });

  it('top-p p = 0.5 picks e1, e2 (C = .30, .60)', async () => {
    const result = await routeOne(TIED, { kind: 'top-p', p: 0.5 });
    expectRouting(result, { kMax: 5, ids: [1, 2], weights: [high, high] });
  });

  it('top-p p = 1 orders the whole tied list by id within each tie', async () => {
    const result = await routeOne(TIED, { kind: 'top-p', p: 1 });
    expectRouting(result, { kMax: 5, ids: [1, 2, 4, 0, 3], weights: [high, high, high, low, low] });
  });

  it('threshold with maxExperts cuts a tie by id', async () => {
    const result = await routeOne(TIED, { kind: 'threshold', tau: 0.2, maxExperts: 2 });
    expectRouting(result, { kMax: 2, ids: [1, 2], weights: [high, high] });
  });

  it('ties in probabilities input are broken by id too', async () => {
    const result = await routeOne([0.1, 0.3, 0.1, 0.3, 0.2], { kind: 'top-k', k: 3 }, 'probabilities');
    expectRouting(result, { kMax: 3, ids: [1, 3, 4], weights: [0.3, 0.3, 0.2] });
  });

  it('normalize over a kept set of zero probabilities keeps weight 0, never NaN (found by the native fuzzer)', async () => {
    const result = await routeOne([0, 0, 0, 0], { kind: 'threshold', tau: 0.01, minExperts: 1, normalize: true }, 'probabilities');
    expectRouting(result, { kMax: 4, ids: [0], weights: [0] });
  });

  it('the tie rule holds at every position of a 32-expert all-equal row', async () => {
    const result = await routeOne(Array(32).fill(-1.5), { kind: 'top-k', k: 32 });
    expect(Array.from(result.ids)).toEqual(Array.from({ length: 32 }, (_, i) => i));
  });
});

describe('one expert (E = 1)', () => {
  it.each<[string, RoutingPolicy]>([
    ['top-k k=1', { kind: 'top-k', k: 1 }],
    ['top-p p=0.4', { kind: 'top-p', p: 0.4 }],
    ['threshold tau=0.5', { kind: 'threshold', tau: 0.5 }],
  ])('%s keeps e0 with weight 1', async (_, policy) => {
    const result = await route(Float32Array.from([3.5, -2]), { tokens: 2, experts: 1, policy });
    expect(result.kMax).toBe(1);
    expect(Array.from(result.ids)).toEqual([0, 0]);
    expect(Array.from(result.weights)).toEqual([1, 1]);
    expect(Array.from(result.counts)).toEqual([1, 1]);
    expect(Array.from(result.expertLoad)).toEqual([2]);
  });
});
