// Every public entry point, walked with bad values: each gets a DynamoeError with its stable code (async functions
// reject, never throw), nothing aborts the process, and the same calls reach the native boundary checks too when
// the TypeScript layer is bypassed.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import {
  calibrate,
  createSyntheticModel,
  evaluatePolicy,
  fromBf16,
  fromF16,
  loadModel,
  Model,
  MoELayer,
  parsePolicy,
  parsePolicyList,
  policyLabel,
  readPolicyFile,
  route,
  routerLosses,
  runSweep,
  setThreads,
  sweepChart,
  textWindows,
  toBf16,
  toF16,
  writePolicyFile,
} from '../lib';
import { native } from '../lib/addon/native';
import { Code, expectRejection, expectThrow } from './helpers';

/** A bad call: `run` returns a promise for async entry points (which must reject) or throws for sync ones. */
interface BadCall {
  name: string;
  run: () => unknown;
  code: Code | Code[];
  message?: RegExp;
}

/** A Float32Array whose ArrayBuffer was transferred away (length 0 afterwards). */
function detached(length: number): Float32Array {
  const array = new Float32Array(length);
  structuredClone(array.buffer, { transfer: [array.buffer] });
  return array;
}

const TOP2 = { kind: 'top-k', k: 2 } as const;
const bad = <T>(value: unknown) => value as T;

async function check(call: BadCall, async: boolean): Promise<void> {
  if (async) await expectRejection(() => call.run() as Promise<unknown>, call.code, call.message);
  else expectThrow(call.run, call.code, call.message);
}

