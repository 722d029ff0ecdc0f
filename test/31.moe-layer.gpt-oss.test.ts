// The MoE layer's gpt-oss parts on their own: router bias, expert gate/up/down biases and the clamped SwiGLU against
// the float64 reference (values beyond the clamp included), on every CPU kernel family and on CUDA when a GPU is
// present; bad inputs refused.
import { cpuInfo, setCpuIsa } from '../lib';
import { native } from '../lib/addon/native';
import type { NativeMoeLayerOptions } from '../lib/addon/native-surface';
import { DynamoeError } from '../lib/errors';
import { refGptOssMoe, RefGptOssExperts } from './reference/gpt-oss';
import { cudaOnlySuite } from './parity/backends';
import { maxRelativeError } from './reference/layer';
import { Rng } from './reference/random';

// hidden and ffn not multiples of 16: the padded columns of the raw gate/up sums are exercised.
function makeExperts(seed: number, limit: number, hidden = 40, ffn = 24, experts = 5): RefGptOssExperts {
  const rng = new Rng(seed);
  return {
    experts, k: 2, hidden, ffn, limit, alpha: 1.702,
    router: rng.normalArray(experts * hidden, 1 / Math.sqrt(hidden)),
    routerBias: rng.normalArray(experts, 0.5),
    // Wide weights: many gate and up values land beyond the clamp.
    gateUp: rng.normalArray(experts * hidden * 2 * ffn, 3 / Math.sqrt(hidden)),
    gateUpBias: rng.normalArray(experts * 2 * ffn, 0.5),
    down: rng.normalArray(experts * ffn * hidden, 1 / Math.sqrt(ffn)),
    downBias: rng.normalArray(experts * hidden, 0.3),
  };
}

// The HF layout (x @ W, gate and up interleaved) as the layer takes it: per-expert Linear [out][in] matrices.
function layerOptions(f: RefGptOssExperts): NativeMoeLayerOptions {
  const { experts, hidden: H, ffn: F } = f;
  const perExpert = (make: (e: number) => Float32Array) => Array.from({ length: experts }, (_, e) => make(e));
  const half = (e: number, offset: number) => {
    const out = new Float32Array(F * H);
    for (let n = 0; n < F; n++) for (let i = 0; i < H; i++) out[n * H + i] = f.gateUp[(e * H + i) * 2 * F + 2 * n + offset];
    return out;
  };
  const halfBias = (e: number, offset: number) => Float32Array.from({ length: F }, (_, n) => f.gateUpBias[e * 2 * F + 2 * n + offset]);
  return {
    hidden: H, ffn: F, experts, dtype: 'f32', router: f.router, routerBias: f.routerBias,
    gate: perExpert((e) => half(e, 0)),
    up: perExpert((e) => half(e, 1)),
    down: perExpert((e) => {
      const out = new Float32Array(H * F);
      for (let o = 0; o < H; o++) for (let n = 0; n < F; n++) out[o * F + n] = f.down[(e * F + n) * H + o];
      return out;
    }),
    gateBias: perExpert((e) => halfBias(e, 0)),
    upBias: perExpert((e) => halfBias(e, 1)),
    downBias: perExpert((e) => f.downBias.slice(e * H, (e + 1) * H)),
    activation: { kind: 'swiglu-oai', limit: f.limit, alpha: f.alpha },
  };
}

const ORIGINAL_ISA = cpuInfo().isa;
afterAll(() => setCpuIsa(ORIGINAL_ISA));

describe.each(cpuInfo().supportedIsas.map((isa) => [isa]))('on the %s kernels', (isa) => {
  beforeAll(() => setCpuIsa(isa));

  test.each([
    [1, 7, 1],
    [2, 1.5, 9],
    [3, 0.5, 40],
  ])('seed %d, clamp %d, %d tokens: the layer matches the float64 reference', async (seed, limit, tokens) => {
    const f = makeExperts(seed, limit);
    const x = new Rng(seed + 100).normalArray(tokens * f.hidden);
    const reference = refGptOssMoe(f, Float64Array.from(x), tokens);
    // The test really reaches the clamp: some gate or up values of the first token exceed it.
    let largest = 0;
    for (let c = 0; c < 2 * f.ffn * f.experts; c++) {
      const e = Math.floor(c / (2 * f.ffn));
      let sum = f.gateUpBias[c];
      for (let i = 0; i < f.hidden; i++) sum += x[i] * f.gateUp[(e * f.hidden + i) * 2 * f.ffn + (c % (2 * f.ffn))];
      largest = Math.max(largest, Math.abs(sum));
    }
    expect(largest).toBeGreaterThan(limit);
    const layer = new (native().MoeLayer)(layerOptions(f));
    const result = await layer.forward(x, { tokens, policy: { kind: 'top-k', k: 2, normalize: true } });
    expect(maxRelativeError(result.output, reference.out)).toBeLessThan(1e-4);
    const ids = Array.from({ length: tokens }, (_, t) => Array.from(result.routing.ids.subarray(t * 2, t * 2 + 2)).sort());
    expect(ids).toEqual(reference.ids.map((row) => [...row].sort()));
  });
});

