// Many calls at once on one model and on several give exactly the bits the same calls give one at a time; worker
// threads each load the addon and agree with the main thread; an abort in a crowd leaves every other call and the
// model intact; and the event loop keeps ticking (p99 delay measured) while a model loads and others generate.
import { monitorEventLoopDelay } from 'perf_hooks';
import * as path from 'path';
import { Worker } from 'worker_threads';
import { createSyntheticModel, Generation, loadModel, Model } from '../lib';
import { makeTinyModel, tempDir, writeHfCheckpoint } from './model-fixtures';

const SHAPE = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64 };
// Generous: the test machine has 2 cores shared with another jest worker; blocking work would show as seconds.
const P99_LIMIT_MS = 150;

jest.setTimeout(120_000);

/** The work one caller asks of a model: a forward, a score or a seeded sampled generation, each with a policy. */
type Job = { kind: 'forward' | 'score' | 'generate'; tokens: number[]; policy: string; seed: number };

function jobs(count: number, vocab: number): Job[] {
  const policies = ['top-k:1', 'top-k:2', 'top-p:0.4', 'threshold:0.2', 'top-k:1,top-p:0.8'];
  const kinds: Job['kind'][] = ['forward', 'score', 'generate'];
  return Array.from({ length: count }, (_, i) => ({
    kind: kinds[i % kinds.length],
    tokens: Array.from({ length: 3 + ((i * 7) % 29) }, (_, t) => (i * 131 + t * 17) % vocab),
    policy: policies[i % policies.length],
    seed: i,
  }));
}

async function collect(generation: Generation): Promise<number[]> {
  const ids: number[] = [];
  for await (const token of generation) ids.push(token.id);
  return ids;
}

/** A job's whole result as bytes/ids, so two runs compare exactly. */
async function run(model: Model, job: Job): Promise<unknown> {
  if (job.kind === 'forward') {
    const { logits, stats } = await model.forward(job.tokens, { policy: job.policy, stats: true });
    return { logits: Buffer.from(logits.buffer).toString('base64'), pairs: stats!.layers.map((l) => l.expertLoad) };
  }
  if (job.kind === 'score') {
    const { logProbs, stats } = await model.score(job.tokens, { policy: job.policy, stats: true });
    return { logProbs: Array.from(logProbs), experts: stats!.expertsPerToken };
  }
  const generation = model.generate(Int32Array.from(job.tokens), {
    maxTokens: 6,
    temperature: 1.2,
    topK: 40,
    seed: job.seed,
    policy: job.policy,
  });
  return { ids: await collect(generation), experts: generation.stats!.expertsPerToken };
}

async function sequential(model: Model, work: Job[]): Promise<unknown[]> {
  const out: unknown[] = [];
  for (const job of work) out.push(await run(model, job));
  return out;
}

