// The CUDA layer's own behaviour, beyond parity with the CPU (test/72.backend-parity.test.ts holds its numbers to
// the CPU and the float64 reference): (d) work counters = expert load; (e) determinism; (f) dispose frees;
// (g) profile(); (h) concurrent forwards; errors are the CPU's.
// Needs a usable GPU and the CUDA addon (DYNAMOE_ADDON=build-cuda/Release/dynamoe.node). Without one the whole
// file is reported as skipped and one line says why (test/71.cuda-fallback.test.ts covers the no-GPU behaviour).
import { backendInfo, MoEForwardResult, MoELayer, MoELayerWeights, route, RoutingPolicy, RoutingResult } from '../lib';
import { expectRejection } from './helpers';
import { layerWeights, LayerSpec, makeInput, makeRawWeights, RawWeights } from './layer-fixtures';
import { describeOn, digest, DTYPES, expectIdenticalRouting, LAYER_POLICIES, SharedMode, warnIfCudaAbsent } from './parity';
import { describePolicy, Rng, sumOf, toBitsArray, WeightDtype } from './reference';

const INFO = backendInfo();
warnIfCudaAbsent('CUDA layer tests');
// describe.skip: jest lists every test of this file as skipped (never silently green) when there is no GPU.
const describeCuda = describeOn('cuda');

const weightsFor = layerWeights;

/** A CUDA layer and the CPU layer of the same weights. */
function buildPair(spec: LayerSpec, raw: RawWeights): { cuda: MoELayer; cpu: MoELayer } {
  const weights = weightsFor(spec, raw);
  const cuda = MoELayer.fromWeights(weights, { device: 'cuda' });
  expect(cuda.device).toBe('cuda');
  return { cuda, cpu: MoELayer.fromWeights(weights, { device: 'cpu' }) };
}

// ---- (d) work counters ----------------------------------------------------------------------------------------------
describeCuda('(d) work counters on CUDA', () => {
  const spec: LayerSpec = { hidden: 64, ffn: 48, experts: 64, dtype: 'bf16', seed: 72700, routerScale: 4 };
  let layer: MoELayer | undefined;
  afterAll(() => layer?.dispose());

  it.each(LAYER_POLICIES.map((p) => [describePolicy(p), p] as const))(
    'gateUpRows = downRows = expertLoad, summing to the used slots: %s',
    async (_, policy) => {
      const cuda = (layer ??= MoELayer.fromWeights(weightsFor(spec, makeRawWeights(spec)), { device: 'cuda' }));
      for (const tokens of [1, 16, 1000]) {
        const x = makeInput(72701 + tokens, tokens, spec.hidden);
        const r = await cuda.forward(x, { tokens, policy });
        expect(Array.from(r.work.gateUpRows)).toEqual(Array.from(r.routing.expertLoad));
        expect(Array.from(r.work.downRows)).toEqual(Array.from(r.routing.expertLoad));
        expect(sumOf(r.routing.expertLoad)).toBe(sumOf(r.routing.counts));
        const histogram = new Array(64).fill(0);
        r.routing.ids.forEach((e) => e >= 0 && histogram[e]++);
        expect(Array.from(r.routing.expertLoad)).toEqual(histogram);
        if (policy.kind === 'top-k') expect(sumOf(r.work.gateUpRows)).toBe(policy.k * tokens);
      }
    },
  );
});

