// Op-level parity of the native ModelGraph on CUDA against the CPU: tiny graphs that isolate one op,
// embedding -> [op under test] -> logits, built on device 'cpu' and device 'cuda' from the same random weights, for
// every op kind (rms_norm, rope, attention, linear, mlp, moe, add, logits), in f32 and bf16, over hand-picked edge
// shapes and seeded random ones; prefills of 1 to 100 tokens and decode steps after a prefill. Where the float64
// reference (test/reference/ops.ts, feedForward of test/reference/model.ts) has the op, both devices are also held
// to it. Needs a usable GPU and the CUDA addon (DYNAMOE_ADDON=build-cuda/Release/dynamoe.node); without one the
// whole file is reported as skipped and one line says why.
import { native } from '../lib/addon/native';
import type {
  GraphNode,
  NativeGraphLayout,
  NativeModelGraph,
  NativeMoeStepStats,
  NativeWeights,
} from '../lib/addon/native-surface';
import type { RoutingPolicy } from '../lib';
import { bits } from './model-steps';
import { Backend, cudaOnlySuite, describeOn } from './parity/backends';
import { quantise, toBitsArray } from './reference/dtype';
import { feedForward } from './reference/model';
import { causalAttention, linear, rmsNorm } from './reference/ops';
import { Rng } from './reference/random';

// describe.skip: jest lists every test of this file as skipped (never silently green) when there is no GPU.
const describeCuda = cudaOnlySuite('CUDA graph op tests (test/77)');

// ---- tolerances -------------------------------------------------------------------------------------------------------
// Largest |a - b| of each logits row over that row's largest |b|, the worst row.
// f32 weights: both devices compute in f32 and differ only in summation order (a few ulps per dot product of up to
// a few hundred terms, ~1e-6 relative); 1e-4 leaves 100x margin and is what the CPU itself is held to against the
// float64 reference (test/94).
// bf16 (and f16) weights: the CUDA tensor-core GEMMs round their activation inputs to 16 bits (bf16: 2^-9 = 0.2%
// relative) where the CPU may keep them in f32; through one op and the LM head that is under 1% of the scale, so 2e-2
// leaves 2x or more, far below what a wrong op gives (whole-scale differences).
type GraphDtype = 'f32' | 'bf16';
const TOLERANCE: Record<GraphDtype, number> = { f32: 1e-4, bf16: 2e-2 };
const DTYPES: GraphDtype[] = ['f32', 'bf16'];
const KV_POOL_TOKENS = 4096;

// ---- weights --------------------------------------------------------------------------------------------------------

/** A matrix as the graph takes it (f32, or bf16 bit patterns) and the values the graph then holds (for references). */
interface Matrix {
  native: NativeWeights;
  values: Float32Array;
}

class Weights {
  private readonly rng: Rng;
  constructor(seed: number, private readonly dtype: GraphDtype) {
    this.rng = new Rng(seed);
  }
  matrix(rows: number, cols: number, std = 1 / Math.sqrt(cols)): Matrix {
    const v = this.rng.normalArray(rows * cols, std);
    return this.dtype === 'f32' ? { native: v, values: v } : { native: toBitsArray(v, this.dtype), values: quantise(v, this.dtype) };
  }
  /** Always f32 (norm weights, biases, sinks, routers). */
  vector(length: number, std = 1, mean = 0): Float32Array {
    return this.rng.normalArray(length, std, mean);
  }
}

/** One op-isolating graph: its layout, its nodes, the MoE policies, and (where it has the op) a float64 reference. */
interface GraphCase {
  layout: Pick<NativeGraphLayout, 'bufferWidths' | 'vocab' | 'kvWidths' | 'moeExperts'>;
  nodes: GraphNode[];
  policies: RoutingPolicy[];
  /** Logits [tokens][vocab] of a fresh sequence. */
  reference?: (tokens: readonly number[]) => Float64Array;
}

/** How a case's tokens are run: a prefill of `prefill` tokens, then one decode step per remaining token. */
interface Schedule {
  tokens: number;
  prefill: number;
}

const embedded = (embed: Matrix, tokens: readonly number[], hidden: number, scale = 1) => {
  const x = new Float64Array(tokens.length * hidden);
  tokens.forEach((id, t) => {
    for (let i = 0; i < hidden; i++) x[t * hidden + i] = embed.values[id * hidden + i] * scale;
  });
  return x;
};

// An unused one-float KV slot for graphs without attention: every model has a pool, whatever its ops.
const NO_KV = { kvWidths: [1] };

// ---- the cases, one builder per op kind --------------------------------------------------------------------------------

function rmsNormCase(dtype: GraphDtype, seed: number, o: { width: number; group: number; inPlace: boolean; vocab: number }): GraphCase {
  const w = new Weights(seed, dtype);
  const { width, group, vocab } = o;
  const embed = w.matrix(vocab, width, 1);
  // Rows of uneven magnitudes: the norm's scale matters.
  const weight = w.vector(group, 0.3, 1);
  const lm = w.matrix(vocab, width);
  const out = o.inPlace ? 0 : 1;
  return {
    layout: { bufferWidths: o.inPlace ? [width] : [width, width], vocab, ...NO_KV, moeExperts: [] },
    nodes: [
      { op: 'embedding', hidden: width, output: 0, weight: embed.native },
      { op: 'rms_norm', input: 0, output: out, width, groupSize: group, epsilon: 1e-5, weight },
      { op: 'logits', input: out, hidden: width, weight: lm.native },
    ],
    policies: [],
    reference: (tokens) => {
      const x = embedded(embed, tokens, width);
      return linear(rmsNorm(x, tokens.length, width, weight, 1e-5, group), tokens.length, width, lm.values, vocab);
    },
  };
}

