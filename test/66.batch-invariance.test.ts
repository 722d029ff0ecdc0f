// Batch invariance: a request's logits, log-probabilities and tokens are bit-identical whether it runs alone or
// batched with other requests (2..32 of them, prefilling and decoding), at any chunking, under every policy, with
// ties in the router, on every CPU kernel family. Also the attacker's view of "Stealing User Prompts from Mixture
// of Experts": an attacker's outputs carry no trace of a victim batched beside it.
import * as path from 'path';
import { cpuInfo, loadModel, Model, setCpuIsa } from '../lib';
import type { CpuIsa, PolicyOption } from '../lib';
import { makeTinyModel, tempDir, TinyModel, writeHfCheckpoint } from './model-fixtures';
import { bits } from './model-steps';

let temp: ReturnType<typeof tempDir>;
const dirs: Record<string, string> = {};

// Every router of `m` gives experts 0 and 1 the same weights, so they tie on every token.
function withRouterTies(m: TinyModel): TinyModel {
  for (const layer of m.layers) {
    if (layer.ffn.kind !== 'moe') continue;
    layer.ffn.router.set(layer.ffn.router.subarray(0, m.hidden), m.hidden);
  }
  return m;
}

beforeAll(async () => {
  temp = tempDir('dynamoe-invariance-');
  dirs.ties = path.join(temp.dir, 'ties');
  await writeHfCheckpoint(dirs.ties, withRouterTies(makeTinyModel('mixtral', 21)), 'f32');
  dirs.qwen = path.join(temp.dir, 'qwen');
  await writeHfCheckpoint(dirs.qwen, makeTinyModel('qwen2-moe', 22), 'bf16');
}, 60_000);
afterAll(() => temp.cleanup());


function prompt(seed: number, length: number, vocab: number): number[] {
  return Array.from({ length }, (_, i) => 1 + ((seed * 7919 + i * 104729) % (vocab - 1)));
}

async function collect(generation: AsyncIterable<{ id: number }>): Promise<number[]> {
  const ids: number[] = [];
  for await (const token of generation) ids.push(token.id);
  return ids;
}

// Runs `work` while recording the most sequences any model step held.
async function observingBatches<T>(model: Model, work: Promise<T>): Promise<{ result: T; largestStep: number }> {
  let largestStep = 0;
  let running = true;
  const watch = (async () => {
    while (running) {
      largestStep = Math.max(largestStep, model.load.lastStepSequences);
      await new Promise((resolve) => setImmediate(resolve));
    }
  })();
  try {
    return { result: await work, largestStep };
  } finally {
    running = false;
    await watch;
  }
}

// Other requests of every kind: generations (decoding), forwards and scores (prefilling), with their own policies.
function neighbours(model: Model, count: number, seed: number): Promise<unknown>[] {
  const vocab = model.spec.vocab;
  const policies = ['top-k:1', 'top-p:0.3', 'top-k:3', 'threshold:0.2', undefined];
  return Array.from({ length: count }, (_, i) => {
    const ids = prompt(seed * 100 + i, 3 + ((i * 5) % 23), vocab);
    const policy = policies[i % policies.length];
    if (i % 3 === 0) return collect(model.generate(ids, { maxTokens: 4 + (i % 6), policy }));
    if (i % 3 === 1) return model.forward(ids, { policy, stats: true });
    return model.score(ids, { policy });
  });
}