describe('concurrency', () => {
  let a: Model;
  let b: Model;

  beforeAll(async () => {
    [a, b] = await Promise.all([createSyntheticModel({ ...SHAPE, seed: 1 }), createSyntheticModel({ ...SHAPE, seed: 2, dtype: 'bf16' })]);
  });
  afterAll(() => {
    a?.dispose();
    b?.dispose();
  });

  it('24 mixed concurrent calls (forward, score, generate, 5 policies) on one model equal the sequential results', async () => {
    const work = jobs(24, a.spec.vocab);
    const expected = await sequential(a, work);
    const concurrent = await Promise.all(work.map((job) => run(a, job)));
    expect(concurrent).toEqual(expected);
  });

  it('calls spread over two models (f32 and bf16) at once equal the sequential results per model', async () => {
    const work = jobs(16, a.spec.vocab);
    const expectedA = await sequential(a, work);
    const expectedB = await sequential(b, work);
    const [gotA, gotB] = await Promise.all([
      Promise.all(work.map((job) => run(a, job))),
      Promise.all(work.map((job) => run(b, job))),
    ]);
    expect(gotA).toEqual(expectedA);
    expect(gotB).toEqual(expectedB);
    expect(gotA).not.toEqual(gotB);
  });

  it('aborting one generation among many leaves the others bit-identical and the model usable', async () => {
    const work = jobs(9, a.spec.vocab).map((job) => ({ ...job, kind: 'generate' as const }));
    const expected = await sequential(a, work);
    const controller = new AbortController();
    const aborted = (async () => {
      let seen = 0;
      for await (const _ of a.generate('abort me please', { maxTokens: 60, signal: controller.signal })) {
        if (++seen === 2) controller.abort();
      }
    })();
    const others = Promise.all(work.map((job) => run(a, job)));
    await expect(aborted).rejects.toMatchObject({ code: 'ERR_DYNAMOE_ABORTED' });
    expect(await others).toEqual(expected);
    expect(await run(a, work[0])).toEqual(expected[0]);
  });

  it('three worker threads each load the addon and a model and get the main thread\'s bits', async () => {
    const main = await createSyntheticModel({ ...SHAPE, seed: 5 });
    const tokens = [1, 5, 9, 13, 200, 7];
    const expected = Buffer.from((await main.forward(tokens, { policy: 'top-p:0.5' })).logits.buffer).toString('base64');
    main.dispose();
    const library = path.join(__dirname, '..', 'dist', 'lib');
    const source = `
      const { parentPort, workerData } = require('worker_threads');
      const { createSyntheticModel } = require(workerData.library);
      (async () => {
        const model = await createSyntheticModel(workerData.shape);
        const { logits } = await model.forward(workerData.tokens, { policy: 'top-p:0.5' });
        model.dispose();
        parentPort.postMessage(Buffer.from(logits.buffer).toString('base64'));
      })().catch((error) => parentPort.postMessage('error: ' + error.message));`;
    const results = await Promise.all(
      [0, 1, 2].map(
        () =>
          new Promise<string>((resolve, reject) => {
            const worker = new Worker(source, { eval: true, workerData: { library, shape: { ...SHAPE, seed: 5 }, tokens } });
            worker.once('message', (message: string) => {
              resolve(message);
              void worker.terminate();
            });
            worker.once('error', reject);
          }),
      ),
    );
    expect(results).toEqual([expected, expected, expected]);
  });

  it('the event loop keeps ticking while a checkpoint loads and forwards and generations run (p99 delay measured)', async () => {
    // Synthetic weights are drawn in JS on the main thread, so the heavy models are made before measuring; the
    // measured window loads a real checkpoint file (async reads, packing on a worker) and runs native work.
    const heavy = await Promise.all([
      createSyntheticModel({ layers: 2, hidden: 128, heads: 4, kvHeads: 2, experts: 8, ffn: 128, seed: 8 }),
      createSyntheticModel({ layers: 2, hidden: 128, heads: 4, kvHeads: 2, experts: 8, ffn: 128, seed: 9, dtype: 'bf16' }),
    ]);
    const { dir, cleanup } = tempDir('dynamoe-event-loop-');
    try {
      await writeHfCheckpoint(dir, makeTinyModel('qwen3-moe', 3), 'bf16');
      const histogram = monitorEventLoopDelay({ resolution: 10 });
      histogram.enable();
      const started = performance.now();
      const long = Array.from({ length: 1024 }, (_, i) => (i * 13) % heavy[0].spec.vocab);
      const [loaded] = await Promise.all([
        loadModel(dir),
        // Two forwards per model: with one, the window measured 96-129 ms, too close to the 100 ms it must exceed.
        ...heavy.flatMap((m) => [m.forward(long), m.forward(long)]),
        ...Array.from({ length: 8 }, (_, i) => collect(heavy[i % 2].generate(`prompt number ${i}`, { maxTokens: 16 }))),
      ]);
      await collect((loaded as Model).generate('and the loaded one', { maxTokens: 8 }));
      // A fast CPU got through all that in 89 ms once: more forwards until the window is long enough to measure.
      for (let round = 0; performance.now() - started < 200 && round < 50; round++) {
        await Promise.all(heavy.map((m) => m.forward(long)));
      }
      const elapsed = performance.now() - started;
      histogram.disable();
      (loaded as Model).dispose();
      const p99 = histogram.percentile(99) / 1e6;
      const max = histogram.max / 1e6;
      console.log(`event loop over ${elapsed.toFixed(0)} ms of loading, forwards and generation: p99 ${p99.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
      expect(elapsed).toBeGreaterThan(100); // enough work to measure
      expect(p99).toBeLessThan(P99_LIMIT_MS);
    } finally {
      heavy.forEach((m) => m.dispose());
      cleanup();
    }
  });
});