// ---------------------------------------------------------------------------------------------------------------
describe('routing functions', () => {
  const logits = new Float32Array(16);
  const calls: BadCall[] = [
    { name: 'route: logits in a Float64Array', run: () => route(bad(new Float64Array(16)), { tokens: 2, experts: 8, policy: TOP2 }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'route: detached logits', run: () => route(detached(16), { tokens: 2, experts: 8, policy: TOP2 }), code: 'ERR_DYNAMOE_SHAPE', message: /got 0/ },
    { name: 'route: tokens x experts past 2^31', run: () => route(logits, { tokens: 2 ** 20, experts: 2 ** 12, policy: TOP2 }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'route: tokens NaN', run: () => route(logits, { tokens: NaN, experts: 8, policy: TOP2 }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'route: tokens Infinity', run: () => route(logits, { tokens: Infinity, experts: 8, policy: TOP2 }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'route: experts -1', run: () => route(logits, { tokens: 2, experts: -1, policy: TOP2 }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'route: top-p p NaN', run: () => route(logits, { tokens: 2, experts: 8, policy: { kind: 'top-p', p: NaN } }), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'route: threshold tau Infinity', run: () => route(logits, { tokens: 2, experts: 8, policy: { kind: 'threshold', tau: Infinity } }), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'route: options null', run: () => route(logits, bad(null)), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'routerLosses: logits a plain array', run: () => routerLosses(bad([1, 2]), { tokens: 1, experts: 2, policy: TOP2 }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'routerLosses: detached logits', run: () => routerLosses(detached(16), { tokens: 2, experts: 8, policy: TOP2 }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'routerLosses: gradients "yes"', run: () => routerLosses(logits, { tokens: 2, experts: 8, policy: TOP2, gradients: bad('yes') }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'routerLosses: tokens x experts past 2^31', run: () => routerLosses(logits, { tokens: 2 ** 20, experts: 2 ** 12, policy: TOP2 }), code: 'ERR_DYNAMOE_SHAPE' },
  ];
  it.each(calls.map((c) => [c.name, c] as const))('%s', (_name, call) => check(call, true));

  it('logits backed by a SharedArrayBuffer are copied before the worker reads them: same result as a plain copy', async () => {
    const values = Float32Array.from({ length: 16 }, (_, i) => Math.sin(i));
    const shared = new Float32Array(new SharedArrayBuffer(64));
    shared.set(values);
    const a = await route(shared, { tokens: 2, experts: 8, policy: { kind: 'top-p', p: 0.5 } });
    const b = await route(values, { tokens: 2, experts: 8, policy: { kind: 'top-p', p: 0.5 } });
    expect(Array.from(a.ids)).toEqual(Array.from(b.ids));
    expect(Array.from(a.weights)).toEqual(Array.from(b.weights));
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('policies, conversions and threads (sync)', () => {
  const calls: BadCall[] = [
    { name: 'parsePolicy: an object', run: () => parsePolicy(bad({})), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'parsePolicy: top-p:abc', run: () => parsePolicy('top-p:abc'), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'parsePolicy: unknown kind', run: () => parsePolicy('top-q:1'), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'policyLabel: unknown kind', run: () => policyLabel(bad({ kind: 'x' })), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'policyLabel: null', run: () => policyLabel(bad(null)), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'parsePolicyList: zero step', run: () => parsePolicyList('top-p:0.1..0.9:0'), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'parsePolicyList: a range of 10^12 policies', run: () => parsePolicyList('top-p:0..1:1e-12'), code: 'ERR_DYNAMOE_POLICY', message: /at most/ },
    { name: 'toBf16: a string', run: () => toBf16(bad('x')), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'toF16: a plain array', run: () => toF16(bad([1, 2])), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'fromBf16: a Float32Array', run: () => fromBf16(bad(new Float32Array(2))), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'fromF16: undefined', run: () => fromF16(bad(undefined)), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'setThreads: NaN', run: () => setThreads(NaN), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'setThreads: 2^31', run: () => setThreads(2 ** 31), code: 'ERR_DYNAMOE_SHAPE' },
  ];
  it.each(calls.map((c) => [c.name, c] as const))('%s', (_name, call) => check(call, false));
});

// ---------------------------------------------------------------------------------------------------------------
describe('MoELayer', () => {
  const shape = { hidden: 4, ffn: 4, experts: 2, dtype: 'f32' as const };
  const weights = () => ({
    ...shape,
    router: new Float32Array(8),
    gate: new Float32Array(32),
    up: new Float32Array(32),
    down: new Float32Array(32),
  });
  const syncCalls: BadCall[] = [
    { name: 'fromWeights: a detached router', run: () => MoELayer.fromWeights({ ...weights(), router: detached(8) }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'fromWeights: hidden x ffn x experts past 2^32', run: () => MoELayer.fromWeights({ ...weights(), hidden: 2 ** 16, ffn: 2 ** 16, experts: 2 ** 10 }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'fromWeights: hidden Infinity', run: () => MoELayer.fromWeights({ ...weights(), hidden: Infinity }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'fromWeights: gate a Int8Array', run: () => MoELayer.fromWeights({ ...weights(), gate: bad(new Int8Array(32)) }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'fromWeights: dtype q4', run: () => MoELayer.fromWeights({ ...weights(), dtype: bad('q4') }), code: 'ERR_DYNAMOE_DTYPE' },
    { name: 'fromWeights: options a string', run: () => MoELayer.fromWeights(bad('weights')), code: 'ERR_DYNAMOE_TYPE' },
  ];
  it.each(syncCalls.map((c) => [c.name, c] as const))('%s', (_name, call) => check(call, false));

  it('load: bad weights reject (not throw)', () => expectRejection(() => MoELayer.load({ ...weights(), experts: 0 }), 'ERR_DYNAMOE_SHAPE'));

  it('forward: detached input, NaN tokens, after dispose', async () => {
    const layer = MoELayer.fromWeights(weights());
    await expectRejection(() => layer.forward(detached(8), { tokens: 2, policy: TOP2 }), 'ERR_DYNAMOE_SHAPE');
    await expectRejection(() => layer.forward(new Float32Array(8), { tokens: NaN, policy: TOP2 }), 'ERR_DYNAMOE_SHAPE');
    await expectRejection(() => layer.forward(new Float32Array(8), { tokens: 2, policy: bad('top-k') }), 'ERR_DYNAMOE_POLICY');
    layer.dispose();
    await expectRejection(() => layer.forward(new Float32Array(8), { tokens: 2, policy: TOP2 }), 'ERR_DYNAMOE_DISPOSED');
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('models and the toolkit', () => {
  let model: Model;
  let windows: Int32Array[];
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-api-inputs-'));

  beforeAll(async () => {
    model = await createSyntheticModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64 });
    windows = textWindows(model.tokenizer, 'a short text to score, long enough for two windows', 32, { window: 16 });
  });
  afterAll(() => {
    model.dispose();
    fs.rmSync(scratch, { recursive: true, force: true });
  });

  // `model` and `windows` are read when a call runs (after beforeAll), not when the table is made.
  const asyncCalls: BadCall[] = [
    { name: 'loadModel: a number', run: () => loadModel(bad(3)), code: 'ERR_DYNAMOE_TYPE' },
    // This suite runs on the CPU binary: 'cuda' says the binary cannot reach a GPU.
    { name: 'loadModel: device cuda (not built)', run: () => loadModel(scratch, { device: 'cuda' }), code: 'ERR_DYNAMOE_DEVICE' },
    { name: 'loadModel: device tpu', run: () => loadModel(scratch, { device: bad('tpu') }), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'loadModel: dtype f64', run: () => loadModel(scratch, { dtype: bad('f64') }), code: 'ERR_DYNAMOE_DTYPE' },
    { name: 'loadModel: a missing path', run: () => loadModel(path.join(scratch, 'missing')), code: 'ERR_DYNAMOE_IO' },
    { name: 'loadModel: a directory with no config.json', run: () => loadModel(scratch), code: 'ERR_DYNAMOE_IO' },
    { name: 'createSyntheticModel: layers NaN', run: () => createSyntheticModel({ layers: NaN }), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'createSyntheticModel: weights larger than memory', run: () => createSyntheticModel({ hidden: 2 ** 20, ffn: 2 ** 20, experts: 1024 }), code: 'ERR_DYNAMOE_OUT_OF_MEMORY', message: /needs .*PiB/ },
    { name: 'forward: NaN token', run: () => model.forward([NaN]), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'forward: token past the vocabulary', run: () => model.forward([2 ** 31 - 1]), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'forward: a Float32Array of ids', run: () => model.forward(bad(new Float32Array(3))), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'forward: 2^24 tokens (past the context)', run: () => model.forward(new Int32Array(2 ** 24)), code: 'ERR_DYNAMOE_SHAPE', message: /context/ },
    { name: 'forward: policy null', run: () => model.forward([1, 2], { policy: bad(null) }), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'forward: a policy file for other layers', run: () => model.forward([1, 2], { policy: { format: 'dynamoe-policy', version: 1, policies: [TOP2], layers: [7] } }), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'score: one token', run: () => model.score([1]), code: 'ERR_DYNAMOE_SHAPE' },
    { name: 'score: policy top-p:2', run: () => model.score([1, 2], { policy: 'top-p:2' }), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'evaluatePolicy: windows of Float32Array', run: () => evaluatePolicy(model, bad([new Float32Array(4)]), undefined), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'evaluatePolicy: a window past the vocabulary', run: () => evaluatePolicy(model, [Int32Array.of(1, 1e6)], undefined), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'evaluatePolicy: not a model', run: () => evaluatePolicy(bad({}), windows, undefined), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'runSweep: windows missing', run: () => runSweep(model, bad(undefined), []), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'runSweep: policies an object', run: () => runSweep(model, windows, bad({})), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'calibrate: options missing', run: () => calibrate(model, windows, bad(undefined)), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'calibrate: budget NaN', run: () => calibrate(model, windows, { expertsPerToken: NaN }), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'calibrate: grid a string', run: () => calibrate(model, windows, { expertsPerToken: 2, grid: bad('0.1') }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'readPolicyFile: a missing file', run: () => readPolicyFile(path.join(scratch, 'none.json')), code: 'ERR_DYNAMOE_IO' },
    { name: 'writePolicyFile: policies an object', run: () => writePolicyFile(path.join(scratch, 'p.json'), bad({}), []), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'writePolicyFile: a bad policy', run: () => writePolicyFile(path.join(scratch, 'p.json'), [bad({ kind: 'top-p', p: 7 })], [0]), code: 'ERR_DYNAMOE_POLICY' },
    { name: 'writePolicyFile: layers shorter than policies', run: () => writePolicyFile(path.join(scratch, 'p.json'), [TOP2], []), code: 'ERR_DYNAMOE_TYPE' },
  ];
  it.each(asyncCalls.map((c) => [c.name, c] as const))('%s', (_name, call) => check(call, true));

  const syncCalls: BadCall[] = [
    { name: 'generate: maxTokens Infinity', run: () => model.generate('hi', { maxTokens: Infinity }), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'generate: prompt + maxTokens past the context', run: () => model.generate('hi', { maxTokens: 1e9 }), code: 'ERR_DYNAMOE_SHAPE', message: /context/ },
    { name: 'generate: temperature NaN', run: () => model.generate('hi', { temperature: NaN }), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'generate: signal 3', run: () => model.generate('hi', { signal: bad(3) }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'generate: stop a string', run: () => model.generate('hi', { stop: bad('.') }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'generate: prompt an object', run: () => model.generate(bad({})), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'textWindows: no tokenizer', run: () => textWindows(bad(null), 'text', 16), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'textWindows: window NaN', run: () => textWindows(model.tokenizer, 'text', 16, { window: NaN }), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'textWindows: maxContext Infinity', run: () => textWindows(model.tokenizer, 'text', Infinity), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'sweepChart: an empty object', run: () => sweepChart(bad({})), code: 'ERR_DYNAMOE_TYPE' },
  ];
  it.each(syncCalls.map((c) => [c.name, c] as const))('%s', (_name, call) => check(call, false));

  it('after dispose: forward, score, generate and info give ERR_DYNAMOE_DISPOSED; dispose twice is fine', async () => {
    const small = await createSyntheticModel({ layers: 1, hidden: 32, heads: 2, kvHeads: 1, experts: 4, ffn: 16 });
    small.dispose();
    small.dispose();
    await expectRejection(() => small.forward([1]), 'ERR_DYNAMOE_DISPOSED');
    await expectRejection(() => small.score([1, 2]), 'ERR_DYNAMOE_DISPOSED');
    expectThrow(() => small.info, 'ERR_DYNAMOE_DISPOSED');
    const generation = small.generate('hi', { maxTokens: 2 });
    await expectRejection(async () => {
      for await (const _ of generation) void _;
    }, 'ERR_DYNAMOE_DISPOSED');
  });

  it('the model still works after every rejection above', async () => {
    const { logits } = await model.forward([1, 2, 3]);
    expect(logits.length).toBe(3 * model.spec.vocab);
    expect(logits.every(Number.isFinite)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------
// The native functions called directly, as a caller bypassing the TypeScript checks would: every argument slot gets
// every kind of wrong value. Each call must either succeed or fail with an ERR_DYNAMOE_ code; none may crash.
describe('the native boundary checks again (TypeScript bypassed)', () => {
  const garbage: unknown[] = [
    undefined, null, 0, -1, NaN, Infinity, 2 ** 31, 2 ** 53, 'x', {}, [], [1, 2], true,
    new Float64Array(4), new Int32Array(4), new Float32Array(0), detached(4), new Float32Array(new SharedArrayBuffer(16)),
    { tokens: 2 ** 31, experts: 2 ** 31 }, { kind: 'top-k', k: 2 ** 31 }, { kind: 'top-p', p: NaN }, () => 1,
  ];

  const outcomes = new Map<string, number>();

  async function outcome(call: () => unknown): Promise<'ok' | string> {
    try {
      await call();
      return 'ok';
    } catch (error) {
      const code = (error as { code?: unknown })?.code;
      return typeof code === 'string' && code.startsWith('ERR_DYNAMOE_') ? code : `uncoded: ${String(error)}`;
    }
  }

  /** Calls fn with each garbage value in each of `arity` slots, the other slots holding a valid argument. */
  async function walk(name: string, valid: unknown[], fn: (...args: unknown[]) => unknown): Promise<string[]> {
    const problems: string[] = [];
    for (let slot = 0; slot < valid.length; slot++) {
      for (const [g, value] of garbage.entries()) {
        const args = valid.slice();
        args[slot] = value;
        const result = await outcome(() => fn(...args));
        outcomes.set(result, (outcomes.get(result) ?? 0) + 1);
        if (result.startsWith('uncoded')) problems.push(`${name} slot ${slot} garbage #${g}: ${result}`);
      }
    }
    return problems;
  }

  it('route, routerLosses, MoeLayer, ModelGraph and runtime functions', async () => {
    const addon = native();
    const threads = addon.getThreads();
    const isa = addon.cpuInfo().isa;
    const logits = new Float32Array(16);
    const layerOptions = { hidden: 2, ffn: 2, experts: 2, dtype: 'f32', router: new Float32Array(4), gate: [new Float32Array(4), new Float32Array(4)], up: [new Float32Array(4), new Float32Array(4)], down: [new Float32Array(4), new Float32Array(4)] };
    const layout = { bufferWidths: [8], vocab: 4, kvWidths: [8], moeExperts: [], dtype: 'f32', kvPoolTokens: 64 };
    const problems: string[] = [];
    try {
      problems.push(...(await walk('route', [logits, { tokens: 2, experts: 8 }, TOP2, 'logits'], (a, b, c, d) => addon.route(a as never, b as never, c as never, d as never))));
      problems.push(...(await walk('routerLosses', [logits, { tokens: 2, experts: 8, gradients: true }, TOP2], (a, b, c) => addon.routerLosses(a as never, b as never, c as never))));
      problems.push(...(await walk('new MoeLayer', [layerOptions], (a) => new addon.MoeLayer(a as never))));
      problems.push(...(await walk('MoeLayer.pack', [layerOptions], (a) => addon.MoeLayer.pack(a as never))));
      const layer = new addon.MoeLayer(layerOptions as never);
      problems.push(...(await walk('MoeLayer.forward', [new Float32Array(4), { tokens: 2, policy: TOP2 }], (a, b) => layer.forward(a as never, b as never))));
      layer.dispose();
      problems.push(...(await walk('new ModelGraph', [layout], (a) => new addon.ModelGraph(a as never))));
      const graph = new addon.ModelGraph(layout as never);
      problems.push(...(await walk('ModelGraph.addNode', [{ op: 'add', a: 0, b: 0, output: 0, width: 8 }], (a) => graph.addNode(a as never))));
      problems.push(...(await walk('ModelGraph.createSession', [4], (a) => graph.createSession(a as never))));
      problems.push(...(await walk('ModelGraph.forward', [null, Int32Array.of(1), { policies: [], lastRowLogits: false, stats: false }], (a, b, c) => graph.forward(a as never, b as never, c as never))));
      graph.dispose();
      expect(await outcome(() => graph.forward(null, Int32Array.of(1), { policies: [], lastRowLogits: false, stats: false }))).toBe('ERR_DYNAMOE_DISPOSED');
      problems.push(...(await walk('setThreads', [2], (a) => addon.setThreads(a as never))));
      problems.push(...(await walk('setCpuIsa', ['scalar'], (a) => addon.setCpuIsa(a as never))));
    } finally {
      addon.setThreads(threads);
      addon.setCpuIsa(isa);
    }
    expect(problems).toEqual([]);
    // Every argument slot was really exercised: hundreds of calls, most rejected with a code, some accepted.
    const total = [...outcomes.values()].reduce((a, b) => a + b, 0);
    expect(total).toBeGreaterThan(300);
    expect(outcomes.get('ok') ?? 0).toBeGreaterThan(0);
    expect(outcomes.get('ERR_DYNAMOE_TYPE') ?? 0).toBeGreaterThan(50);
  });

  it('a native allocation that cannot be satisfied becomes ERR_DYNAMOE_OUT_OF_MEMORY naming the size', async () => {
    // Activation rows 2^20 floats wide for a step of 2^20 tokens: 2^42 bytes.
    const graph = new (native().ModelGraph)({ bufferWidths: [2 ** 20], vocab: 4, kvWidths: [], moeExperts: [], dtype: 'f32', kvPoolTokens: 2 ** 20 });
    try {
      // The addon's promise is from Node's own realm (not jest's), so it is awaited rather than matched.
      const failure = await graph.forward(null, new Int32Array(2 ** 20), { policies: [], lastRowLogits: false, stats: false }).then(
        () => undefined,
        (error: unknown) => error as { code?: string; message?: string },
      );
      expect(failure?.code).toBe('ERR_DYNAMOE_OUT_OF_MEMORY');
      expect(failure?.message).toMatch(/\d{13} bytes/);
    } finally {
      graph.dispose();
    }
  });
});
