// The same inputs give bit-identical outputs run after run and whatever the thread count: whole-model forwards
// (f32 and bf16, several policies), scores, seeded generations, routing and router losses.
import { createSyntheticModel, getThreads, Model, route, routerLosses, setThreads } from '../lib';
import { Rng } from './reference';

const THREAD_COUNTS = [1, 2, 3, 4]; // more pool threads than cores is allowed and must not change a bit
const SHAPE = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64 };

jest.setTimeout(120_000);

const bits = (array: Float32Array | Float64Array) => Buffer.from(array.buffer, array.byteOffset, array.byteLength).toString('base64');

/** Everything one model produces for a fixed set of inputs, as exact bytes. */
async function fingerprint(model: Model): Promise<string[]> {
  const tokens = Array.from({ length: 200 }, (_, i) => (i * 31 + 7) % model.spec.vocab); // several row blocks
  const out: string[] = [];
  for (const policy of ['top-k:2', 'top-p:0.5', 'threshold:0.15']) {
    out.push(bits((await model.forward(tokens, { policy })).logits));
    out.push(bits((await model.score(tokens, { policy })).logProbs));
  }
  const ids: number[] = [];
  for await (const t of model.generate('determinism', { maxTokens: 8, temperature: 1, seed: 11 })) ids.push(t.id);
  out.push(ids.join(','));
  return out;
}

describe('determinism', () => {
  const original = getThreads();
  let models: Model[];

  beforeAll(async () => {
    models = await Promise.all([
      createSyntheticModel({ ...SHAPE, seed: 21 }),
      createSyntheticModel({ ...SHAPE, seed: 21, dtype: 'bf16' }),
    ]);
  });
  afterAll(() => {
    setThreads(original);
    models?.forEach((m) => m.dispose());
  });

  it.each([
    ['f32', 0],
    ['bf16', 1],
  ])('a %s model gives the same bits on every run and with 1, 2, 3 or 4 threads', async (_dtype, index) => {
    const model = models[index as number];
    setThreads(THREAD_COUNTS[0]);
    const reference = await fingerprint(model);
    expect(await fingerprint(model)).toEqual(reference); // run to run
    for (const threads of THREAD_COUNTS.slice(1)) {
      setThreads(threads);
      expect(await fingerprint(model)).toEqual(reference);
    }
  });

  it('route and routerLosses give the same bits with 1, 2, 3 or 4 threads (4096 tokens, 64 experts)', async () => {
    const tokens = 4096;
    const experts = 64;
    const logits = new Rng(63).normalArray(tokens * experts, 2);
    const run = async () => {
      const routed = await route(logits, { tokens, experts, policy: { kind: 'top-p', p: 0.6 } });
      const losses = await routerLosses(logits, { tokens, experts, policy: { kind: 'top-p', p: 0.6 }, gradients: true });
      return [bits(routed.weights), Buffer.from(routed.ids.buffer).toString('base64'), String(losses.dynamicLoss), String(losses.loadBalanceLoss), bits(losses.dynamicLossGradient!), bits(losses.loadBalanceLossGradient!)];
    };
    setThreads(1);
    const reference = await run();
    for (const threads of THREAD_COUNTS.slice(1)) {
      setThreads(threads);
      expect(await run()).toEqual(reference);
    }
  });
});
