// The device switch without a GPU: backendInfo() describes the binary and the machine consistently, device 'auto'
// falls back to the CPU bit for bit, device 'cuda' refuses with ERR_DYNAMOE_DEVICE naming the reason, unknown
// device strings give ERR_DYNAMOE_VALUE, and profile() on a CPU layer gives ERR_DYNAMOE_UNSUPPORTED.
// Runs in every CI job against whatever addon is loaded: the CPU build (node-gyp) or the CUDA build
// (DYNAMOE_ADDON=build-cuda/Release/dynamoe.node) on a machine without a GPU. Where a GPU is usable
// (backendInfo().backend === 'cuda'), the no-GPU cases are skipped and the file checks that 'auto' picks CUDA;
// the CPU-vs-CUDA numerics are test/72.backend-parity.test.ts, the CUDA layer's own behaviour
// test/74.cuda-layer.test.ts.
import { backendInfo, cpuInfo, MoELayer, route, RoutingPolicy, RoutingResult } from '../lib';
import type { BackendInfo, Device } from '../lib';
import { expectDynamoeError, expectRejection, expectThrow, typedArrayTag } from './helpers';
import { fitPolicy, layerWeights, LayerSpec, makeInput, makeRawWeights } from './layer-fixtures';
import { describePolicy, Rng } from './reference';

const INFO: BackendInfo = backendInfo();
const CUDA_USABLE = INFO.backend === 'cuda';
const describeWithoutGpu = CUDA_USABLE ? describe.skip : describe;
const describeWithGpu = CUDA_USABLE ? describe : describe.skip;

/** Why CUDA is not in use, as the errors must name it. */
const REASON = INFO.cudaError ?? '';
const escapeRegExp = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// The error names the CUDA build can report on a machine without a usable GPU.
const NO_GPU_ERRORS = ['cudaErrorInsufficientDriver', 'cudaErrorNoDevice'];

const weightsFor = layerWeights;

/** The bytes of a typed array (its own view, not the whole buffer it may share). */
function bytes(view: ArrayBufferView): Buffer {
  return Buffer.from(view.buffer, view.byteOffset, view.byteLength);
}

function expectSameRouting(actual: RoutingResult, expected: RoutingResult): void {
  expect(actual.kMax).toBe(expected.kMax);
  expect(typedArrayTag(actual.ids)).toBe('Int32Array');
  expect(typedArrayTag(actual.weights)).toBe('Float32Array');
  expect(Array.from(actual.ids)).toEqual(Array.from(expected.ids));
  expect(bytes(actual.weights).equals(bytes(expected.weights))).toBe(true);
  expect(Array.from(actual.counts)).toEqual(Array.from(expected.counts));
  expect(Array.from(actual.expertLoad)).toEqual(Array.from(expected.expertLoad));
}

const SPEC: LayerSpec = { hidden: 72, ffn: 40, experts: 8, dtype: 'bf16', shared: { ffn: 24, gated: true }, seed: 7101 };
const RAW = makeRawWeights(SPEC);
const WEIGHTS = weightsFor(SPEC, RAW);
const TOKENS = 37;
const X = makeInput(7102, TOKENS, SPEC.hidden);

const POLICIES: RoutingPolicy[] = [
  { kind: 'top-k', k: 2, normalize: true },
  { kind: 'top-p', p: 0.4 },
  { kind: 'top-p', p: 0.9, minExperts: 2, maxExperts: 4, normalize: true },
  { kind: 'threshold', tau: 0.1 },
];