interface RopeShape {
  heads: number;
  headDim: number;
  rotaryDim?: number;
  style: 'halves' | 'pairs';
  theta: number;
  yarn: boolean;
  vocab: number;
}

function ropeCase(dtype: GraphDtype, seed: number, o: RopeShape): GraphCase {
  const w = new Weights(seed, dtype);
  const width = o.heads * o.headDim;
  const rotary = o.rotaryDim ?? o.headDim;
  // A scaled RoPE's table (YaRN-like: low frequencies divided by 8, high ones kept, a ramp between) and its factor.
  const table = o.yarn
    ? {
        inverseFrequencies: Float64Array.from({ length: rotary / 2 }, (_, i) => {
          const base = Math.pow(o.theta, (-2 * i) / rotary);
          const ramp = Math.min(1, Math.max(0, (i - rotary / 8) / (rotary / 4)));
          return base * (1 - ramp) + (base / 8) * ramp;
        }),
        scale: 1.1386,
      }
    : {};
  return {
    layout: { bufferWidths: [width], vocab: o.vocab, ...NO_KV, moeExperts: [] },
    nodes: [
      { op: 'embedding', hidden: width, output: 0, weight: w.matrix(o.vocab, width, 1).native },
      {
        op: 'rope', buffer: 0, heads: o.heads, headDim: o.headDim, style: o.style, theta: o.theta,
        ...(o.rotaryDim !== undefined ? { rotaryDim: o.rotaryDim } : {}), ...table,
      },
      { op: 'logits', input: 0, hidden: width, weight: w.matrix(o.vocab, width).native },
    ],
    policies: [],
  };
}

interface AttentionShape {
  hidden: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  window?: number;
  /** Llama 4's chunked attention and temperature. */
  chunk?: number;
  temperature?: { floor: number; scale: number };
  sinks?: boolean;
  scale?: number;
  rope?: boolean;
  vocab: number;
}

function attentionCase(dtype: GraphDtype, seed: number, o: AttentionShape): GraphCase {
  const w = new Weights(seed, dtype);
  const { hidden, heads, kvHeads, headDim, vocab } = o;
  const qW = heads * headDim;
  const kvW = kvHeads * headDim;
  const embed = w.matrix(vocab, hidden, 1);
  const [wq, wk, wv] = [w.matrix(qW, hidden), w.matrix(kvW, hidden), w.matrix(kvW, hidden)];
  const lm = w.matrix(vocab, qW);
  const sinks = o.sinks ? w.vector(heads, 1) : undefined;
  const rope = (buffer: number, count: number): GraphNode => ({ op: 'rope', buffer, heads: count, headDim, style: 'halves', theta: 10000 });
  const plain = !o.window && !sinks && !o.rope && !o.chunk && !o.temperature;
  return {
    layout: { bufferWidths: [hidden, qW, kvW, kvW, qW], vocab, kvWidths: [kvW], moeExperts: [] },
    nodes: [
      { op: 'embedding', hidden, output: 0, weight: embed.native },
      { op: 'linear', input: 0, output: 1, inFeatures: hidden, outFeatures: qW, weight: wq.native },
      { op: 'linear', input: 0, output: 2, inFeatures: hidden, outFeatures: kvW, weight: wk.native },
      { op: 'linear', input: 0, output: 3, inFeatures: hidden, outFeatures: kvW, weight: wv.native },
      ...(o.rope ? [rope(1, heads), rope(2, kvHeads)] : []),
      {
        op: 'attention', query: 1, key: 2, value: 3, output: 4, heads, kvHeads, headDim, slot: 0,
        ...(o.window ? { window: o.window } : {}), ...(sinks ? { sinks } : {}), ...(o.scale ? { scale: o.scale } : {}),
        ...(o.chunk ? { chunk: o.chunk } : {}),
        ...(o.temperature ? { temperatureFloor: o.temperature.floor, temperatureScale: o.temperature.scale } : {}),
      },
      { op: 'logits', input: 4, hidden: qW, weight: lm.native },
    ],
    policies: [],
    // The reference's attention is plain causal attention: no window, sinks or RoPE.
    ...(plain
      ? {
          reference: (tokens: readonly number[]) => {
            const rows = tokens.length;
            const x = embedded(embed, tokens, hidden);
            const [q, k, v] = [linear(x, rows, hidden, wq.values, qW), linear(x, rows, hidden, wk.values, kvW), linear(x, rows, hidden, wv.values, kvW)];
            const attended = causalAttention(q, k, v, rows, { heads, kvHeads, headDim, scale: o.scale ?? 1 / Math.sqrt(headDim) });
            return linear(attended, rows, qW, lm.values, vocab);
          },
        }
      : {}),
  };
}

function linearCase(dtype: GraphDtype, seed: number, o: { inF: number; outF: number; bias: boolean; vocab: number }): GraphCase {
  const w = new Weights(seed, dtype);
  const { inF, outF, vocab } = o;
  const embed = w.matrix(vocab, inF, 1);
  const weight = w.matrix(outF, inF);
  const bias = o.bias ? w.vector(outF, 0.5) : undefined;
  const lm = w.matrix(vocab, outF);
  return {
    layout: { bufferWidths: [inF, outF], vocab, ...NO_KV, moeExperts: [] },
    nodes: [
      { op: 'embedding', hidden: inF, output: 0, weight: embed.native },
      { op: 'linear', input: 0, output: 1, inFeatures: inF, outFeatures: outF, weight: weight.native, ...(bias ? { bias } : {}) },
      { op: 'logits', input: 1, hidden: outF, weight: lm.native },
    ],
    policies: [],
    reference: (tokens) => {
      const y = linear(embedded(embed, tokens, inF), tokens.length, inF, weight.values, outF, bias);
      return linear(y, tokens.length, outF, lm.values, vocab);
    },
  };
}

