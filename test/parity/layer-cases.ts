// The moe_layer rows of the parity table: f32/f16/bf16, with and without a (gated) shared expert, top-k/top-p/
// threshold, 1..16384 tokens; edge cases (experts nobody picks, one expert taking every token, E = 1, kMax = E,
// 4096 experts and one past it); the dtype really used; f16/bf16 weights in every accepted form.
import { MoEForwardResult, RoutingPolicy } from '../../lib';
import { fitPolicy } from '../layer-fixtures';
import { describePolicy, sumOf, WeightDtype } from '../reference';
import { LayerRow, LayerShape } from './table';

export type SharedMode = 'none' | 'plain' | 'gated';
export const SHARED_MODES: SharedMode[] = ['none', 'plain', 'gated'];
export const DTYPES: WeightDtype[] = ['f32', 'f16', 'bf16'];
export const LAYER_POLICIES: RoutingPolicy[] = [
  { kind: 'top-k', k: 2 },
  { kind: 'top-k', k: 4, normalize: true, scale: 2.5 },
  { kind: 'top-p', p: 0.4 },
  { kind: 'top-p', p: 0.9, normalize: true, maxExperts: 6 },
  { kind: 'threshold', tau: 0.1 },
];
// 1 and 3 (decode: one row per expert), 16/17 (either side of the device's GEMV path, <= 16 rows per expert),
// 64, 257 (partial GEMM tiles), 1000
export const TOKEN_COUNTS = [1, 3, 16, 17, 64, 257, 1000];
// CPU rows (CI has no GPU, 2 slow cores): at most 1000 tokens and 600k expert weights (generated and rounded in
// JS); the larger rows run only inside non-CPU rows, with the CPU as their baseline
export const CPU_LAYER_MAX_TOKENS = 1000;
export const CPU_LAYER_MAX_WEIGHTS = 600_000;

export const sharedMode = (shape: LayerShape): SharedMode => (shape.shared ? (shape.shared.gated ? 'gated' : 'plain') : 'none');

function row(
  name: string,
  dtype: WeightDtype,
  shape: LayerShape,
  policy: RoutingPolicy,
  weightSeed: number,
  seed: number,
  extra: Partial<LayerRow> = {},
): LayerRow {
  const { hidden: H, ffn: F, experts: E, tokens } = shape;
  const cpu = tokens <= CPU_LAYER_MAX_TOKENS && 3 * E * H * F <= CPU_LAYER_MAX_WEIGHTS;
  return { op: 'moe_layer', name, dtype, shape, policy, weightSeed, seed, cpu, ...extra };
}

/** The weights' seed follows the layer (dtype, shape, shared expert), so cases on the same layer share it. */
function layerSeed(key: string): number {
  let hash = 72100;
  for (let i = 0; i < key.length; i++) hash = (Math.imul(hash, 31) + key.charCodeAt(i)) >>> 0;
  return hash % 2 ** 31;
}

function layerCase(
  dtype: WeightDtype,
  shape: { hidden: number; ffn: number; experts: number; routerScale?: number },
  shared: SharedMode,
  tokens: number,
  policy: RoutingPolicy,
  inputSeed: number,
): LayerRow {
  const fitted = fitPolicy(policy, shape.experts);
  const full: LayerShape = { ...shape, tokens, ...(shared === 'none' ? {} : { shared: { ffn: 56, gated: shared === 'gated' } }) };
  const name = `${dtype} H=${shape.hidden} F=${shape.ffn} E=${shape.experts} shared=${shared} T=${tokens} ${describePolicy(fitted)}`;
  return row(name, dtype, full, fitted, layerSeed(JSON.stringify([dtype, shape, shared])), inputSeed);
}

// Shapes: hidden/ffn not multiples of 128 (the device pads them), one aligned shape; the float64 reference costs
// tokens * 3 * H * F per used slot, so the larger token counts get the smaller shapes.
function shapeFor(tokens: number): { hidden: number; ffn: number; experts: number } {
  if (tokens <= 17) return { hidden: 144, ffn: 136, experts: 6 };
  if (tokens <= 64) return { hidden: 130, ffn: 72, experts: 16 };
  if (tokens <= 257) return { hidden: 72, ffn: 48, experts: 32 };
  return { hidden: 64, ffn: 40, experts: 8 };
}