// ---- (e) determinism ------------------------------------------------------------------------------------------------
describeCuda('(e) determinism on CUDA', () => {
  const table = DTYPES.flatMap((dtype) => [1, 17, 1000].map((tokens) => [dtype, tokens] as const));

  it.each(table)('%s, %i tokens: the same forward three times gives the same bits', async (dtype, tokens) => {
    const spec: LayerSpec = { hidden: 96, ffn: 72, experts: 8, dtype, shared: { ffn: 40, gated: true }, seed: 72800 };
    const layer = MoELayer.fromWeights(weightsFor(spec, makeRawWeights(spec)), { device: 'cuda' });
    const x = makeInput(72801, tokens, spec.hidden);
    const policy: RoutingPolicy = { kind: 'top-p', p: 0.4 };
    const first = digest(await layer.forward(x, { tokens, policy }));
    expect(digest(await layer.forward(x, { tokens, policy }))).toEqual(first);
    expect(digest(await layer.forward(x, { tokens, policy }))).toEqual(first);
    layer.dispose();
  });

  it('a forward does not depend on what ran before it (scratch reuse across shapes and policies)', async () => {
    const spec: LayerSpec = { hidden: 80, ffn: 56, experts: 16, dtype: 'bf16', shared: { ffn: 24, gated: false }, seed: 72810 };
    const layer = MoELayer.fromWeights(weightsFor(spec, makeRawWeights(spec)), { device: 'cuda' });
    const big = makeInput(72811, 1000, spec.hidden);
    const small = makeInput(72812, 3, spec.hidden);
    const topP: RoutingPolicy = { kind: 'top-p', p: 0.9 };
    const topK: RoutingPolicy = { kind: 'top-k', k: 1 };
    const bigFirst = digest(await layer.forward(big, { tokens: 1000, policy: topP }));
    const smallFirst = digest(await layer.forward(small, { tokens: 3, policy: topK }));
    await layer.forward(big, { tokens: 1000, policy: { kind: 'top-k', k: 8 } });
    expect(digest(await layer.forward(small, { tokens: 3, policy: topK }))).toEqual(smallFirst);
    expect(digest(await layer.forward(big, { tokens: 1000, policy: topP }))).toEqual(bigFirst);
    layer.dispose();
  });

  it('load() and fromWeights() give CUDA layers with the same bits', async () => {
    const spec: LayerSpec = { hidden: 72, ffn: 40, experts: 8, dtype: 'f16', shared: { ffn: 24, gated: true }, seed: 72820 };
    const weights = weightsFor(spec, makeRawWeights(spec));
    const direct = MoELayer.fromWeights(weights, { device: 'cuda' });
    const loaded = await MoELayer.load(weights, { device: 'cuda' });
    expect(loaded.device).toBe('cuda');
    expect(loaded.weightBytes).toBe(direct.weightBytes);
    // device memory holds at least the expert weights in the dtype (the device pads hidden and ffn)
    expect(direct.weightBytes).toBeGreaterThanOrEqual(3 * 8 * 72 * 40 * 2);
    const x = makeInput(72821, 257, spec.hidden);
    for (const policy of LAYER_POLICIES) {
      const expected = digest(await direct.forward(x, { tokens: 257, policy }));
      expect(digest(await loaded.forward(x, { tokens: 257, policy }))).toEqual(expected);
    }
    direct.dispose();
    loaded.dispose();
  });
});

// ---- (f) dispose --------------------------------------------------------------------------------------------------
describeCuda('(f) dispose on CUDA', () => {
  const spec: LayerSpec = { hidden: 64, ffn: 48, experts: 8, dtype: 'bf16', seed: 72900 };

  it('sets disposed; forward and profile afterwards reject with ERR_DYNAMOE_DISPOSED; dispose twice is fine', async () => {
    const layer = MoELayer.fromWeights(weightsFor(spec, makeRawWeights(spec)), { device: 'cuda' });
    const x = makeInput(72901, 4, spec.hidden);
    const policy: RoutingPolicy = { kind: 'top-k', k: 2 };
    expect((await layer.forward(x, { tokens: 4, policy })).output.length).toBe(4 * 64);
    expect(layer.disposed).toBe(false);
    layer.dispose();
    expect(layer.disposed).toBe(true);
    await expectRejection(() => layer.forward(x, { tokens: 4, policy }), 'ERR_DYNAMOE_DISPOSED', /dispos/i);
    await expectRejection(() => layer.profile(x, { tokens: 4, policy }), 'ERR_DYNAMOE_DISPOSED');
    expect(() => layer.dispose()).not.toThrow();
    expect(layer.disposed).toBe(true);
  });

  it('a forward already running when dispose() is called finishes with the right result', async () => {
    const raw = makeRawWeights(spec);
    const pair = buildPair(spec, raw);
    const tokens = 1000;
    const x = makeInput(72902, tokens, spec.hidden);
    const policy: RoutingPolicy = { kind: 'top-p', p: 0.4 };
    const expected = digest(await pair.cuda.forward(x, { tokens, policy }));
    const running = pair.cuda.forward(x, { tokens, policy });
    pair.cuda.dispose();
    expect(digest(await running)).toEqual(expected);
    pair.cpu.dispose();
  });

  it(
    'frees the GPU memory: three layers of 40% of the GPU, each disposed before the next, fit; one larger than ' +
      'the GPU is refused with ERR_DYNAMOE_OUT_OF_MEMORY and leaves nothing allocated',
    async () => {
      // Without the frees (of the refused layer's partial upload, or of a disposed layer) the third 40% layer could
      // not fit. One host array per tensor, listed once per expert: the layer reads each expert's array, the device
      // holds every copy. 100 MiB experts: 1.1x even a 375 GB GPU stays within the 4096-expert limit.
      // This uploads about 2.3x the GPU's memory: tens of seconds, hence the long timeout.
      const gpuBytes = INFO.gpu!.memoryBytes;
      const [H, F] = [4096, 4096]; // multiples of 128: no device padding, so bytes per expert are known
      const expertBytes = 3 * H * F * 2;
      const bits = toBitsArray(new Rng(72903).normalArray(H * F, 0.02), 'bf16');
      const weights = (experts: number): MoELayerWeights => ({
        hidden: H,
        ffn: F,
        experts,
        dtype: 'bf16',
        router: new Rng(72904).normalArray(experts * H, 0.02),
        gate: new Array(experts).fill(bits),
        up: new Array(experts).fill(bits),
        down: new Array(experts).fill(bits),
      });
      const tooMany = Math.ceil((1.1 * gpuBytes) / expertBytes);
      expect(tooMany).toBeLessThanOrEqual(4096);
      await expectRejection(() => MoELayer.load(weights(tooMany), { device: 'cuda' }), 'ERR_DYNAMOE_OUT_OF_MEMORY');
      const share = Math.floor((0.4 * gpuBytes) / expertBytes);
      const x = makeInput(72905, 2, H);
      for (let cycle = 0; cycle < 3; cycle++) {
        const layer = await MoELayer.load(weights(share), { device: 'cuda' });
        expect(layer.weightBytes).toBeGreaterThanOrEqual(share * expertBytes);
        const result = await layer.forward(x, { tokens: 2, policy: { kind: 'top-k', k: 1 } });
        expect(result.output.every(Number.isFinite)).toBe(true);
        layer.dispose();
        expect(layer.disposed).toBe(true);
      }
    },
    600_000,
  );
});