describe('backendInfo()', () => {
  it('has the documented shape', () => {
    expect(['cpu', 'cuda']).toContain(INFO.backend);
    expect(typeof INFO.cudaBuilt).toBe('boolean');
    // whole models run on CUDA exactly when a usable GPU does (the CUDA binary)
    expect(INFO.cudaWholeModels).toBe(INFO.backend === 'cuda');
    if (INFO.backend === 'cuda') {
      expect(INFO.cudaFreeMemoryBytes).toBeGreaterThan(0);
      expect(INFO.cudaTotalMemoryBytes).toBeGreaterThanOrEqual(INFO.cudaFreeMemoryBytes ?? 0);
    } else {
      expect(INFO.cudaFreeMemoryBytes).toBeUndefined();
    }
    expect(Array.isArray(INFO.cudaArchitectures)).toBe(true);
    for (const arch of INFO.cudaArchitectures) expect(arch).toMatch(/^(sm|compute)_\d{2,3}[a-z]?$/);
    expect(new Set(INFO.cudaArchitectures).size).toBe(INFO.cudaArchitectures.length);
    for (const version of [INFO.cudaRuntimeVersion, INFO.cudaDriverVersion]) {
      if (version !== undefined) expect(Number.isInteger(version) && version >= 0).toBe(true);
    }
    // the CPU facts are cpuInfo()'s, not a second description that could drift
    expect(INFO.cpu).toEqual(cpuInfo());
    // a fresh call describes the same process
    expect(backendInfo()).toEqual(INFO);
  });

  it("backend is 'cpu' exactly when cudaError says why, and the reason comes with a message", () => {
    expect(INFO.backend === 'cpu').toBe(INFO.cudaError !== undefined);
    if (INFO.cudaError !== undefined) {
      expect(INFO.cudaError).toMatch(/^(notBuilt|cudaError[A-Z]\w*)$/);
      expect(typeof INFO.cudaErrorMessage).toBe('string');
      expect(INFO.cudaErrorMessage!.length).toBeGreaterThan(10);
    } else {
      expect(INFO.cudaErrorMessage).toBeUndefined();
    }
  });

  // One of the next three applies to each binary/machine; the others are reported as skipped.
  const itWithoutCudaBuild = INFO.cudaBuilt ? it.skip : it;
  const itCudaBuildNoGpu = INFO.cudaBuilt && !CUDA_USABLE ? it : it.skip;
  const itCudaUsable = CUDA_USABLE ? it : it.skip;

  itWithoutCudaBuild('a binary without CUDA: notBuilt, no device code, no GPU, no runtime', () => {
    expect(INFO.backend).toBe('cpu');
    expect(INFO.cudaError).toBe('notBuilt');
    expect(INFO.cudaArchitectures).toEqual([]);
    expect(INFO.gpu).toBeUndefined();
    expect([undefined, 0]).toContain(INFO.cudaRuntimeVersion);
  });

  it('a CUDA binary lists sm_80 and sm_90 device code and its runtime version; notBuilt only without it', () => {
    expect(INFO.cudaError === 'notBuilt').toBe(!INFO.cudaBuilt);
    expect(INFO.cudaArchitectures.length > 0).toBe(INFO.cudaBuilt);
    if (INFO.cudaBuilt) {
      expect(INFO.cudaArchitectures).toEqual(expect.arrayContaining(['sm_80', 'sm_90']));
      // CUDA encodes 12.4 as 12040; sm_90 needs at least 11.8
      expect(INFO.cudaRuntimeVersion).toBeGreaterThanOrEqual(11080);
    }
  });

  itCudaBuildNoGpu('a CUDA binary without a usable GPU names the CUDA error (no device, or no driver)', () => {
    expect(INFO.backend).toBe('cpu');
    expect(INFO.cudaError).toMatch(/^cudaError[A-Z]\w*$/);
    // the CI machines have no GPU: nothing was found, so nothing is described and the error is one of these two
    // (a GPU that is present but unusable, e.g. too old for this device code, would be described and named otherwise)
    if (INFO.gpu === undefined) expect(NO_GPU_ERRORS).toContain(INFO.cudaError);
    if (NO_GPU_ERRORS.includes(INFO.cudaError!)) expect(INFO.gpu).toBeUndefined();
    if (INFO.cudaError === 'cudaErrorInsufficientDriver') expect([undefined, 0]).toContain(INFO.cudaDriverVersion);
  });

  itCudaUsable('a usable GPU is described, and the binary has device code it can run', () => {
    expect(INFO.cudaBuilt).toBe(true);
    const gpu = INFO.gpu!;
    expect(gpu).toBeDefined();
    expect(gpu.name.length).toBeGreaterThan(0);
    expect(gpu.computeCapability).toMatch(/^\d+\.\d+$/);
    expect(Number.isInteger(gpu.multiprocessors) && gpu.multiprocessors > 0).toBe(true);
    expect(gpu.memoryBytes).toBeGreaterThan(2 ** 30);
    expect(INFO.cudaDriverVersion).toBeGreaterThan(0);
    // CUDA's compatibility rule: cubin sm_XY runs on X.Z for Z >= Y; PTX compute_XY is JIT-compiled for >= X.Y
    const [major, minor] = gpu.computeCapability.split('.').map(Number);
    const runnable = INFO.cudaArchitectures.some((arch) => {
      const [, kind, digits] = /^(sm|compute)_(\d+)[a-z]?$/.exec(arch)!;
      const archMajor = Math.floor(Number(digits) / 10);
      const archMinor = Number(digits) % 10;
      if (kind === 'sm') return archMajor === major && archMinor <= minor;
      return archMajor < major || (archMajor === major && archMinor <= minor);
    });
    expect(runnable).toBe(true);
  });
});