/** Test 72's layer cases, in its order and with its seeds. */
export function layerRows(): LayerRow[] {
  const cases: LayerRow[] = [];
  // every dtype x every token count, policies and shared modes rotating
  DTYPES.forEach((dtype, d) => {
    TOKEN_COUNTS.forEach((tokens, i) => {
      const policy = LAYER_POLICIES[(i + d) % LAYER_POLICIES.length];
      cases.push(layerCase(dtype, shapeFor(tokens), SHARED_MODES[(i + 2 * d) % 3], tokens, policy, 72100 + 10 * cases.length));
    });
  });
  // every dtype x shared mode x policy on one shape
  for (const dtype of DTYPES) {
    for (const shared of SHARED_MODES) {
      for (const policy of LAYER_POLICIES) {
        cases.push(layerCase(dtype, { hidden: 96, ffn: 80, experts: 8 }, shared, 33, policy, 72100 + 10 * cases.length));
      }
    }
  }
  // aligned sizes, many experts, a peaked router
  cases.push(layerCase('f32', { hidden: 128, ffn: 256, experts: 8 }, 'none', 64, { kind: 'top-k', k: 2 }, 72901));
  cases.push(layerCase('bf16', { hidden: 256, ffn: 128, experts: 8 }, 'gated', 300, { kind: 'top-p', p: 0.4 }, 72911));
  cases.push(layerCase('bf16', { hidden: 64, ffn: 24, experts: 128 }, 'none', 257, { kind: 'top-k', k: 8 }, 72921));
  cases.push(layerCase('f16', { hidden: 32, ffn: 16, experts: 300 }, 'plain', 64, { kind: 'top-p', p: 0.4, maxExperts: 8 }, 72931));
  cases.push(layerCase('f32', { hidden: 130, ffn: 50, experts: 16, routerScale: 6 }, 'none', 300, { kind: 'top-p', p: 0.4 }, 72941));
  // 16384 tokens (a long prefill) with small hidden/ffn so the float64 reference stays fast
  cases.push(layerCase('f32', { hidden: 32, ffn: 16, experts: 8 }, 'none', 16384, { kind: 'top-p', p: 0.4 }, 72951));
  cases.push(layerCase('bf16', { hidden: 32, ffn: 16, experts: 8 }, 'gated', 16384, { kind: 'top-k', k: 2, normalize: true }, 72961));
  return cases;
}

interface EdgeCase {
  name: string;
  shape: Omit<LayerShape, 'tokens'>;
  tokens: number[];
  policies: RoutingPolicy[];
  winners?: [number, number][];
  /** default: every dtype */
  dtypes?: WeightDtype[];
  expectations: (result: MoEForwardResult, tokens: number) => void;
}

const EDGE_CASES: EdgeCase[] = [
  {
    name: 'experts nobody picks: zero load and zero work for them (top-2 of 6, two winners)',
    shape: { hidden: 40, ffn: 24, experts: 6 },
    tokens: [50, 1000],
    policies: [{ kind: 'top-k', k: 2 }],
    winners: [
      [0, 1],
      [1, 0.9],
    ],
    expectations: (r, T) => {
      expect(Array.from(r.routing.expertLoad)).toEqual([T, T, 0, 0, 0, 0]);
      expect(Array.from(r.work.gateUpRows)).toEqual([T, T, 0, 0, 0, 0]);
      expect(Array.from(r.work.downRows)).toEqual([T, T, 0, 0, 0, 0]);
    },
  },
  {
    name: 'experts nobody picks, top-p: a dominant expert keeps every token alone',
    shape: { hidden: 40, ffn: 24, experts: 6 },
    tokens: [17, 700],
    policies: [{ kind: 'top-p', p: 0.4 }, { kind: 'threshold', tau: 0.5 }],
    winners: [[2, 1]],
    expectations: (r, T) => {
      expect(Array.from(r.routing.counts)).toEqual(new Array(T).fill(1));
      expect(Array.from(r.routing.expertLoad)).toEqual([0, 0, T, 0, 0, 0]);
      expect(Array.from(r.work.gateUpRows)).toEqual([0, 0, T, 0, 0, 0]);
    },
  },
  {
    name: 'one expert takes every token (top-1)',
    shape: { hidden: 31, ffn: 9, experts: 5 },
    tokens: [77, 3000],
    policies: [{ kind: 'top-k', k: 1 }],
    winners: [[3, 1]],
    expectations: (r, T) => {
      expect(Array.from(r.routing.ids)).toEqual(new Array(T).fill(3));
      expect(Array.from(r.routing.expertLoad)).toEqual([0, 0, 0, T, 0]);
      expect(Array.from(r.work.gateUpRows)).toEqual([0, 0, 0, T, 0]);
      expect(Array.from(r.work.downRows)).toEqual([0, 0, 0, T, 0]);
    },
  },
  {
    name: 'one expert in total (E = 1): every token, weight exactly 1',
    shape: { hidden: 33, ffn: 21, experts: 1 },
    tokens: [1, 10, 300],
    policies: [{ kind: 'top-k', k: 1 }, { kind: 'top-p', p: 0.4 }, { kind: 'top-p', p: 1 }, { kind: 'threshold', tau: 0.9 }],
    expectations: (r, T) => {
      expect(r.routing.kMax).toBe(1);
      expect(Array.from(r.routing.ids)).toEqual(new Array(T).fill(0));
      expect(Array.from(r.routing.weights)).toEqual(new Array(T).fill(1));
      expect(Array.from(r.routing.expertLoad)).toEqual([T]);
      expect(Array.from(r.work.gateUpRows)).toEqual([T]);
      expect(Array.from(r.work.downRows)).toEqual([T]);
    },
  },
  {
    name: 'kMax = experts: top-p p = 1, top-k k = E and threshold 0 use every expert for every token',
    shape: { hidden: 48, ffn: 40, experts: 8 },
    tokens: [1, 100],
    policies: [{ kind: 'top-p', p: 1 }, { kind: 'top-k', k: 8 }, { kind: 'threshold', tau: 0 }],
    expectations: (r, T) => {
      expect(r.routing.kMax).toBe(8);
      expect(Array.from(r.routing.counts)).toEqual(new Array(T).fill(8));
      expect(Array.from(r.routing.expertLoad)).toEqual(new Array(8).fill(T));
      expect(Array.from(r.work.gateUpRows)).toEqual(new Array(8).fill(T));
      expect(Array.from(r.work.downRows)).toEqual(new Array(8).fill(T));
      // all experts kept: the raw probabilities sum to 1 on every token
      for (let t = 0; t < T; t++) expect(sumOf(r.routing.weights.subarray(t * 8, t * 8 + 8))).toBeCloseTo(1, 5);
    },
  },
  {
    name: 'many experts, few rows each: 256 experts, top-8 (most experts empty at 17 tokens)',
    shape: { hidden: 16, ffn: 16, experts: 256 },
    tokens: [17, 200],
    policies: [{ kind: 'top-k', k: 8 }],
    expectations: (r, T) => {
      expect(sumOf(r.routing.expertLoad)).toBe(8 * T);
      if (T === 17) expect(Array.from(r.routing.expertLoad).filter((n) => n === 0).length).toBeGreaterThan(100);
    },
  },
  {
    name: '4096 experts, the most a CUDA layer takes',
    shape: { hidden: 4, ffn: 4, experts: 4096 },
    tokens: [32],
    dtypes: ['bf16'],
    policies: [{ kind: 'top-k', k: 2 }, { kind: 'top-p', p: 0.4, maxExperts: 16 }],
    expectations: (r, T) => {
      expect(sumOf(r.work.gateUpRows)).toBe(sumOf(r.routing.counts));
      expect(Math.max(...Array.from(r.routing.counts))).toBeLessThanOrEqual(16);
      expect(r.routing.counts.length).toBe(T);
    },
  },
];