function mlpCase(dtype: GraphDtype, seed: number, o: { hidden: number; ffn: number; vocab: number }): GraphCase {
  const w = new Weights(seed, dtype);
  const { hidden, ffn, vocab } = o;
  const embed = w.matrix(vocab, hidden, 1);
  const [gate, up, down] = [w.matrix(ffn, hidden), w.matrix(ffn, hidden), w.matrix(hidden, ffn)];
  const lm = w.matrix(vocab, hidden);
  return {
    layout: { bufferWidths: [hidden, hidden], vocab, ...NO_KV, moeExperts: [] },
    nodes: [
      { op: 'embedding', hidden, output: 0, weight: embed.native },
      { op: 'mlp', input: 0, output: 1, hidden, ffn, gate: gate.native, up: up.native, down: down.native },
      { op: 'logits', input: 1, hidden, weight: lm.native },
    ],
    policies: [],
    reference: (tokens) => {
      const rows = tokens.length;
      const { out } = feedForward({ kind: 'dense', ffn, gate: gate.values, up: up.values, down: down.values }, embedded(embed, tokens, hidden), rows, hidden);
      return linear(out, rows, hidden, lm.values, vocab);
    },
  };
}

interface MoeShape {
  hidden: number;
  ffn: number;
  experts: number;
  shared?: { ffn: number; gated: boolean };
  policy: RoutingPolicy;
  vocab: number;
}

function moeCase(dtype: GraphDtype, seed: number, o: MoeShape): GraphCase {
  const w = new Weights(seed, dtype);
  const { hidden, ffn, experts, vocab } = o;
  const embed = w.matrix(vocab, hidden, 1);
  const router = w.vector(experts * hidden, 2 / Math.sqrt(hidden));
  const expertMatrices = (rows: number, cols: number) => Array.from({ length: experts }, () => w.matrix(rows, cols));
  const [gate, up, down] = [expertMatrices(ffn, hidden), expertMatrices(ffn, hidden), expertMatrices(hidden, ffn)];
  const shared = o.shared
    ? {
        ffn: o.shared.ffn,
        gate: w.matrix(o.shared.ffn, hidden),
        up: w.matrix(o.shared.ffn, hidden),
        down: w.matrix(hidden, o.shared.ffn),
        gateWeight: o.shared.gated ? w.vector(hidden, 1 / Math.sqrt(hidden)) : undefined,
      }
    : undefined;
  const lm = w.matrix(vocab, hidden);
  return {
    layout: { bufferWidths: [hidden, hidden], vocab, ...NO_KV, moeExperts: [experts] },
    nodes: [
      { op: 'embedding', hidden, output: 0, weight: embed.native },
      {
        op: 'moe', input: 0, output: 1, slot: 0, hidden, ffn, experts, dtype, router,
        gate: gate.map((m) => m.native), up: up.map((m) => m.native), down: down.map((m) => m.native),
        ...(shared
          ? {
              shared: {
                ffn: shared.ffn, gate: shared.gate.native, up: shared.up.native, down: shared.down.native,
                ...(shared.gateWeight ? { gateWeight: shared.gateWeight } : {}),
              },
            }
          : {}),
      },
      { op: 'logits', input: 1, hidden, weight: lm.native },
    ],
    policies: [o.policy],
    reference: (tokens) => {
      const rows = tokens.length;
      const { out } = feedForward(
        {
          kind: 'moe', experts, ffn, router, policy: o.policy,
          gate: gate.map((m) => m.values), up: up.map((m) => m.values), down: down.map((m) => m.values),
          ...(shared
            ? {
                shared: {
                  ffn: shared.ffn, gate: shared.gate.values, up: shared.up.values, down: shared.down.values,
                  ...(shared.gateWeight ? { gateWeight: shared.gateWeight } : {}),
                },
              }
            : {}),
        },
        embedded(embed, tokens, hidden),
        rows,
        hidden,
      );
      return linear(out, rows, hidden, lm.values, vocab);
    },
  };
}

function addCase(dtype: GraphDtype, seed: number, o: { width: number; scale?: number; inPlace: boolean; vocab: number }): GraphCase {
  const w = new Weights(seed, dtype);
  const { width, vocab } = o;
  const embed = w.matrix(vocab, width, 1);
  const weight = w.matrix(width, width);
  const lm = w.matrix(vocab, width);
  const out = o.inPlace ? 0 : 2;
  return {
    layout: { bufferWidths: [width, width, width], vocab, ...NO_KV, moeExperts: [] },
    nodes: [
      { op: 'embedding', hidden: width, output: 0, weight: embed.native },
      { op: 'linear', input: 0, output: 1, inFeatures: width, outFeatures: width, weight: weight.native },
      { op: 'add', a: 0, b: 1, output: out, width, ...(o.scale !== undefined ? { scale: o.scale } : {}) },
      { op: 'logits', input: out, hidden: width, weight: lm.native },
    ],
    policies: [],
    reference: (tokens) => {
      const rows = tokens.length;
      const x = embedded(embed, tokens, width);
      const b = linear(x, rows, width, weight.values, width);
      const sum = x.map((v, i) => v + (o.scale ?? 1) * b[i]);
      return linear(sum, rows, width, lm.values, vocab);
    },
  };
}