describe('device option: defaults and validation (any machine)', () => {
  it("a layer is on 'cpu' by default and with device 'cpu'; route() accepts device 'cpu' and gives the default's bits", async () => {
    const byDefault = MoELayer.fromWeights(WEIGHTS);
    const explicit = MoELayer.fromWeights(WEIGHTS, { device: 'cpu' });
    const loaded = await MoELayer.load(WEIGHTS, { device: 'cpu' });
    expect([byDefault.device, explicit.device, loaded.device]).toEqual(['cpu', 'cpu', 'cpu']);
    const policy: RoutingPolicy = { kind: 'top-p', p: 0.4 };
    const a = await byDefault.forward(X, { tokens: TOKENS, policy });
    for (const layer of [explicit, loaded]) {
      const b = await layer.forward(X, { tokens: TOKENS, policy });
      expect(bytes(b.output).equals(bytes(a.output))).toBe(true);
      expectSameRouting(b.routing, a.routing);
    }
    for (const layer of [byDefault, explicit, loaded]) layer.dispose();

    const scores = new Rng(7103).normalArray(50 * 16, 2);
    const plain = await route(scores, { tokens: 50, experts: 16, policy });
    expectSameRouting(await route(scores, { tokens: 50, experts: 16, policy, device: 'cpu' }), plain);
  });

  const BAD_DEVICES = ['gpu', 'CUDA', 'Cuda', 'cuda:0', 'cuda0', 'tpu', 'metal', ' cpu', 'auto ', ''];

  it.each(BAD_DEVICES.map((d) => [JSON.stringify(d), d]))(
    'device %s: ERR_DYNAMOE_VALUE from fromWeights, load and route',
    async (_, device) => {
      const bad = device as Device; // a caller without types (or with a cast) can pass anything
      const names = device.trim() === '' ? /device/i : new RegExp(`device[\\s\\S]*${escapeRegExp(device.trim())}`, 'i');
      expectThrow(() => MoELayer.fromWeights(WEIGHTS, { device: bad }), 'ERR_DYNAMOE_VALUE', names);
      await expectRejection(() => MoELayer.load(WEIGHTS, { device: bad }), 'ERR_DYNAMOE_VALUE', names);
      const scores = new Float32Array(2 * 4);
      await expectRejection(
        () => route(scores, { tokens: 2, experts: 4, policy: { kind: 'top-k', k: 1 }, device: bad }),
        'ERR_DYNAMOE_VALUE',
        names,
      );
    },
  );

  it('profile() on a CPU layer rejects with ERR_DYNAMOE_UNSUPPORTED and leaves the layer usable', async () => {
    const layer = MoELayer.fromWeights(WEIGHTS, { device: 'cpu' });
    const policy: RoutingPolicy = { kind: 'top-k', k: 2 };
    const before = await layer.forward(X, { tokens: TOKENS, policy });
    await expectRejection(() => layer.profile(X, { tokens: TOKENS, policy }), 'ERR_DYNAMOE_UNSUPPORTED', /cuda/i);
    await expectRejection(() => layer.profile(X, { tokens: TOKENS, policy, runs: 3 }), 'ERR_DYNAMOE_UNSUPPORTED');
    const after = await layer.forward(X, { tokens: TOKENS, policy });
    expect(bytes(after.output).equals(bytes(before.output))).toBe(true);
    expect(layer.disposed).toBe(false);
    layer.dispose();
  });
});

