// Zero-computation experts (LongCat-Flash) and family routers in the MoE layer: a routed slot of a zero expert adds
// nothing, an identity expert adds weight * x, neither costs a GEMM row; the layer's output matches a float64 model
// of the routing it reports. On a GPU, the CUDA router selects the same experts with the same weight bits as the CPU
// under every family rule.
import { MoELayer, route, RoutingPolicy } from '../lib';
import { RouterRule } from '../lib/policy/router-rule';
import { expectRejection, expectThrow } from './helpers';
import { makeInput, makeRawWeights } from './layer-fixtures';
import { describeOn, warnIfCudaAbsent } from './parity';
import { makeScores, maxRelativeError, refLayerOutput, Rng, sumOf } from './reference';

const HIDDEN = 32;
const FFN = 24;
const EXPERTS = 6;
const ZERO = 3;
const SLOTS = EXPERTS + ZERO;

function buildLayer(
  kind: 'zero' | 'identity',
  routerRule?: RouterRule,
  device: 'cpu' | 'cuda' = 'cpu',
): { layer: MoELayer; raw: ReturnType<typeof makeRawWeights> } {
  // The router scores FFN experts and zero experts: its rows are generated for all SLOTS.
  const raw = makeRawWeights({ hidden: HIDDEN, ffn: FFN, experts: SLOTS, dtype: 'f32', seed: 2301, routerScale: 3 });
  const layer = MoELayer.fromWeights({
    hidden: HIDDEN,
    ffn: FFN,
    experts: EXPERTS,
    dtype: 'f32',
    router: raw.router,
    gate: raw.gate.subarray(0, EXPERTS * FFN * HIDDEN),
    up: raw.up.subarray(0, EXPERTS * FFN * HIDDEN),
    down: raw.down.subarray(0, EXPERTS * HIDDEN * FFN),
    zeroExperts: { count: ZERO, kind },
    ...(routerRule ? { routerRule } : {}),
  }, { device });
  return { layer, raw };
}

/** One forward's output and GEMM work against a float64 model of the routing it reports. */
async function expectFollowsRouting(
  layer: MoELayer,
  raw: ReturnType<typeof makeRawWeights>,
  kind: 'zero' | 'identity',
  policy: RoutingPolicy,
  tokens: number,
  tolerance: number,
): Promise<void> {
  const x = makeInput(2302 + tokens, tokens, HIDDEN);
  const r = await layer.forward(x, { tokens, policy });
  const { ids, weights, kMax, counts, expertLoad } = r.routing;
  expect(expertLoad.length).toBe(SLOTS);
  // GEMM rows: only the FFN experts' pairs.
  const ffnLoad = Array.from(expertLoad.subarray(0, EXPERTS));
  expect(Array.from(r.work.gateUpRows)).toEqual(ffnLoad);
  expect(Array.from(r.work.downRows)).toEqual(ffnLoad);
  expect(sumOf(expertLoad)).toBe(sumOf(counts));
  // Float64: FFN experts through the reference, zero experts as their kind says.
  const ffnIds = Array.from(ids, (e) => (e >= EXPERTS ? -1 : e));
  const expected = refLayerOutput(
    { hidden: HIDDEN, ffn: FFN, experts: EXPERTS, router: raw.router, gate: raw.gate, up: raw.up, down: raw.down },
    x,
    tokens,
    kMax,
    ffnIds,
    weights,
  );
  if (kind === 'identity') {
    for (let t = 0; t < tokens; t++) {
      for (let s = 0; s < kMax; s++) {
        if (ids[t * kMax + s] < EXPERTS) continue;
        for (let h = 0; h < HIDDEN; h++) expected[t * HIDDEN + h] += weights[t * kMax + s] * x[t * HIDDEN + h];
      }
    }
  }
  expect(maxRelativeError(r.output, expected)).toBeLessThan(tolerance);
}

const POLICIES: RoutingPolicy[] = [
  { kind: 'top-k', k: 3 },
  { kind: 'top-k', k: SLOTS },
  { kind: 'top-p', p: 0.6 },
  { kind: 'threshold', tau: 0.1 },
];

describe.each(['zero', 'identity'] as const)('%s experts', (kind) => {
  const { layer, raw } = buildLayer(kind, { scoring: 'softmax', scale: 2 });
  afterAll(() => layer.dispose());

  test.each(POLICIES.map((p) => [JSON.stringify(p), p] as const))('output and work follow the routing: %s', async (_, policy) => {
    for (const tokens of [1, 7, 64]) await expectFollowsRouting(layer, raw, kind, policy, tokens, 1e-5);
  });

  test('a token routed only to zero experts costs no GEMM', async () => {
    // Routing every token to the zero experts: a bias that ranks them first.
    const bias = new Float32Array(SLOTS);
    bias.fill(100, EXPERTS);
    const biased = buildLayer(kind, { selectionBias: bias });
    try {
      const x = makeInput(2303, 5, HIDDEN);
      const r = await biased.layer.forward(x, { tokens: 5, policy: { kind: 'top-k', k: ZERO } });
      expect(sumOf(r.work.gateUpRows)).toBe(0);
      expect(Array.from(r.routing.ids).every((e) => e >= EXPERTS)).toBe(true);
      if (kind === 'zero') expect(Array.from(r.output).every((v) => v === 0)).toBe(true);
    } finally {
      biased.layer.dispose();
    }
  });
});