function logitsCase(
  dtype: GraphDtype,
  seed: number,
  o: { hidden: number; vocab: number; tied: boolean; scale?: number; embeddingScale?: number },
): GraphCase {
  const w = new Weights(seed, dtype);
  const { hidden, vocab } = o;
  const embed = w.matrix(vocab, hidden, 1);
  const lm = o.tied ? embed : w.matrix(vocab, hidden);
  const scale = o.scale !== undefined ? { scale: o.scale } : {};
  return {
    layout: { bufferWidths: [hidden], vocab, ...NO_KV, moeExperts: [] },
    nodes: [
      { op: 'embedding', hidden, output: 0, weight: embed.native, ...(o.embeddingScale !== undefined ? { scale: o.embeddingScale } : {}) },
      o.tied ? { op: 'logits', input: 0, hidden, tied: true, ...scale } : { op: 'logits', input: 0, hidden, weight: lm.native, ...scale },
    ],
    policies: [],
    reference: (tokens) =>
      linear(embedded(embed, tokens, hidden, o.embeddingScale ?? 1), tokens.length, hidden, lm.values, vocab).map((v) => v * (o.scale ?? 1)),
  };
}

// ---- running a case -----------------------------------------------------------------------------------------------------

/**
 * The case's graph on `device`. The layout's `device` is read by the native binding (model_graph_binding.cpp) but
 * not declared in NativeGraphLayout, hence the cast.
 */
async function buildGraph(c: GraphCase, dtype: GraphDtype, device: Backend): Promise<NativeModelGraph> {
  const layout = { ...c.layout, dtype, kvPoolTokens: KV_POOL_TOKENS, device } as NativeGraphLayout;
  const graph = new (native().ModelGraph)(layout);
  try {
    for (const node of c.nodes) await graph.addNode(node);
  } catch (error) {
    graph.dispose();
    throw error;
  }
  return graph;
}

/** Logits of every position: a prefill, then one decode step per remaining token (a fresh session). */
async function runSchedule(graph: NativeModelGraph, c: GraphCase, tokens: readonly number[], prefill: number): Promise<Float32Array> {
  const options = { policies: c.policies, lastRowLogits: false, stats: false };
  if (prefill === tokens.length) return (await graph.forward(null, Int32Array.from(tokens), options)).logits;
  const session = graph.createSession(tokens.length);
  try {
    const out = [(await graph.forward(session, Int32Array.from(tokens.slice(0, prefill)), options)).logits];
    for (const id of tokens.slice(prefill)) out.push((await graph.forward(session, Int32Array.of(id), options)).logits);
    return Float32Array.from(out.flatMap((logits) => Array.from(logits)));
  } finally {
    session.dispose();
  }
}

/** Largest |actual - expected| of each row over that row's largest |expected|: the worst row. */
function worstRowError(actual: ArrayLike<number>, expected: ArrayLike<number>, vocab: number): number {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let row = 0; row * vocab < expected.length; row++) {
    let scale = 0;
    let diff = 0;
    for (let i = row * vocab; i < (row + 1) * vocab; i++) {
      scale = Math.max(scale, Math.abs(expected[i]));
      diff = Math.max(diff, Math.abs(actual[i] - expected[i]));
    }
    // NaN anywhere makes the row fail.
    if (!(diff <= Infinity)) return Infinity;
    worst = Math.max(worst, diff / Math.max(scale, 1e-30));
  }
  return worst;
}

const tokensFor = (seed: number, count: number, vocab: number) => {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => rng.int(0, vocab - 1));
};

/**
 * Builds the case on both devices and compares every schedule: CUDA against the CPU within the dtype's tolerance,
 * and both against the float64 reference where the case has one; the CUDA run repeated gives the same bits.
 */
async function expectParity(make: (dtype: GraphDtype) => GraphCase, dtype: GraphDtype, schedules: Schedule[], seed: number): Promise<void> {
  const c = make(dtype);
  const tolerance = TOLERANCE[dtype];
  const [cpu, cuda] = [await buildGraph(c, dtype, 'cpu'), await buildGraph(c, dtype, 'cuda')];
  try {
    for (const [i, { tokens: count, prefill }] of schedules.entries()) {
      const tokens = tokensFor(seed + i, count, c.layout.vocab);
      const expected = await runSchedule(cpu, c, tokens, prefill);
      const actual = await runSchedule(cuda, c, tokens, prefill);
      expect(actual.length).toBe(count * c.layout.vocab);
      const label = `${count} tokens, prefill ${prefill}`;
      expect([label, worstRowError(actual, expected, c.layout.vocab) < tolerance]).toEqual([label, true]);
      if (c.reference) {
        const reference = c.reference(tokens);
        // The CPU is held to the reference by its own tests at 1e-4 (f32); here it checks the reference's assembly.
        expect([label, 'cpu', worstRowError(expected, reference, c.layout.vocab) < tolerance]).toEqual([label, 'cpu', true]);
        expect([label, 'cuda', worstRowError(actual, reference, c.layout.vocab) < tolerance]).toEqual([label, 'cuda', true]);
      }
      expect(bits(await runSchedule(cuda, c, tokens, prefill))).toEqual(bits(actual));
    }
  } finally {
    cpu.dispose();
    cuda.dispose();
  }
}

// Prefill only (1, 7, 33, 100 tokens), and decode steps after a prefill (crossing 32-position KV blocks).
const PREFILLS: Schedule[] = [1, 7, 33, 100].map((tokens) => ({ tokens, prefill: tokens }));
const DECODES: Schedule[] = [
  { tokens: 41, prefill: 33 },
  { tokens: 40, prefill: 1 },
  { tokens: 12, prefill: 7 },
];
const ALL_SCHEDULES = [...PREFILLS, ...DECODES];
// Ops without positions: a few sizes and one decode run.
const SHORT_SCHEDULES: Schedule[] = [{ tokens: 1, prefill: 1 }, { tokens: 7, prefill: 7 }, { tokens: 100, prefill: 100 }, { tokens: 12, prefill: 9 }];