describeWithoutGpu(`without a usable GPU (cudaError: ${REASON || 'none'})`, () => {
  it("device 'auto' gives a CPU layer (fromWeights and load) whose forward equals device 'cpu' bit for bit", async () => {
    const cpu = MoELayer.fromWeights(WEIGHTS, { device: 'cpu' });
    const auto = MoELayer.fromWeights(WEIGHTS, { device: 'auto' });
    const autoLoaded = await MoELayer.load(WEIGHTS, { device: 'auto' });
    expect(auto.device).toBe('cpu');
    expect(autoLoaded.device).toBe('cpu');
    expect(auto.weightBytes).toBe(cpu.weightBytes);
    for (const policy of POLICIES) {
      const expected = await cpu.forward(X, { tokens: TOKENS, policy });
      for (const layer of [auto, autoLoaded]) {
        const got = await layer.forward(X, { tokens: TOKENS, policy });
        expect([describePolicy(policy), bytes(got.output).equals(bytes(expected.output))]).toEqual([describePolicy(policy), true]);
        expectSameRouting(got.routing, expected.routing);
        expect(Array.from(got.work.gateUpRows)).toEqual(Array.from(expected.work.gateUpRows));
        expect(Array.from(got.work.downRows)).toEqual(Array.from(expected.work.downRows));
      }
    }
    for (const layer of [cpu, auto, autoLoaded]) layer.dispose();
  });

  it.each(POLICIES.map((p) => [describePolicy(p), p] as const))(
    "route(..., { device: 'auto' }) equals the CPU route: %s",
    async (_, policy) => {
      const rng = new Rng(7104);
      for (const [tokens, experts] of [
        [1, 1],
        [3, 5],
        [65, 33],
        [500, 64],
      ]) {
        const scores = rng.normalArray(tokens * experts, 2);
        const fitted = fitPolicy(policy, experts);
        const cpu = await route(scores, { tokens, experts, policy: fitted, device: 'cpu' });
        const auto = await route(scores, { tokens, experts, policy: fitted, device: 'auto' });
        expectSameRouting(auto, cpu);
      }
    },
  );

  it("route(..., { device: 'auto' }) on probabilities equals the CPU route", async () => {
    const scores = Float32Array.from([0.4, 0.3, 0.2, 0.1, 0, 1, 0, 0, 0.25, 0.25, 0.25, 0.25]);
    const options = { tokens: 3, experts: 4, policy: { kind: 'top-p', p: 0.4 } as RoutingPolicy, input: 'probabilities' as const };
    const auto = await route(scores, { ...options, device: 'auto' });
    expectSameRouting(auto, await route(scores, { ...options, device: 'cpu' }));
    // the values themselves (ROUTING.md: strict >, ties by id)
    expect(Array.from(auto.ids)).toEqual([0, 1, -1, -1, 1, -1, -1, -1, 0, 1, -1, -1]);
    expect(Array.from(auto.weights)).toEqual([0.4, 0.3, 0, 0, 1, 0, 0, 0, 0.25, 0.25, 0, 0].map(Math.fround));
  });

  it("device 'cuda': fromWeights throws ERR_DYNAMOE_DEVICE naming the reason", () => {
    expect(REASON.length).toBeGreaterThan(0);
    expectThrow(() => MoELayer.fromWeights(WEIGHTS, { device: 'cuda' }), 'ERR_DYNAMOE_DEVICE', new RegExp(escapeRegExp(REASON)));
  });

  it("device 'cuda': load rejects with ERR_DYNAMOE_DEVICE naming the reason", async () => {
    await expectRejection(() => MoELayer.load(WEIGHTS, { device: 'cuda' }), 'ERR_DYNAMOE_DEVICE', new RegExp(escapeRegExp(REASON)));
  });

  it("device 'cuda': route rejects with ERR_DYNAMOE_DEVICE naming the reason (logits and probabilities)", async () => {
    const scores = new Rng(7105).normalArray(10 * 8, 1);
    const reason = new RegExp(escapeRegExp(REASON));
    await expectRejection(
      () => route(scores, { tokens: 10, experts: 8, policy: { kind: 'top-p', p: 0.4 }, device: 'cuda' }),
      'ERR_DYNAMOE_DEVICE',
      reason,
    );
    const probabilities = new Float32Array(8).fill(0.125);
    await expectRejection(
      () => route(probabilities, { tokens: 1, experts: 8, policy: { kind: 'top-k', k: 2 }, input: 'probabilities', device: 'cuda' }),
      'ERR_DYNAMOE_DEVICE',
      reason,
    );
  });

  it("a refused device 'cuda' leaves nothing behind: the same weights still make a working CPU layer", async () => {
    let caught: unknown;
    try {
      MoELayer.fromWeights(WEIGHTS, { device: 'cuda' });
    } catch (error) {
      caught = error;
    }
    expectDynamoeError(caught, 'ERR_DYNAMOE_DEVICE');
    // the error is the same every time (the probe is not retried into a different answer)
    let again: unknown;
    try {
      MoELayer.fromWeights(WEIGHTS, { device: 'cuda' });
    } catch (error) {
      again = error;
    }
    expect((again as Error).message).toBe((caught as Error).message);
    const layer = MoELayer.fromWeights(WEIGHTS, { device: 'auto' });
    const result = await layer.forward(X, { tokens: TOKENS, policy: { kind: 'top-k', k: 1 } });
    expect(result.output.length).toBe(TOKENS * SPEC.hidden);
    expect(Array.from(result.routing.counts)).toEqual(Array(TOKENS).fill(1));
    expect(result.output.every(Number.isFinite)).toBe(true);
    layer.dispose();
  });
});