test('the router bias changes which experts are kept (it is not ignored)', async () => {
  const f = makeExperts(4, 7);
  f.routerBias.fill(0);
  f.routerBias[3] = 100; // expert 3 wins every token
  const x = new Rng(5).normalArray(6 * f.hidden);
  const result = await new (native().MoeLayer)(layerOptions(f)).forward(x, { tokens: 6, policy: { kind: 'top-k', k: 2, normalize: true } });
  for (let t = 0; t < 6; t++) expect(Array.from(result.routing.ids.subarray(t * 2, t * 2 + 2))).toContain(3);
  expect(maxRelativeError(result.output, refGptOssMoe(f, Float64Array.from(x), 6).out)).toBeLessThan(1e-4);
});

test('plain SwiGLU with expert biases matches silu(gate + b) * (up + b)', async () => {
  const f = makeExperts(6, 7);
  const options = layerOptions(f);
  delete options.activation;
  const tokens = 5;
  const x = new Rng(7).normalArray(tokens * f.hidden);
  const result = await new (native().MoeLayer)(options).forward(x, { tokens, policy: { kind: 'top-k', k: 2, normalize: true } });
  // The reference with an unreachable clamp and alpha 1 computes (up + 1) * silu(gate): subtract the silu(gate) term.
  const silu = refGptOssMoe({ ...f, limit: 1e30, alpha: 1 }, Float64Array.from(x), tokens).out;
  const zeroUp = refGptOssMoe(
    { ...f, limit: 1e30, alpha: 1, gateUp: f.gateUp.map((v, i) => (i % 2 === 1 ? 0 : v)), gateUpBias: f.gateUpBias.map((v, i) => (i % 2 === 1 ? 0 : v)), down: f.down, downBias: new Float32Array(f.downBias.length) },
    Float64Array.from(x),
    tokens,
  ).out;
  // silu(g)(u + 1) W + b = silu(g) u W + b + silu(g) W; the last term is zeroUp's output.
  const expected = silu.map((v, i) => v - zeroUp[i]);
  expect(maxRelativeError(result.output, expected)).toBeLessThan(1e-4);
});

test('bad biases and activations are refused with stable codes', () => {
  const f = makeExperts(8, 7);
  const make = (edit: (o: NativeMoeLayerOptions) => void) => () => {
    const options = layerOptions(f);
    edit(options);
    return new (native().MoeLayer)(options);
  };
  const code = (fn: () => unknown) => {
    try {
      fn();
    } catch (error) {
      return (error as DynamoeError).code;
    }
    return 'no error';
  };
  expect(code(make((o) => (o.routerBias = new Float32Array(3))))).toBe('ERR_DYNAMOE_SHAPE');
  expect(code(make((o) => (o.gateBias = o.gateBias!.slice(1))))).toBe('ERR_DYNAMOE_SHAPE');
  expect(code(make((o) => (o.downBias![2] = new Float32Array(f.ffn))))).toBe('ERR_DYNAMOE_SHAPE');
  expect(code(make((o) => (o.activation = { kind: 'gelu' } as never)))).toBe('ERR_DYNAMOE_TYPE');
  expect(code(make((o) => (o.activation = { kind: 'swiglu-oai', limit: -1 }))) ).toBe('ERR_DYNAMOE_VALUE');
});

// The same layers on CUDA (the CPU's stages: raw gate/up sums, biases + activation, down bias times the routing
// weight). f32 weights run the f32 GEMMs, whose only difference from the reference is summation order; bf16 weights
// round the weights and activations to 8 significant bits (test/76's 2e-2 of the output's scale).
const describeCuda = cudaOnlySuite('CUDA gpt-oss layer tests (test/31)');
describeCuda('on CUDA', () => {
  test.each([
    [1, 7, 1, 'f32'],
    [2, 1.5, 9, 'f32'],
    [3, 0.5, 40, 'f32'],
    [2, 1.5, 16, 'bf16'],
    [3, 0.5, 300, 'bf16'],
  ] as const)('seed %d, clamp %d, %d tokens, %s: the layer matches the float64 reference', async (seed, limit, tokens, dtype) => {
    const f = makeExperts(seed, limit, 256, 128, 6);
    const x = new Rng(seed + 100).normalArray(tokens * f.hidden);
    const reference = refGptOssMoe(f, Float64Array.from(x), tokens);
    const layer = new (native().MoeLayer)({ ...layerOptions(f), dtype, device: 'cuda' });
    const result = await layer.forward(x, { tokens, policy: { kind: 'top-k', k: 2, normalize: true } });
    expect(maxRelativeError(result.output, reference.out)).toBeLessThan(dtype === 'f32' ? 1e-4 : 2e-2);
    if (dtype === 'f32') {
      const ids = Array.from({ length: tokens }, (_, t) => Array.from(result.routing.ids.subarray(t * 2, t * 2 + 2)).sort());
      expect(ids).toEqual(reference.ids.map((row) => [...row].sort()));
    }
  });
});