describe.each([
  ['a tied-router Mixtral (f32)', 'ties', 'f32'],
  ['Qwen2-MoE with shared experts and dense layers (bf16)', 'qwen', 'bf16'],
] as const)('%s', (_name, dir, dtype) => {
  let alone: Model;
  let chunked: Model;
  beforeAll(async () => {
    alone = await loadModel(dirs[dir], { dtype, maxSequences: 1 });
    // Prompts cut in chunks of 5 tokens and batched with up to 40 others.
    chunked = await loadModel(dirs[dir], { dtype, maxSequences: 40, tokensPerStep: 5 });
  });
  afterAll(() => {
    alone.dispose();
    chunked.dispose();
  });

  it.each([1, 2, 4, 8, 16, 32])('a forward with %i other requests has the bits it has alone', async (others) => {
    const vocab = alone.spec.vocab;
    const ids = prompt(others, 17, vocab);
    const reference = await alone.forward(ids, { stats: true });
    const batch = neighbours(chunked, others, others);
    const { result, largestStep } = await observingBatches(chunked, chunked.forward(ids, { stats: true }));
    await Promise.all(batch);
    expect(bits(result.logits).equals(bits(reference.logits))).toBe(true);
    expect(result.stats).toEqual(reference.stats);
    if (others > 1) expect(largestStep).toBeGreaterThan(1); // the requests really shared steps
  });

  it('scores, greedy and seeded generations are the same alone and batched', async () => {
    const vocab = alone.spec.vocab;
    const ids = prompt(5, 12, vocab);
    const scoreAlone = await alone.score(ids);
    const greedyAlone = await collect(alone.generate(ids, { maxTokens: 16 }));
    const sampledAlone = await collect(alone.generate(ids, { maxTokens: 16, temperature: 0.9, topP: 0.9, seed: 3 }));
    const batch = neighbours(chunked, 12, 9);
    const [score, greedy, sampled] = await Promise.all([
      chunked.score(ids),
      collect(chunked.generate(ids, { maxTokens: 16 })),
      collect(chunked.generate(ids, { maxTokens: 16, temperature: 0.9, topP: 0.9, seed: 3 })),
    ]);
    await Promise.all(batch);
    expect(bits(score.logProbs).equals(bits(scoreAlone.logProbs))).toBe(true);
    expect(greedy).toEqual(greedyAlone);
    expect(sampled).toEqual(sampledAlone);
  });
});

describe("the attacker's view (prompt stealing through routing)", () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(dirs.ties, { maxSequences: 8, tokensPerStep: 16 });
  });
  afterAll(() => model.dispose());

  // The attacker sends probes; the victim's secret prompt either runs beside them or does not run at all.
  const policies: [string, PolicyOption][] = [
    ['top-k:2', 'top-k:2'],
    ['top-k:1', 'top-k:1'],
    ['top-p:0.5', 'top-p:0.5'],
    ['top-p:0.9+norm', 'top-p:0.9+norm'],
    ['threshold:0.3', 'threshold:0.3'],
    ['top-p 0.5 with 2 to 3 experts', { kind: 'top-p', p: 0.5, minExperts: 2, maxExperts: 3 }],
    ['a policy per layer', ['top-k:1', 'top-p:0.6']],
  ];
  it.each(policies)(
    "under %s the attacker's outputs are the same bits with and without a victim",
    async (_name, policy) => {
      const vocab = model.spec.vocab;
      const probes = [prompt(1, 6, vocab), prompt(2, 1, vocab), prompt(3, 9, vocab)];
      const secret = prompt(99, 14, vocab);
      const attack = () =>
        Promise.all(
          probes.map(async (probe) => {
            const [forward, generated] = await Promise.all([
              model.forward(probe, { policy, stats: true }),
              collect(model.generate(probe, { maxTokens: 6, policy })),
            ]);
            return { logits: bits(forward.logits), stats: forward.stats, generated };
          }),
        );
      const withoutVictim = await attack();
      for (const victimPolicy of [policy, 'top-k:4' as PolicyOption]) {
        const victim = Promise.all([
          model.forward(secret, { policy: victimPolicy }),
          collect(model.generate(secret, { maxTokens: 8, policy: victimPolicy })),
        ]);
        const { result: withVictim, largestStep } = await observingBatches(model, attack());
        await victim;
        expect(largestStep).toBeGreaterThan(1);
        withVictim.forEach((probe, i) => {
          expect(probe.logits.equals(withoutVictim[i].logits)).toBe(true);
          expect(probe.stats).toEqual(withoutVictim[i].stats);
          expect(probe.generated).toEqual(withoutVictim[i].generated);
        });
      }
    },
  );
});

describe('every CPU kernel family', () => {
  const isas = cpuInfo().supportedIsas;
  const active = cpuInfo().isa;
  afterAll(() => setCpuIsa(active));

  it.each(isas.map((isa) => [isa] as [CpuIsa]))('%s: batched steps keep the bits of lone ones', async (isa) => {
    setCpuIsa(isa);
    const alone = await loadModel(dirs.qwen, { maxSequences: 1 });
    const batched = await loadModel(dirs.qwen, { maxSequences: 16, tokensPerStep: 7 });
    try {
      const vocab = alone.spec.vocab;
      const requests = Array.from({ length: 8 }, (_, i) => prompt(40 + i, 2 + i * 3, vocab));
      const lone: { logits: Float32Array }[] = [];
      for (const ids of requests) lone.push(await alone.forward(ids));
      const together = await Promise.all(requests.map((ids) => batched.forward(ids)));
      together.forEach((result, i) => expect(bits(result.logits).equals(bits(lone[i].logits))).toBe(true));
    } finally {
      alone.dispose();
      batched.dispose();
    }
  });
});