/** Test 72's edge cases, one row per dtype x token count x policy (its seeds: weights 72500 + case, x that + T). */
export function edgeRows(): LayerRow[] {
  return EDGE_CASES.flatMap((edge, index) =>
    (edge.dtypes ?? DTYPES).flatMap((dtype) =>
      edge.tokens.flatMap((tokens) =>
        edge.policies.map((policy) => {
          const weightSeed = 72500 + index;
          return row(
            `${edge.name}, ${dtype}, T=${tokens} ${describePolicy(policy)}`,
            dtype,
            { ...edge.shape, tokens },
            policy,
            weightSeed,
            weightSeed + tokens,
            {
              expectations: edge.expectations,
              // no near-ties here: the backends agree on every id
              sameIdsAsCpu: edge.winners !== undefined || edge.shape.experts === 1,
              ...(edge.winners ? { winners: edge.winners } : {}),
            },
          );
        }),
      ),
    ),
  );
}

/** Rows that hold a backend to more than the reference: its dtype is really used, weight forms, its expert limit. */
export function specialLayerRows(): LayerRow[] {
  const small = { hidden: 53, ffn: 37, experts: 4, tokens: 41 };
  const topP: RoutingPolicy = { kind: 'top-p', p: 0.6 };
  const tiny4097 = { hidden: 4, ffn: 4, experts: 4097, tokens: 3 };
  return [
    // a bf16 layer differs from the f32 layer by about the bf16 rounding: the dtype is really used
    row('bf16 vs f32 on the same backend: the dtype is really used', 'bf16', small, topP, 72971, 72972, {
      contrast: { min: 1e-4, max: 5e-2 },
    }),
    ...(['f16', 'bf16'] as const).map((dtype) =>
      row(`${dtype} weights as Uint16Array bits, per-expert arrays or f32 values give the same bits`, dtype, small, topP, 72981, 72982, {
        weightForms: true,
      }),
    ),
    // past 4096 experts CUDA refuses the layer (fromWeights and load); the CPU runs it
    row('4097 experts: beyond the CUDA layer limit', 'f32', tiny4097, { kind: 'top-k', k: 2 }, 72600, 72601, {
      refusedOn: { cuda: { code: 'ERR_DYNAMOE_UNSUPPORTED', message: /4096/ } },
      expectations: (r) => expect(sumOf(r.routing.expertLoad)).toBe(6),
    }),
  ];
}
