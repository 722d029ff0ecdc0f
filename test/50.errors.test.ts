// Every bad input gets a DynamoeError with the right stable code, and a message naming what was expected/given:
// route() and forward() reject (never throw synchronously), fromWeights() and setThreads() throw. Nothing crashes,
// and the library still works afterwards.
import { getThreads, MoELayer, route, setThreads } from '../lib';
import { Code, expectRejection, expectThrow } from './helpers';
import { Rng } from './reference';

/** A bad-input case: what to change, the code(s) it must give, and a key word its message must contain. */
interface ErrorCase<T> {
  name: string;
  make: () => T;
  code: Code | Code[];
  message?: RegExp;
}

/** A small layer with normal weights drawn from `rng` (router, then gate, up, down, in that order). */
function randomLayer(rng: Rng, shape: { hidden: number; ffn: number; experts: number; dtype: 'f32' | 'bf16' }) {
  const { hidden: H, ffn: F, experts: E } = shape;
  return MoELayer.fromWeights({
    ...shape,
    router: rng.normalArray(E * H),
    gate: rng.normalArray(E * F * H),
    up: rng.normalArray(E * F * H),
    down: rng.normalArray(E * H * F),
  });
}

// ---------------------------------------------------------------------------------------------------------------
describe('route() rejects bad input', () => {
  const E = 4;
  const T = 2;
  const good = () => ({
    scores: Float32Array.from([0.1, 0.2, 0.3, 0.4, 1, 2, 3, 4]),
    options: { tokens: T, experts: E, policy: { kind: 'top-k', k: 2 } } as Record<string, unknown>,
  });
  const withOptions = (patch: Record<string, unknown>) => () => {
    const g = good();
    return { scores: g.scores, options: { ...g.options, ...patch } };
  };
  const withPolicy = (policy: unknown) => withOptions({ policy });
  const withScores = (scores: unknown, patch: Record<string, unknown> = {}) => () => ({
    scores,
    options: { ...good().options, ...patch },
  });

  const cases: ErrorCase<{ scores: unknown; options: unknown }>[] = [
    // wrong kind of value
    { name: 'scores is a plain array', make: withScores([0.1, 0.2, 0.3, 0.4, 1, 2, 3, 4]), code: 'ERR_DYNAMOE_TYPE', message: /Float32Array/ },
    { name: 'scores is a Float64Array', make: withScores(new Float64Array(8)), code: 'ERR_DYNAMOE_TYPE', message: /Float32Array/ },
    { name: 'scores is null', make: withScores(null), code: 'ERR_DYNAMOE_TYPE', message: /Float32Array/ },
    { name: 'scores is a string', make: withScores('scores'), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'options missing', make: () => ({ scores: good().scores, options: undefined }), code: 'ERR_DYNAMOE_TYPE', message: /object/ },
    { name: 'options is null', make: () => ({ scores: good().scores, options: null }), code: 'ERR_DYNAMOE_TYPE', message: /object/ },
    { name: 'options is a number', make: () => ({ scores: good().scores, options: 5 }), code: 'ERR_DYNAMOE_TYPE', message: /object/ },
    { name: 'normalize is a string', make: withPolicy({ kind: 'top-k', k: 2, normalize: 'yes' }), code: 'ERR_DYNAMOE_TYPE', message: /normalize/ },
    { name: "input is 'softmax'", make: withOptions({ input: 'softmax' }), code: 'ERR_DYNAMOE_TYPE', message: /input/ },
    // sizes and lengths
    { name: 'tokens = 0', make: withOptions({ tokens: 0 }), code: 'ERR_DYNAMOE_SHAPE', message: /tokens/ },
    { name: 'tokens = -1', make: withOptions({ tokens: -1 }), code: 'ERR_DYNAMOE_SHAPE', message: /tokens/ },
    { name: 'tokens = 1.5', make: withOptions({ tokens: 1.5 }), code: 'ERR_DYNAMOE_SHAPE', message: /tokens.*1\.5/ },
    { name: 'tokens = NaN', make: withOptions({ tokens: NaN }), code: 'ERR_DYNAMOE_SHAPE', message: /tokens/ },
    { name: 'tokens = Infinity', make: withOptions({ tokens: Infinity }), code: 'ERR_DYNAMOE_SHAPE', message: /tokens/ },
    { name: 'tokens missing', make: withOptions({ tokens: undefined }), code: ['ERR_DYNAMOE_SHAPE', 'ERR_DYNAMOE_TYPE'], message: /tokens/ },
    { name: 'experts = 0', make: withOptions({ experts: 0 }), code: 'ERR_DYNAMOE_SHAPE', message: /experts/ },
    { name: 'experts = 2.5', make: withOptions({ experts: 2.5 }), code: 'ERR_DYNAMOE_SHAPE', message: /experts/ },
    { name: 'scores shorter than tokens*experts', make: withScores(new Float32Array(7)), code: 'ERR_DYNAMOE_SHAPE', message: /8/ },
    { name: 'scores longer than tokens*experts', make: withScores(new Float32Array(9)), code: 'ERR_DYNAMOE_SHAPE', message: /9/ },
    { name: 'experts does not divide the scores', make: withOptions({ experts: 3 }), code: 'ERR_DYNAMOE_SHAPE' },
    // policies
    { name: 'policy missing', make: withPolicy(undefined), code: ['ERR_DYNAMOE_POLICY', 'ERR_DYNAMOE_TYPE'], message: /policy/ },
    { name: "unknown kind 'top-q'", make: withPolicy({ kind: 'top-q', k: 2 }), code: 'ERR_DYNAMOE_POLICY', message: /top-q/ },
    { name: 'kind missing', make: withPolicy({ k: 2 }), code: 'ERR_DYNAMOE_POLICY', message: /kind/ },
    { name: 'top-k k = 0', make: withPolicy({ kind: 'top-k', k: 0 }), code: 'ERR_DYNAMOE_POLICY', message: /\bk\b/ },
    { name: 'top-k k = E + 1', make: withPolicy({ kind: 'top-k', k: 5 }), code: 'ERR_DYNAMOE_POLICY', message: /5/ },
    { name: 'top-k k = 1.5', make: withPolicy({ kind: 'top-k', k: 1.5 }), code: 'ERR_DYNAMOE_POLICY', message: /1\.5/ },
    { name: 'top-k k = NaN', make: withPolicy({ kind: 'top-k', k: NaN }), code: 'ERR_DYNAMOE_POLICY', message: /\bk\b/ },
    { name: 'top-k k missing', make: withPolicy({ kind: 'top-k' }), code: 'ERR_DYNAMOE_POLICY', message: /\bk\b/ },
    { name: 'top-k scale = NaN', make: withPolicy({ kind: 'top-k', k: 2, scale: NaN }), code: 'ERR_DYNAMOE_POLICY', message: /scale/ },
    { name: 'top-k scale = Infinity', make: withPolicy({ kind: 'top-k', k: 2, scale: Infinity }), code: 'ERR_DYNAMOE_POLICY', message: /scale/ },
    { name: 'top-k scale = -Infinity', make: withPolicy({ kind: 'top-k', k: 2, scale: -Infinity }), code: 'ERR_DYNAMOE_POLICY', message: /scale/ },
    { name: 'top-p p = 0', make: withPolicy({ kind: 'top-p', p: 0 }), code: 'ERR_DYNAMOE_POLICY', message: /\bp\b/ },
    { name: 'top-p p = -0.1', make: withPolicy({ kind: 'top-p', p: -0.1 }), code: 'ERR_DYNAMOE_POLICY', message: /-0\.1/ },
    { name: 'top-p p = 1.5', make: withPolicy({ kind: 'top-p', p: 1.5 }), code: 'ERR_DYNAMOE_POLICY', message: /1\.5/ },
    { name: 'top-p p = NaN', make: withPolicy({ kind: 'top-p', p: NaN }), code: 'ERR_DYNAMOE_POLICY', message: /\bp\b/ },
    { name: 'top-p p missing', make: withPolicy({ kind: 'top-p' }), code: 'ERR_DYNAMOE_POLICY', message: /\bp\b/ },
    { name: 'threshold tau = -0.1', make: withPolicy({ kind: 'threshold', tau: -0.1 }), code: 'ERR_DYNAMOE_POLICY', message: /tau/ },
    { name: 'threshold tau = 1.1', make: withPolicy({ kind: 'threshold', tau: 1.1 }), code: 'ERR_DYNAMOE_POLICY', message: /1\.1/ },
    { name: 'threshold tau = NaN', make: withPolicy({ kind: 'threshold', tau: NaN }), code: 'ERR_DYNAMOE_POLICY', message: /tau/ },
    { name: 'threshold tau missing', make: withPolicy({ kind: 'threshold' }), code: 'ERR_DYNAMOE_POLICY', message: /tau/ },
    { name: 'top-p minExperts = 0', make: withPolicy({ kind: 'top-p', p: 0.4, minExperts: 0 }), code: 'ERR_DYNAMOE_POLICY', message: /minExperts/ },
    { name: 'top-p minExperts = E + 1', make: withPolicy({ kind: 'top-p', p: 0.4, minExperts: 5 }), code: 'ERR_DYNAMOE_POLICY', message: /minExperts/ },
    { name: 'top-p minExperts = 1.5', make: withPolicy({ kind: 'top-p', p: 0.4, minExperts: 1.5 }), code: 'ERR_DYNAMOE_POLICY', message: /minExperts/ },
    { name: 'top-p maxExperts = 0', make: withPolicy({ kind: 'top-p', p: 0.4, maxExperts: 0 }), code: 'ERR_DYNAMOE_POLICY', message: /maxExperts/ },
    { name: 'top-p maxExperts = E + 1', make: withPolicy({ kind: 'top-p', p: 0.4, maxExperts: 5 }), code: 'ERR_DYNAMOE_POLICY', message: /maxExperts/ },
    { name: 'top-p minExperts 3 > maxExperts 2', make: withPolicy({ kind: 'top-p', p: 0.4, minExperts: 3, maxExperts: 2 }), code: 'ERR_DYNAMOE_POLICY', message: /minExperts/ },
    { name: 'threshold minExperts 4 > maxExperts 1', make: withPolicy({ kind: 'threshold', tau: 0.1, minExperts: 4, maxExperts: 1 }), code: 'ERR_DYNAMOE_POLICY', message: /maxExperts/ },
    { name: 'threshold maxExperts = -1', make: withPolicy({ kind: 'threshold', tau: 0.1, maxExperts: -1 }), code: 'ERR_DYNAMOE_POLICY', message: /maxExperts/ },
    // values
    { name: 'a NaN logit', make: withScores(Float32Array.from([0, 1, NaN, 2, 0, 0, 0, 0])), code: 'ERR_DYNAMOE_VALUE', message: /NaN|finite/i },
    { name: 'an Infinity logit', make: withScores(Float32Array.from([0, 1, 2, 3, 0, Infinity, 0, 0])), code: 'ERR_DYNAMOE_VALUE', message: /Infinity|finite/i },
    { name: 'a -Infinity logit', make: withScores(Float32Array.from([0, 1, 2, 3, 0, 0, 0, -Infinity])), code: 'ERR_DYNAMOE_VALUE', message: /Infinity|finite/i },
    { name: 'a probability below 0', make: withScores(Float32Array.from([0.5, 0.6, -0.1, 0, 0.25, 0.25, 0.25, 0.25]), { input: 'probabilities' }), code: 'ERR_DYNAMOE_VALUE', message: /\[0, 1\]|probabilit/i },
    { name: 'a probability above 1', make: withScores(Float32Array.from([0.5, 1.5, 0, 0, 0.25, 0.25, 0.25, 0.25]), { input: 'probabilities' }), code: 'ERR_DYNAMOE_VALUE', message: /\[0, 1\]|probabilit/i },
    { name: 'a NaN probability', make: withScores(Float32Array.from([0.5, NaN, 0, 0, 0.25, 0.25, 0.25, 0.25]), { input: 'probabilities' }), code: 'ERR_DYNAMOE_VALUE' },
    { name: 'an Infinity probability', make: withScores(Float32Array.from([0.5, 0, 0, 0, 0.25, 0.25, Infinity, 0.25]), { input: 'probabilities' }), code: 'ERR_DYNAMOE_VALUE' },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const { scores, options } = c.make();
    await expectRejection(() => route(scores as Float32Array, options as never), c.code, c.message);
  });

  it('the valid baseline used by the cases resolves (so each case fails for its own reason)', async () => {
    const { scores, options } = good();
    const result = await route(scores, options as never);
    expect(Array.from(result.ids)).toEqual([3, 2, 3, 2]);
    const probabilities = await route(Float32Array.from([0, 1, 0, 0, 0.25, 0.25, 0.25, 0.25]), {
      tokens: 2,
      experts: 4,
      policy: { kind: 'top-p', p: 1 },
      input: 'probabilities',
    });
    expect(Array.from(probabilities.counts)).toEqual([4, 4]);
  });

  it('boundary values that are valid: p = 1, tau = 0, tau = 1, k = E, minExperts = maxExperts = E', async () => {
    const scores = good().scores;
    for (const policy of [
      { kind: 'top-p', p: 1 },
      { kind: 'threshold', tau: 0 },
      { kind: 'threshold', tau: 1 },
      { kind: 'top-k', k: 4 },
      { kind: 'top-p', p: 0.3, minExperts: 4, maxExperts: 4 },
      { kind: 'top-k', k: 1, scale: 1e-3 },
    ]) {
      const result = await route(scores, { tokens: 2, experts: 4, policy: policy as never });
      expect(result.counts.every((n) => n >= 1)).toBe(true);
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('MoELayer.fromWeights throws on bad input', () => {
  const H = 8;
  const F = 4;
  const E = 3;
  const rng = new Rng(50);
  const router = rng.normalArray(E * H);
  const gate = rng.normalArray(E * F * H);
  const up = rng.normalArray(E * F * H);
  const down = rng.normalArray(E * H * F);
  const sharedGood = { ffn: 5, gate: rng.normalArray(5 * H), up: rng.normalArray(5 * H), down: rng.normalArray(H * 5), gateWeight: rng.normalArray(H) };
  const good = (): Record<string, unknown> => ({ hidden: H, ffn: F, experts: E, dtype: 'f32', router, gate, up, down });
  const patch = (p: Record<string, unknown>) => () => ({ ...good(), ...p });
  const perExpert = (a: Float32Array) => [0, 1, 2].map((e) => a.slice((e * a.length) / 3, ((e + 1) * a.length) / 3));
  const withShared = (p: Record<string, unknown>) => patch({ shared: { ...sharedGood, ...p } });

  const cases: ErrorCase<unknown>[] = [
    { name: 'weights missing', make: () => undefined, code: 'ERR_DYNAMOE_TYPE', message: /object/ },
    { name: 'weights is a number', make: () => 5, code: 'ERR_DYNAMOE_TYPE', message: /object/ },
    { name: 'router is a Float64Array', make: patch({ router: new Float64Array(E * H) }), code: 'ERR_DYNAMOE_TYPE', message: /router/ },
    { name: 'router is a plain array', make: patch({ router: Array.from(router) }), code: 'ERR_DYNAMOE_TYPE', message: /router/ },
    { name: 'router missing', make: patch({ router: undefined }), code: 'ERR_DYNAMOE_TYPE', message: /router/ },
    { name: 'gate is an Int32Array', make: patch({ gate: new Int32Array(E * F * H) }), code: 'ERR_DYNAMOE_TYPE', message: /gate/ },
    { name: 'up is a string', make: patch({ up: 'up' }), code: 'ERR_DYNAMOE_TYPE', message: /up/ },
    { name: 'down is null', make: patch({ down: null }), code: 'ERR_DYNAMOE_TYPE', message: /down/ },
    { name: 'a per-expert gate entry is a Float64Array', make: patch({ gate: [gate.slice(0, F * H), new Float64Array(F * H), gate.slice(2 * F * H)] }), code: 'ERR_DYNAMOE_TYPE', message: /gate/ },
    { name: 'shared is a number', make: patch({ shared: 5 }), code: 'ERR_DYNAMOE_TYPE', message: /shared/ },
    { name: 'shared.gate is a Float64Array', make: withShared({ gate: new Float64Array(5 * H) }), code: 'ERR_DYNAMOE_TYPE', message: /gate/ },
    { name: 'shared.gateWeight is a Float64Array', make: withShared({ gateWeight: new Float64Array(H) }), code: 'ERR_DYNAMOE_TYPE', message: /gateWeight/ },
    { name: 'hidden = 0', make: patch({ hidden: 0 }), code: 'ERR_DYNAMOE_SHAPE', message: /hidden/ },
    { name: 'hidden = -8', make: patch({ hidden: -8 }), code: 'ERR_DYNAMOE_SHAPE', message: /hidden/ },
    { name: 'hidden = 2.5', make: patch({ hidden: 2.5 }), code: 'ERR_DYNAMOE_SHAPE', message: /2\.5/ },
    { name: 'hidden = NaN', make: patch({ hidden: NaN }), code: 'ERR_DYNAMOE_SHAPE', message: /hidden/ },
    { name: 'ffn = 0', make: patch({ ffn: 0 }), code: 'ERR_DYNAMOE_SHAPE', message: /ffn/ },
    { name: 'experts = 0', make: patch({ experts: 0 }), code: 'ERR_DYNAMOE_SHAPE', message: /experts/ },
    { name: 'experts = 1.5', make: patch({ experts: 1.5 }), code: 'ERR_DYNAMOE_SHAPE', message: /experts/ },
    { name: 'router length E*H - 1', make: patch({ router: router.slice(1) }), code: 'ERR_DYNAMOE_SHAPE', message: /router/ },
    { name: 'gate length off by one', make: patch({ gate: gate.slice(1) }), code: 'ERR_DYNAMOE_SHAPE', message: /gate/ },
    { name: 'up too long', make: patch({ up: new Float32Array(E * F * H + 1) }), code: 'ERR_DYNAMOE_SHAPE', message: /up/ },
    { name: 'down too short by F elements', make: patch({ down: new Float32Array(E * H * F - F) }), code: 'ERR_DYNAMOE_SHAPE', message: /down/ },
    { name: 'per-expert gate lists E - 1 experts', make: patch({ gate: perExpert(gate).slice(0, 2) }), code: 'ERR_DYNAMOE_SHAPE', message: /gate/ },
    { name: 'per-expert down lists E + 1 experts', make: patch({ down: [...perExpert(down), down.slice(0, H * F)] }), code: 'ERR_DYNAMOE_SHAPE', message: /down/ },
    { name: 'a per-expert up entry is too short', make: patch({ up: [up.slice(0, F * H), up.slice(0, F * H - 1), up.slice(0, F * H)] }), code: 'ERR_DYNAMOE_SHAPE', message: /up/ },
    { name: 'shared.ffn = 0', make: withShared({ ffn: 0 }), code: 'ERR_DYNAMOE_SHAPE', message: /ffn/ },
    { name: 'shared.gate of the wrong length', make: withShared({ gate: new Float32Array(4 * H) }), code: 'ERR_DYNAMOE_SHAPE', message: /gate/ },
    { name: 'shared.down of the wrong length', make: withShared({ down: new Float32Array(H * 5 + 1) }), code: 'ERR_DYNAMOE_SHAPE', message: /down/ },
    { name: 'shared.gateWeight of the wrong length', make: withShared({ gateWeight: new Float32Array(H - 1) }), code: 'ERR_DYNAMOE_SHAPE', message: /gateWeight/ },
    { name: 'bf16 Uint16Array gate of the wrong length', make: patch({ dtype: 'bf16', gate: new Uint16Array(E * F * H - 1) }), code: 'ERR_DYNAMOE_SHAPE', message: /gate/ },
    { name: "dtype 'f64'", make: patch({ dtype: 'f64' }), code: 'ERR_DYNAMOE_DTYPE', message: /f64/ },
    { name: "dtype 'F32' (case matters)", make: patch({ dtype: 'F32' }), code: 'ERR_DYNAMOE_DTYPE', message: /dtype/ },
    { name: 'dtype missing', make: patch({ dtype: undefined }), code: 'ERR_DYNAMOE_DTYPE', message: /dtype/ },
    { name: 'Uint16Array gate for an f32 layer', make: patch({ gate: new Uint16Array(E * F * H) }), code: 'ERR_DYNAMOE_DTYPE', message: /f32|Uint16Array/ },
    { name: 'Uint16Array per-expert down for an f32 layer', make: patch({ down: [0, 1, 2].map(() => new Uint16Array(H * F)) }), code: 'ERR_DYNAMOE_DTYPE', message: /f32|Uint16Array/ },
    { name: 'Uint16Array shared.up for an f32 layer', make: withShared({ up: new Uint16Array(5 * H) }), code: 'ERR_DYNAMOE_DTYPE', message: /f32|Uint16Array/ },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_, c) => {
    expectThrow(() => MoELayer.fromWeights(c.make() as never), c.code, c.message);
  });

  it('the valid baselines build (plain, per-expert, bf16 bit patterns, shared expert)', () => {
    const layers = [
      MoELayer.fromWeights(good() as never),
      MoELayer.fromWeights({ ...good(), gate: perExpert(gate), up: perExpert(up), down: perExpert(down) } as never),
      MoELayer.fromWeights({ ...good(), dtype: 'bf16', gate: new Uint16Array(E * F * H) } as never),
      MoELayer.fromWeights({ ...good(), shared: sharedGood } as never),
    ];
    for (const layer of layers) {
      expect(layer.disposed).toBe(false);
      expect(layer.hidden).toBe(H);
      layer.dispose();
    }
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('MoELayer.forward rejects bad input', () => {
  const H = 6;
  const E = 3;
  const rng = new Rng(51);
  const layer = randomLayer(rng, { hidden: H, ffn: 5, experts: E, dtype: 'f32' });
  afterAll(() => layer.dispose());
  const x = rng.normalArray(2 * H);
  const policy = { kind: 'top-k', k: 2 };

  const cases: ErrorCase<{ x: unknown; options: unknown }>[] = [
    { name: 'x is a plain array', make: () => ({ x: Array.from(x), options: { tokens: 2, policy } }), code: 'ERR_DYNAMOE_TYPE', message: /Float32Array/ },
    { name: 'x is a Float64Array', make: () => ({ x: new Float64Array(2 * H), options: { tokens: 2, policy } }), code: 'ERR_DYNAMOE_TYPE', message: /Float32Array/ },
    { name: 'x is null', make: () => ({ x: null, options: { tokens: 2, policy } }), code: 'ERR_DYNAMOE_TYPE' },
    { name: 'options missing', make: () => ({ x, options: undefined }), code: 'ERR_DYNAMOE_TYPE', message: /object/ },
    { name: 'options is a string', make: () => ({ x, options: 'top-2' }), code: 'ERR_DYNAMOE_TYPE', message: /object/ },
    { name: 'tokens = 0', make: () => ({ x, options: { tokens: 0, policy } }), code: 'ERR_DYNAMOE_SHAPE', message: /tokens/ },
    { name: 'tokens = -2', make: () => ({ x, options: { tokens: -2, policy } }), code: 'ERR_DYNAMOE_SHAPE', message: /tokens/ },
    { name: 'tokens = 1.5', make: () => ({ x, options: { tokens: 1.5, policy } }), code: 'ERR_DYNAMOE_SHAPE', message: /1\.5/ },
    { name: 'x shorter than tokens*hidden', make: () => ({ x: x.slice(1), options: { tokens: 2, policy } }), code: 'ERR_DYNAMOE_SHAPE', message: /12/ },
    { name: 'x longer than tokens*hidden', make: () => ({ x, options: { tokens: 1, policy } }), code: 'ERR_DYNAMOE_SHAPE', message: /12/ },
    { name: 'k > experts', make: () => ({ x, options: { tokens: 2, policy: { kind: 'top-k', k: 4 } } }), code: 'ERR_DYNAMOE_POLICY', message: /\bk\b/ },
    { name: 'unknown policy kind', make: () => ({ x, options: { tokens: 2, policy: { kind: 'random' } } }), code: 'ERR_DYNAMOE_POLICY', message: /random/ },
    { name: 'top-p p = 2', make: () => ({ x, options: { tokens: 2, policy: { kind: 'top-p', p: 2 } } }), code: 'ERR_DYNAMOE_POLICY', message: /\bp\b/ },
    { name: 'maxExperts > experts', make: () => ({ x, options: { tokens: 2, policy: { kind: 'threshold', tau: 0.1, maxExperts: 4 } } }), code: 'ERR_DYNAMOE_POLICY', message: /maxExperts/ },
    { name: 'policy missing', make: () => ({ x, options: { tokens: 2 } }), code: ['ERR_DYNAMOE_POLICY', 'ERR_DYNAMOE_TYPE'], message: /policy/ },
    { name: 'x contains NaN', make: () => ({ x: Float32Array.from(x, (v, i) => (i === 7 ? NaN : v)), options: { tokens: 2, policy } }), code: 'ERR_DYNAMOE_VALUE', message: /NaN|finite/i },
    { name: 'x contains Infinity', make: () => ({ x: Float32Array.from(x, (v, i) => (i === 0 ? Infinity : v)), options: { tokens: 2, policy } }), code: 'ERR_DYNAMOE_VALUE', message: /Infinity|finite/i },
    { name: 'x contains -Infinity', make: () => ({ x: Float32Array.from(x, (v, i) => (i === 11 ? -Infinity : v)), options: { tokens: 2, policy } }), code: 'ERR_DYNAMOE_VALUE' },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_, c) => {
    const { x: input, options } = c.make();
    await expectRejection(() => layer.forward(input as Float32Array, options as never), c.code, c.message);
  });

  it('the layer still works after all the rejections', async () => {
    const result = await layer.forward(x, { tokens: 2, policy: { kind: 'top-k', k: 2 } });
    expect(result.output.length).toBe(2 * H);
    expect(result.output.every(Number.isFinite)).toBe(true);
    expect(result.routing.counts.every((n) => n === 2)).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('dispose', () => {
  const H = 5;
  const E = 2;
  const build = () => randomLayer(new Rng(52), { hidden: H, ffn: 3, experts: E, dtype: 'bf16' });
  const x = new Rng(53).normalArray(4 * H);

  it('forward after dispose rejects with ERR_DYNAMOE_DISPOSED', async () => {
    const layer = build();
    expect(layer.disposed).toBe(false);
    layer.dispose();
    expect(layer.disposed).toBe(true);
    await expectRejection(() => layer.forward(x, { tokens: 4, policy: { kind: 'top-k', k: 1 } }), 'ERR_DYNAMOE_DISPOSED', /dispos/i);
  });

  it('dispose twice is fine and the layer stays disposed', async () => {
    const layer = build();
    layer.dispose();
    expect(() => layer.dispose()).not.toThrow();
    expect(layer.disposed).toBe(true);
    await expectRejection(() => layer.forward(x, { tokens: 4, policy: { kind: 'top-k', k: 1 } }), 'ERR_DYNAMOE_DISPOSED');
  });

  it('a forward already running when dispose() is called finishes with the right output', async () => {
    const reference = build();
    const expected = await reference.forward(x, { tokens: 4, policy: { kind: 'top-k', k: 2 } });
    reference.dispose();
    const layer = build();
    const running = layer.forward(x, { tokens: 4, policy: { kind: 'top-k', k: 2 } });
    layer.dispose();
    const result = await running;
    expect(Array.from(result.output)).toEqual(Array.from(expected.output));
    expect(layer.disposed).toBe(true);
  });

  it('disposing one layer leaves another layer with the same weights working', async () => {
    const a = build();
    const b = build();
    a.dispose();
    const result = await b.forward(x, { tokens: 4, policy: { kind: 'top-p', p: 0.5 } });
    expect(result.output.every(Number.isFinite)).toBe(true);
    b.dispose();
  });
});

// ---------------------------------------------------------------------------------------------------------------
describe('setThreads throws on bad input and keeps the old value', () => {
  const original = getThreads();
  afterAll(() => setThreads(original));

  const cases: ErrorCase<unknown>[] = [
    { name: '0', make: () => 0, code: 'ERR_DYNAMOE_SHAPE', message: /threads/ },
    { name: '-1', make: () => -1, code: 'ERR_DYNAMOE_SHAPE', message: /threads/ },
    { name: '1.5', make: () => 1.5, code: 'ERR_DYNAMOE_SHAPE', message: /threads/ },
    { name: 'NaN', make: () => NaN, code: 'ERR_DYNAMOE_SHAPE', message: /threads/ },
    { name: 'Infinity', make: () => Infinity, code: 'ERR_DYNAMOE_SHAPE', message: /threads/ },
    { name: "'2' (a string)", make: () => '2', code: ['ERR_DYNAMOE_TYPE', 'ERR_DYNAMOE_SHAPE'], message: /threads/ },
    { name: 'undefined', make: () => undefined, code: ['ERR_DYNAMOE_TYPE', 'ERR_DYNAMOE_SHAPE'], message: /threads/ },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('setThreads(%s)', (_, c) => {
    const before = getThreads();
    expectThrow(() => setThreads(c.make() as number), c.code, c.message);
    expect(getThreads()).toBe(before);
  });

  it('valid values are applied and read back', () => {
    setThreads(1);
    expect(getThreads()).toBe(1);
    setThreads(2);
    expect(getThreads()).toBe(2);
    setThreads(original);
    expect(getThreads()).toBe(original);
  });
});