/** Seeded random shapes for the table (the same every run). */
const shapes = new Rng(7700);
const even = (lo: number, hi: number) => 2 * shapes.int(lo / 2, hi / 2);

type Table = Array<[string, (dtype: GraphDtype) => GraphCase, Schedule[]]>;

const RMS_NORM: Table = [
  ...[
    { width: 64, group: 64, inPlace: false, vocab: 269 },
    { width: 200, group: 40, inPlace: false, vocab: 130 },
    { width: 128, group: 16, inPlace: true, vocab: 257 },
    { width: 72, group: 72, inPlace: true, vocab: 1000 },
    ...[0, 1].map(() => {
      const group = shapes.int(1, 48);
      return { width: group * shapes.int(1, 6), group, inPlace: shapes.next() < 0.5, vocab: shapes.int(2, 400) };
    }),
  ].map((o, i): Table[number] => [
    `rms_norm width ${o.width}, groups of ${o.group}${o.inPlace ? ', in place' : ''}, vocab ${o.vocab}`,
    (dtype) => rmsNormCase(dtype, 77100 + i, o),
    SHORT_SCHEDULES,
  ]),
];

const ROPE: Table = (
  [
    { heads: 4, headDim: 16, style: 'halves' as const, theta: 10000, yarn: false, vocab: 269 },
    { heads: 4, headDim: 16, style: 'pairs' as const, theta: 10000, yarn: false, vocab: 269 },
    { heads: 3, headDim: 32, rotaryDim: 16, style: 'halves' as const, theta: 500000, yarn: false, vocab: 130 },
    { heads: 2, headDim: 64, rotaryDim: 8, style: 'pairs' as const, theta: 10000, yarn: false, vocab: 300 },
    { heads: 4, headDim: 64, style: 'halves' as const, theta: 150000, yarn: true, vocab: 257 },
    { heads: 2, headDim: 24, rotaryDim: 12, style: 'pairs' as const, theta: 10000, yarn: true, vocab: 140 },
    ...[0, 1].map(() => {
      const headDim = even(2, 80);
      return {
        heads: shapes.int(1, 6), headDim, rotaryDim: even(2, headDim), style: shapes.pick(['halves', 'pairs'] as const),
        theta: shapes.uniform(100, 1e6), yarn: shapes.next() < 0.5, vocab: shapes.int(2, 400),
      };
    }),
  ] as RopeShape[]
).map((o, i): Table[number] => [
    `rope ${o.style}, ${o.heads} heads of ${o.headDim}, rotary ${o.rotaryDim ?? o.headDim}, theta ${Math.round(o.theta)}` +
      `${o.yarn ? ', YaRN table' : ''}, vocab ${o.vocab}`,
    (dtype) => ropeCase(dtype, 77200 + i, o),
    ALL_SCHEDULES,
  ]);

const ATTENTION: Table = [
  ...[
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, vocab: 269 },
    { hidden: 48, heads: 4, kvHeads: 4, headDim: 32, vocab: 130 },
    { hidden: 64, heads: 8, kvHeads: 1, headDim: 8, vocab: 200 },
    { hidden: 40, heads: 6, kvHeads: 2, headDim: 12, vocab: 150 },
    { hidden: 128, heads: 2, kvHeads: 1, headDim: 128, vocab: 300 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, window: 5, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, window: 40, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, sinks: true, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, window: 5, sinks: true, rope: true, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, scale: 1 / 64, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 1, headDim: 16, scale: 0.9, rope: true, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, chunk: 7, rope: true, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, chunk: 64, vocab: 269 },
    { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, temperature: { floor: 3, scale: 0.5 }, vocab: 269 },
    ...[0, 1, 2].map((): AttentionShape => {
      const kvHeads = shapes.int(1, 3);
      return {
        hidden: shapes.int(8, 160), heads: kvHeads * shapes.int(1, 4), kvHeads, headDim: even(2, 96),
        ...(shapes.next() < 0.5 ? { window: shapes.int(1, 50) } : {}), sinks: shapes.next() < 0.5, rope: shapes.next() < 0.5,
        vocab: shapes.int(2, 400),
      };
    }),
  ].map((o, i): Table[number] => [
    `attention ${o.heads} heads on ${o.kvHeads} of ${o.headDim}` +
      `${o.window ? `, window ${o.window}` : ''}${o.chunk ? `, chunk ${o.chunk}` : ''}` +
      `${o.temperature ? `, temperature ${o.temperature.scale} per ${o.temperature.floor}` : ''}` +
      `${o.sinks ? ', sinks' : ''}${o.scale ? `, scale ${o.scale.toPrecision(3)}` : ''}` +
      `${o.rope ? ', RoPE' : ''}, vocab ${o.vocab}`,
    (dtype) => attentionCase(dtype, 77300 + i, o),
    ALL_SCHEDULES,
  ]),
];

const LINEAR: Table = [
  ...[
    { inF: 72, outF: 200, bias: false },
    { inF: 72, outF: 200, bias: true },
    { inF: 200, outF: 72, bias: true },
    { inF: 1, outF: 129, bias: true },
    { inF: 129, outF: 1, bias: false },
    { inF: 256, outF: 384, bias: false },
    ...[0, 1, 2].map(() => ({ inF: shapes.int(1, 300), outF: shapes.int(1, 300), bias: shapes.next() < 0.5 })),
  ].map((o, i): Table[number] => [
    `linear ${o.inF} -> ${o.outF}${o.bias ? ' with bias' : ''}`,
    (dtype) => linearCase(dtype, 77400 + i, { ...o, vocab: 269 }),
    SHORT_SCHEDULES,
  ]),
];