// ---- (g) profile ----------------------------------------------------------------------------------------------------
describeCuda('(g) profile() on CUDA', () => {
  const STAGES = ['routeUs', 'planUs', 'gemm1Us', 'gemm2Us', 'finalizeUs'] as const;
  const table: [WeightDtype, number, SharedMode, RoutingPolicy, number | undefined][] = [
    ['f32', 1, 'none', { kind: 'top-k', k: 2 }, 5],
    ['bf16', 64, 'gated', { kind: 'top-p', p: 0.4 }, 3],
    ['f16', 1000, 'plain', { kind: 'threshold', tau: 0.1 }, 10],
    ['bf16', 2048, 'none', { kind: 'top-k', k: 4, normalize: true }, undefined],
  ];

  it.each(table)('%s, %i tokens, shared %s, %o: positive stage times within the total', async (dtype, tokens, shared, policy, runs) => {
    const spec: LayerSpec = {
      hidden: 128,
      ffn: 64,
      experts: 8,
      dtype,
      seed: 73000,
      ...(shared === 'none' ? {} : { shared: { ffn: 32, gated: shared === 'gated' } }),
    };
    const layer = MoELayer.fromWeights(weightsFor(spec, makeRawWeights(spec)), { device: 'cuda' });
    const x = makeInput(73001, tokens, spec.hidden);
    const before = digest(await layer.forward(x, { tokens, policy }));
    const times = await layer.profile(x, { tokens, policy, ...(runs === undefined ? {} : { runs }) });
    if (runs !== undefined) expect(times.runs).toBe(runs);
    else expect(Number.isInteger(times.runs) && times.runs >= 1).toBe(true);
    for (const stage of [...STAGES, 'totalUs'] as const) {
      expect([stage, Number.isFinite(times[stage]) && times[stage] > 0]).toEqual([stage, true]);
    }
    const sum = STAGES.reduce((total, stage) => total + times[stage], 0);
    expect(sum).toBeLessThanOrEqual(times.totalUs * 1.5);
    // profiling runs the same forward: it leaves the layer's results as they were
    expect(digest(await layer.forward(x, { tokens, policy }))).toEqual(before);
    layer.dispose();
  });
});