describeWithGpu(`with a usable GPU (${INFO.gpu?.name ?? 'none'})`, () => {
  it("device 'auto' gives a CUDA layer (fromWeights and load); the default stays 'cpu'", async () => {
    const auto = MoELayer.fromWeights(WEIGHTS, { device: 'auto' });
    const autoLoaded = await MoELayer.load(WEIGHTS, { device: 'auto' });
    const cuda = MoELayer.fromWeights(WEIGHTS, { device: 'cuda' });
    const byDefault = MoELayer.fromWeights(WEIGHTS);
    expect([auto.device, autoLoaded.device, cuda.device, byDefault.device]).toEqual(['cuda', 'cuda', 'cuda', 'cpu']);
    // 'auto' is the CUDA layer, not a third kind: the same bits as device 'cuda'
    const policy: RoutingPolicy = { kind: 'top-p', p: 0.4 };
    const expected = await cuda.forward(X, { tokens: TOKENS, policy });
    for (const layer of [auto, autoLoaded]) {
      const got = await layer.forward(X, { tokens: TOKENS, policy });
      expect(bytes(got.output).equals(bytes(expected.output))).toBe(true);
      expectSameRouting(got.routing, expected.routing);
    }
    for (const layer of [auto, autoLoaded, cuda, byDefault]) layer.dispose();
  });

  it("route(..., { device: 'auto' }) equals device 'cuda' and device 'cpu' bit for bit", async () => {
    const scores = new Rng(7106).normalArray(300 * 64, 2);
    for (const policy of POLICIES) {
      const options = { tokens: 300, experts: 64, policy };
      const cpu = await route(scores, { ...options, device: 'cpu' });
      expectSameRouting(await route(scores, { ...options, device: 'cuda' }), cpu);
      expectSameRouting(await route(scores, { ...options, device: 'auto' }), cpu);
    }
  });
});