const MLP: Table = [
  ...[
    { hidden: 64, ffn: 96 },
    { hidden: 72, ffn: 200 },
    { hidden: 129, ffn: 33 },
    ...[0, 1].map(() => ({ hidden: shapes.int(1, 200), ffn: shapes.int(1, 300) })),
  ].map((o, i): Table[number] => [
    `mlp ${o.hidden} x ${o.ffn}`,
    (dtype) => mlpCase(dtype, 77500 + i, { ...o, vocab: 269 }),
    SHORT_SCHEDULES,
  ]),
];

const MOE_SHAPES: MoeShape[] = [
  { hidden: 64, ffn: 48, experts: 8, policy: { kind: 'top-k', k: 2 }, vocab: 269 },
  { hidden: 64, ffn: 48, experts: 8, policy: { kind: 'top-k', k: 2, normalize: true }, vocab: 269 },
  { hidden: 64, ffn: 48, experts: 8, policy: { kind: 'top-p', p: 0.4 }, vocab: 269 },
  { hidden: 72, ffn: 40, experts: 6, shared: { ffn: 80, gated: true }, policy: { kind: 'top-k', k: 3 }, vocab: 130 },
  { hidden: 72, ffn: 40, experts: 6, shared: { ffn: 24, gated: false }, policy: { kind: 'top-p', p: 0.4 }, vocab: 130 },
  { hidden: 48, ffn: 32, experts: 16, policy: { kind: 'threshold', tau: 0.1 }, vocab: 200 },
  // One expert: every token takes it.
  { hidden: 64, ffn: 48, experts: 1, policy: { kind: 'top-k', k: 1 }, vocab: 257 },
  { hidden: 64, ffn: 48, experts: 1, shared: { ffn: 32, gated: true }, policy: { kind: 'top-p', p: 0.4 }, vocab: 257 },
  ...[0, 1].map((): MoeShape => {
    const experts = shapes.int(2, 32);
    return {
      hidden: shapes.int(8, 160), ffn: shapes.int(1, 200), experts,
      policy: shapes.next() < 0.5 ? { kind: 'top-k', k: shapes.int(1, Math.min(experts, 4)) } : { kind: 'top-p', p: shapes.uniform(0.2, 0.9) },
      ...(shapes.next() < 0.5 ? { shared: { ffn: shapes.int(1, 100), gated: shapes.next() < 0.5 } } : {}),
      vocab: shapes.int(2, 400),
    };
  }),
];
const describeMoe = (o: MoeShape) =>
  `moe ${o.experts} experts of ${o.hidden} x ${o.ffn}` +
  `${o.shared ? `, ${o.shared.gated ? 'gated ' : ''}shared expert of ${o.shared.ffn}` : ''}, ${JSON.stringify(o.policy)}`;
const MOE: Table = MOE_SHAPES.map((o, i) => [describeMoe(o), (dtype) => moeCase(dtype, 77600 + i, o), SHORT_SCHEDULES]);

const ADD: Table = [
  { width: 64, inPlace: true, vocab: 269 },
  { width: 64, scale: 0.22, inPlace: true, vocab: 269 },
  { width: 200, scale: 1.5, inPlace: false, vocab: 130 },
  { width: shapes.int(1, 300), scale: shapes.uniform(0.05, 3), inPlace: false, vocab: shapes.int(2, 400) },
].map((o, i): Table[number] => [
  `add width ${o.width}${o.scale !== undefined ? `, scale ${o.scale.toPrecision(3)}` : ''}${o.inPlace ? ', in place' : ''}`,
  (dtype) => addCase(dtype, 77700 + i, o),
  SHORT_SCHEDULES,
]);

const LOGITS: Table = [
  { hidden: 64, vocab: 269, tied: false },
  { hidden: 64, vocab: 269, tied: true },
  { hidden: 72, vocab: 130, tied: false, scale: 0.125, embeddingScale: 12 },
  { hidden: 72, vocab: 1000, tied: true, scale: 0.125 },
  { hidden: 128, vocab: 128, tied: false },
  { hidden: 40, vocab: 1, tied: false },
  { hidden: shapes.int(1, 200), vocab: shapes.int(2, 2000), tied: shapes.next() < 0.5, scale: shapes.uniform(0.1, 2) },
].map((o, i): Table[number] => [
  `logits ${o.tied ? 'tied' : 'untied'}, hidden ${o.hidden}, vocab ${o.vocab}` +
    `${o.scale !== undefined ? `, scale ${o.scale.toPrecision(3)}` : ''}${o.embeddingScale !== undefined ? `, embedding scale ${o.embeddingScale}` : ''}`,
  (dtype) => logitsCase(dtype, 77800 + i, o),
  SHORT_SCHEDULES,
]);

const TABLE: Array<[string, GraphDtype, (dtype: GraphDtype) => GraphCase, Schedule[], number]> = [
  ...RMS_NORM, ...ROPE, ...ATTENTION, ...LINEAR, ...MLP, ...MOE, ...ADD, ...LOGITS,
].flatMap(([label, make, schedules], i) => DTYPES.map((dtype) => [label, dtype, make, schedules, 77000 + 10 * i] as [string, GraphDtype, (dtype: GraphDtype) => GraphCase, Schedule[], number]));

describeCuda('graph ops on CUDA against the CPU (and the float64 reference where it has the op)', () => {
  test.each(TABLE)('%s, %s', async (_label, dtype, make, schedules, seed) => {
    await expectParity(make, dtype, schedules, seed);
  });
});

// ---- prefill attention through the fused flash kernel (DYNAMOE_FLASH_PREFILL=1; bf16, head dims up to 128) --------