test('policies count zero experts with the FFN experts, and bad options are refused', async () => {
  const { layer } = buildLayer('identity');
  try {
    const x = makeInput(2304, 2, HIDDEN);
    const r = await layer.forward(x, { tokens: 2, policy: { kind: 'top-k', k: SLOTS } });
    expect(Array.from(r.routing.counts)).toEqual([SLOTS, SLOTS]);
    await expectRejection(() => layer.forward(x, { tokens: 2, policy: { kind: 'top-k', k: SLOTS + 1 } }), 'ERR_DYNAMOE_POLICY');
  } finally {
    layer.dispose();
  }
  const raw = makeRawWeights({ hidden: 8, ffn: 8, experts: 2, dtype: 'f32', seed: 1 });
  const base = { hidden: 8, ffn: 8, experts: 2, dtype: 'f32' as const, gate: raw.gate, up: raw.up, down: raw.down };
  // The router must score the zero experts too.
  expectThrow(() => MoELayer.fromWeights({ ...base, router: raw.router, zeroExperts: { count: 1, kind: 'identity' } }), 'ERR_DYNAMOE_SHAPE');
  expectThrow(
    () => MoELayer.fromWeights({ ...base, router: raw.router, zeroExperts: { count: 1, kind: 'constant' as 'zero' } }),
    'ERR_DYNAMOE_TYPE',
  );
});

// ---- zero-computation experts on CUDA: the plan gives them no GEMM rows, finalize adds identity experts --------
warnIfCudaAbsent('CUDA zero-computation experts');
describeOn('cuda')('zero-computation experts on CUDA', () => {
  describe.each(['zero', 'identity'] as const)('%s experts', (kind) => {
    // Built in beforeAll: a skipped describe still runs its body.
    let built: ReturnType<typeof buildLayer>;
    beforeAll(() => {
      built = buildLayer(kind, { scoring: 'softmax', scale: 2 }, 'cuda');
    });
    afterAll(() => built?.layer.dispose());
    // f32 weights: the SIMT f32 GEMMs (decode rows on the GEMV), whose only difference from float64 is rounding.
    test.each(POLICIES.map((p) => [JSON.stringify(p), p] as const))('output and work follow the routing: %s', async (_, policy) => {
      for (const tokens of [1, 7, 64, 300]) await expectFollowsRouting(built.layer, built.raw, kind, policy, tokens, 1e-4);
    });
  });
});

// ---- the CUDA router under family rules: the CPU's experts and weight bits ----------------------------------------
warnIfCudaAbsent('CUDA router-rule parity');
describeOn('cuda')('CUDA router rules select as the CPU does, bit for bit', () => {
  const rng = new Rng(2305);
  const rules: RouterRule[] = [
    { scoring: 'sigmoid', groups: 8, keptGroups: 4, groupScore: 'top2-sum', normalize: true, scale: 2.5 },
    { scoring: 'sigmoid', selectionBias: Float32Array.from({ length: 256 }, () => rng.normal() * 0.1), normalize: true },
    { scoring: 'softmax-of-kept' },
    { scoring: 'softmax', groups: 8, keptGroups: 3, groupScore: 'max' },
    { scoring: 'softmax', selectionBias: Float32Array.from({ length: 256 }, () => rng.normal() * 0.01), scale: 6 },
  ];
  const policies: RoutingPolicy[] = [{ kind: 'top-k', k: 8 }, { kind: 'top-p', p: 0.5 }, { kind: 'threshold', tau: 0.02 }];
  test.each(rules.flatMap((rule) => policies.map((policy) => [JSON.stringify({ ...rule, selectionBias: !!rule.selectionBias }), JSON.stringify(policy), rule, policy] as const)))(
    '%s %s',
    async (_r, _p, routerRule, policy) => {
      for (const distribution of ['normal', 'ties', 'extreme80'] as const) {
        const tokens = 300;
        const scores = makeScores(new Rng(2306), distribution, tokens, 256);
        const options = { tokens, experts: 256, policy, routerRule };
        const cpu = await route(scores, { ...options, device: 'cpu' });
        const cuda = await route(scores, { ...options, device: 'cuda' });
        expect(Array.from(cuda.ids)).toEqual(Array.from(cpu.ids));
        expect(Array.from(cuda.counts)).toEqual(Array.from(cpu.counts));
        expect(Buffer.from(cuda.weights.buffer).equals(Buffer.from(cpu.weights.buffer))).toBe(true);
        expect(Array.from(cuda.expertLoad)).toEqual(Array.from(cpu.expertLoad));
      }
    },
  );
});