// ---- (h) concurrency ----------------------------------------------------------------------------------------------
describeCuda('(h) concurrent forwards on one CUDA layer', () => {
  it('8 concurrent forwards (mixed sizes and policies) equal the same forwards run one by one', async () => {
    const spec: LayerSpec = { hidden: 96, ffn: 64, experts: 16, dtype: 'bf16', shared: { ffn: 32, gated: true }, seed: 73100 };
    const layer = MoELayer.fromWeights(weightsFor(spec, makeRawWeights(spec)), { device: 'cuda' });
    const jobs = [1, 5, 16, 17, 64, 200, 1000, 3].map((tokens, i) => ({
      tokens,
      x: makeInput(73101 + i, tokens, spec.hidden),
      policy: LAYER_POLICIES[i % LAYER_POLICIES.length],
    }));
    const sequential = [];
    for (const job of jobs) sequential.push(digest(await layer.forward(job.x, { tokens: job.tokens, policy: job.policy })));
    const concurrent = await Promise.all(jobs.map((job) => layer.forward(job.x, { tokens: job.tokens, policy: job.policy })));
    expect(concurrent.map(digest)).toEqual(sequential);
    // and again, with route() calls on the device interleaved
    const scores = new Rng(73110).normalArray(500 * 16, 2);
    const routeOptions = { tokens: 500, experts: 16, policy: { kind: 'top-p', p: 0.4 } as RoutingPolicy };
    const routeAlone = await route(scores, { ...routeOptions, device: 'cuda' });
    const mixed = await Promise.all([
      ...jobs.map((job) => layer.forward(job.x, { tokens: job.tokens, policy: job.policy })),
      route(scores, { ...routeOptions, device: 'cuda' }),
      route(scores, { ...routeOptions, device: 'cuda' }),
    ]);
    expect((mixed.slice(0, 8) as MoEForwardResult[]).map(digest)).toEqual(sequential);
    for (const r of mixed.slice(8) as RoutingResult[]) expectIdenticalRouting(r, routeAlone, scores, 16);
    layer.dispose();
  });

  it('two CUDA layers and a CPU layer running at once each give their own sequential bits', async () => {
    const specA: LayerSpec = { hidden: 64, ffn: 48, experts: 8, dtype: 'f32', seed: 73200 };
    const specB: LayerSpec = { hidden: 64, ffn: 48, experts: 8, dtype: 'f16', shared: { ffn: 32, gated: false }, seed: 73201 };
    const rawA = makeRawWeights(specA);
    const a = MoELayer.fromWeights(weightsFor(specA, rawA), { device: 'cuda' });
    const b = MoELayer.fromWeights(weightsFor(specB, makeRawWeights(specB)), { device: 'cuda' });
    const c = MoELayer.fromWeights(weightsFor(specA, rawA), { device: 'cpu' });
    const x = makeInput(73202, 300, 64);
    const policy: RoutingPolicy = { kind: 'top-p', p: 0.5 };
    const alone = [];
    for (const layer of [a, b, c, a, b, c]) alone.push(digest(await layer.forward(x, { tokens: 300, policy })));
    const together = await Promise.all([a, b, c, a, b, c].map((layer) => layer.forward(x, { tokens: 300, policy })));
    expect(together.map(digest)).toEqual(alone);
    for (const layer of [a, b, c]) layer.dispose();
  });
});

// ---- errors: the same codes on both devices ------------------------------------------------------------------------
describeCuda('errors on CUDA are the CPU errors', () => {
  it('NaN/Infinity in x, NaN logits and out-of-range probabilities give ERR_DYNAMOE_VALUE on both devices', async () => {
    const spec: LayerSpec = { hidden: 16, ffn: 8, experts: 4, dtype: 'f32', seed: 73300 };
    const pair = buildPair(spec, makeRawWeights(spec));
    const policy: RoutingPolicy = { kind: 'top-k', k: 1 };
    for (const bad of [NaN, Infinity, -Infinity]) {
      const x = makeInput(73301, 2, 16);
      x[7] = bad;
      for (const layer of [pair.cpu, pair.cuda]) {
        await expectRejection(() => layer.forward(x, { tokens: 2, policy }), 'ERR_DYNAMOE_VALUE');
      }
    }
    for (const device of ['cpu', 'cuda'] as const) {
      await expectRejection(
        () => route(Float32Array.from([0, 1, NaN, 2]), { tokens: 1, experts: 4, policy, device }),
        'ERR_DYNAMOE_VALUE',
      );
      await expectRejection(
        () => route(Float32Array.from([0.5, 1.5, 0, 0]), { tokens: 1, experts: 4, policy, input: 'probabilities', device }),
        'ERR_DYNAMOE_VALUE',
      );
    }
    // the layer still works after refusing bad input
    const ok = await pair.cuda.forward(makeInput(73302, 2, 16), { tokens: 2, policy });
    expect(ok.output.every(Number.isFinite)).toBe(true);
    pair.cuda.dispose();
    pair.cpu.dispose();
  });
});