/** Runs `body` with the fused prefill kernel switched on (the addon reads the variable at each prefill). */
async function withFlashPrefill<T>(body: () => Promise<T>): Promise<T> {
  const before = process.env.DYNAMOE_FLASH_PREFILL;
  process.env.DYNAMOE_FLASH_PREFILL = '1';
  try {
    return await body();
  } finally {
    if (before === undefined) delete process.env.DYNAMOE_FLASH_PREFILL;
    else process.env.DYNAMOE_FLASH_PREFILL = before;
  }
}

// 64+ rows take the tensor-core prefill: one and several 64-row blocks and 64-key tiles, and 300 rows.
const FLASH_SCHEDULES: Schedule[] = [64, 100, 300].map((tokens) => ({ tokens, prefill: tokens }));

describeCuda('prefill attention in the fused flash kernel against the CPU (and the float64 reference)', () => {
  test.each(ATTENTION.map(([label, make], i) => [label, make, 77050 + 10 * i] as const))('%s', async (_label, make, seed) => {
    await withFlashPrefill(() => expectParity(make, 'bf16', FLASH_SCHEDULES, seed));
  });

  test('a prompt in two chunks (the second, 130 rows, starts at position 70) equals the CPU and the two-GEMM path', async () => {
    const c = attentionCase('bf16', 77060, { hidden: 64, heads: 4, kvHeads: 2, headDim: 16, window: 90, sinks: true, rope: true, vocab: 269 });
    const [cpu, cuda] = [await buildGraph(c, 'bf16', 'cpu'), await buildGraph(c, 'bf16', 'cuda')];
    const tokens = tokensFor(77061, 200, c.layout.vocab);
    const chunked = async (graph: NativeModelGraph) => {
      const options = { policies: c.policies, lastRowLogits: false, stats: false };
      const session = graph.createSession(tokens.length);
      await graph.forward(session, Int32Array.from(tokens.slice(0, 70)), options);
      return (await graph.forward(session, Int32Array.from(tokens.slice(70)), options)).logits;
    };
    try {
      const expected = await chunked(cpu);
      const gemms = await chunked(cuda);
      const flash = await withFlashPrefill(() => chunked(cuda));
      expect(worstRowError(flash, expected, c.layout.vocab)).toBeLessThan(TOLERANCE.bf16);
      expect(worstRowError(flash, gemms, c.layout.vocab)).toBeLessThan(TOLERANCE.bf16);
      expect(bits(await withFlashPrefill(() => chunked(cuda)))).toEqual(bits(flash));
    } finally {
      cpu.dispose();
      cuda.dispose();
    }
  });
});

// ---- MoE routing and scoring targets, beyond the logits ------------------------------------------------------------

/** Per-token routed counts and per-expert loads of a forward's statistics. */
function routingOf(stats: NativeMoeStepStats[] | undefined): { counts: number[][]; load: number[][] } {
  expect(stats).toBeDefined();
  return { counts: stats!.map((s) => Array.from(s.counts)), load: stats!.map((s) => Array.from(s.expertLoad)) };
}

describeCuda('MoE routing statistics on CUDA equal the CPU\'s', () => {
  // The router runs in f32 on both devices on the same embedded rows (bf16 models too: the router and the embedding
  // rows are exact in f32), so the selections match exactly; only summation order differs (~1e-7 relative), far
  // below the gaps of these seeded scores.
  test.each(MOE_SHAPES.flatMap((o, i) => DTYPES.map((dtype) => [describeMoe(o), dtype, o, i] as const)))(
    '%s, %s: counts, expert load and router sums',
    async (_label, dtype, o, i) => {
      const c = moeCase(dtype, 77600 + i, o);
      const [cpu, cuda] = [await buildGraph(c, dtype, 'cpu'), await buildGraph(c, dtype, 'cuda')];
      try {
        for (const count of [1, 37, 300]) {
          const tokens = Int32Array.from(tokensFor(77650 + count, count, o.vocab));
          const options = { policies: c.policies, lastRowLogits: false, stats: true };
          const [a, b] = [await cpu.forward(null, tokens, options), await cuda.forward(null, tokens, options)];
          expect(routingOf(b.stats)).toEqual(routingOf(a.stats));
          if (o.policy.kind === 'top-k') expect(b.stats![0].counts.every((n) => n === Math.min(o.experts, (o.policy as { k: number }).k))).toBe(true);
          const [pa, pb] = [a.stats![0].probabilitySum, b.stats![0].probabilitySum];
          pa.forEach((p, e) => expect(Math.abs(pb[e] - p)).toBeLessThanOrEqual(1e-5 * Math.max(1, count)));
          expect(Math.abs(b.stats![0].entropySum[0] - a.stats![0].entropySum[0])).toBeLessThanOrEqual(1e-5 * count);
        }
      } finally {
        cpu.dispose();
        cuda.dispose();
      }
    },
  );
});

/** Scoring: log P(targets[t]) at each position. */
async function score(graph: NativeModelGraph, tokens: readonly number[], targets: Int32Array): Promise<Float64Array> {
  const options = { policies: [], lastRowLogits: false as const, stats: false, targets };
  const result = (await graph.forward(null, Int32Array.from(tokens), options)) as unknown as { logProbs?: Float64Array };
  expect(result.logProbs).toBeDefined();
  return result.logProbs!;
}

describeCuda('scoring targets and last-row logits on CUDA equal the CPU\'s', () => {
  const cases = LOGITS.map(([label, make]) => [label, make] as const);
  test.each(cases.flatMap(([label, make]) => DTYPES.map((dtype) => [label, dtype, make] as const)))(
    '%s, %s: log-probabilities of targets (NaN where -1), and the last row alone',
    async (_label, dtype, make) => {
      const c = make(dtype);
      const vocab = c.layout.vocab;
      const [cpu, cuda] = [await buildGraph(c, dtype, 'cpu'), await buildGraph(c, dtype, 'cuda')];
      try {
        for (const count of [1, 9, 100]) {
          const tokens = tokensFor(77900 + count, count, vocab);
          const targets = Int32Array.from(tokens, (_, t) => (t + 1 < count ? tokens[t + 1] : -1));
          const [a, b] = [await score(cpu, tokens, targets), await score(cuda, tokens, targets)];
          expect(b.length).toBe(count);
          expect(Number.isNaN(b[count - 1])).toBe(true);
          // Log-probabilities are logits less a log-sum-exp: off by at most twice the logits' error, in units of the
          // logits' scale (|log p| is of that order).
          const logits = c.reference!(tokens);
          const scale = logits.reduce((m, v) => Math.max(m, Math.abs(v)), 1);
          for (let t = 0; t + 1 < count; t++) {
            expect(Math.abs(b[t] - a[t])).toBeLessThanOrEqual(2 * TOLERANCE[dtype] * scale);
            // The float64 log-probability of the target.
            const row = Array.from(logits.subarray(t * vocab, (t + 1) * vocab));
            const max = Math.max(...row);
            const expected = row[targets[t]] - max - Math.log(row.reduce((s, v) => s + Math.exp(v - max), 0));
            expect(Math.abs(b[t] - expected)).toBeLessThanOrEqual(2 * TOLERANCE[dtype] * scale);
          }
          const full = (await cuda.forward(null, Int32Array.from(tokens), { policies: [], lastRowLogits: false, stats: false })).logits;
          const last = (await cuda.forward(null, Int32Array.from(tokens), { policies: [], lastRowLogits: true, stats: false })).logits;
          expect(last.length).toBe(vocab);
          expect(worstRowError(last, full.subarray((count - 1) * vocab), vocab)).toBeLessThan(TOLERANCE[dtype]);
        }
      } finally {
        cpu.dispose();
        cuda.dispose();
      }
    },
  );
});

// ---- token choice: the step returns the chosen id instead of the logits --------------------------------------------

/** The first index of the largest of values[0, limit), as the host sampler's greedy choice. */
function firstArgmax(values: Float32Array, limit: number): number {
  let best = 0;
  for (let i = 1; i < limit; i++) if (values[i] > values[best]) best = i;
  return best;
}

for (const device of ['cpu', 'cuda'] as Backend[]) {
  describeOn(device)(`greedy steps on ${device}`, () => {
    test.each(['f32', 'bf16'] as GraphDtype[])('%s: the id is the argmax of the same step\'s logits, within the limit', async (dtype) => {
      const c = logitsCase(dtype, 77900, { hidden: 72, vocab: 1000, tied: false });
      const graph = await buildGraph(c, dtype, device);
      try {
        for (const count of [1, 5]) {
          const tokens = Int32Array.from(tokensFor(77910 + count, count, 1000));
          const options = { policies: c.policies, lastRowLogits: true, stats: false };
          const { logits } = await graph.forward(null, tokens, options);
          for (const limit of [1000, 300, 1]) {
            const result = await graph.forward(null, tokens, { ...options, choice: { limit } });
            expect(result.logits).toBeUndefined();
            expect(result.token).toBe(firstArgmax(logits!, limit));
          }
        }
        const tokens = Int32Array.of(3);
        // Bad options throw at the call (checked on the JS thread).
        expect(() => graph.forward(null, tokens, { policies: c.policies, lastRowLogits: false, stats: false, choice: { limit: 10 } }))
          .toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_VALUE' }));
        expect(() => graph.forward(null, tokens, { policies: c.policies, lastRowLogits: true, stats: false, choice: { limit: 1001 } }))
          .toThrow(expect.objectContaining({ code: 'ERR_DYNAMOE_SHAPE' }));
      } finally {
        graph.dispose();
      }
    });

    test('sampled: the id is the backend\'s own choice over the same step\'s logits (one row and a batch of segments)', async () => {
      const vocab = 1000;
      const c = logitsCase('bf16', 77920, { hidden: 72, vocab, tied: false });
      const graph = await buildGraph(c, 'bf16', device);
      const rng = new Rng(77921);
      try {
        const options = { policies: c.policies, lastRowLogits: true, stats: false };
        const choices = [
          { limit: vocab, temperature: 0.8, uniform: rng.next() },
          { limit: 700, temperature: 1.3, topK: 40, uniform: rng.next() },
          { limit: vocab, temperature: 1, topP: 0.9, uniform: rng.next() },
          { limit: vocab, temperature: 2, topK: 100, topP: 0.5, uniform: rng.next() },
        ];
        for (const choice of choices) {
          const tokens = Int32Array.from(tokensFor(77930, 5, vocab));
          const { logits } = await graph.forward(null, tokens, options);
          const result = await graph.forward(null, tokens, { ...options, choice });
          expect(result.logits).toBeUndefined();
          expect(result.token).toBe(native().chooseTokens(logits!, vocab, [choice], device)[0]);
        }
        // One step over several sequences, each with its own choice (ranked and unranked rows side by side).
        const segmentTokens = choices.map((_, i) => Int32Array.from(tokensFor(77940 + i, 1 + i, vocab)));
        const logitsOf = await graph.step(segmentTokens.map((tokens) => ({ session: graph.createSession(32), tokens, ...options })));
        const chosen = await graph.step(segmentTokens.map((tokens, i) => ({ session: graph.createSession(32), tokens, ...options, choice: choices[i] })));
        choices.forEach((choice, i) => {
          expect(chosen[i].token).toBe(native().chooseTokens(logitsOf[i].logits!, vocab, [choice], device)[0]);
        });
      } finally {
        graph.dispose();
      }
    });
  });
}
