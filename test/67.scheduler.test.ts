// The model's scheduler: requests join running steps and leave them, long prompts are prefilled in chunks, admission
// is first come first served, aborts and disposal free what requests hold, and the KV pool and queue bound the rest.
import * as path from 'path';
import { DynamoeError, loadModel, Model } from '../lib';
import { makeTinyModel, tempDir, writeHfCheckpoint } from './model-fixtures';

let temp: ReturnType<typeof tempDir>;
let dir: string;
beforeAll(async () => {
  temp = tempDir('dynamoe-scheduler-');
  dir = path.join(temp.dir, 'mixtral');
  await writeHfCheckpoint(dir, makeTinyModel('mixtral', 31), 'f32');
});
afterAll(() => temp.cleanup());

const opened: Model[] = [];
async function open(options: Parameters<typeof loadModel>[1]): Promise<Model> {
  const model = await loadModel(dir, options);
  opened.push(model);
  return model;
}
afterEach(() => {
  for (const model of opened.splice(0)) model.dispose();
});

function ids(seed: number, length: number): number[] {
  return Array.from({ length }, (_, i) => 1 + ((seed * 31 + i * 17) % 250));
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'no error';
  } catch (error) {
    expect(error).toBeInstanceOf(DynamoeError);
    return (error as DynamoeError).code;
  }
}

// Resolves once the model has run its step number `steps` (the scheduler yields to the event loop between steps).
async function untilSteps(model: Model, steps: number): Promise<void> {
  while (model.load.steps < steps) await new Promise((resolve) => setImmediate(resolve));
}

test('a generation that arrives while another decodes joins its steps and leaves when done', async () => {
  const model = await open({ maxSequences: 4 });
  const first = model.generate(ids(1, 5), { maxTokens: 30 });
  const firstTokens: number[] = [];
  let secondTokens: number[] = [];
  let sharedSteps = 0;
  for await (const token of first) {
    firstTokens.push(token.id);
    if (firstTokens.length === 3) {
      // Joins at the next step; counted while both run.
      void (async () => {
        const stepsBefore = model.load.steps;
        const second: number[] = [];
        for await (const t of model.generate(ids(2, 4), { maxTokens: 5 })) {
          second.push(t.id);
          if (model.load.lastStepSequences === 2) sharedSteps++;
        }
        secondTokens = second;
        expect(model.load.steps).toBeGreaterThan(stepsBefore);
      })();
    }
  }
  expect(sharedSteps).toBeGreaterThan(0);
  expect(secondTokens.length).toBe(5);
  expect(model.load.running).toBe(0);
  // Each got what it gets alone.
  const alone = await open({ maxSequences: 1 });
  const collect = async (prompt: number[], maxTokens: number) => {
    const out: number[] = [];
    for await (const t of alone.generate(prompt, { maxTokens })) out.push(t.id);
    return out;
  };
  expect(await collect(ids(1, 5), 30)).toEqual(firstTokens);
  expect(await collect(ids(2, 4), 5)).toEqual(secondTokens);
});

test('a long prompt is prefilled in chunks of tokensPerStep while a decode keeps one token in every step', async () => {
  const model = await open({ maxSequences: 4, tokensPerStep: 8 });
  const decoding = model.generate(ids(3, 3), { maxTokens: 20 });
  const iterator = decoding[Symbol.asyncIterator]();
  await iterator.next(); // the generation decodes now
  const stepsBefore = model.load.steps;
  const sizes: number[] = [];
  const long = model.forward(ids(4, 60));
  let done = false;
  void long.then(() => (done = true));
  while (!done) {
    sizes.push(model.load.lastStepTokens);
    await iterator.next();
  }
  await long;
  // 60 prompt tokens at most 7 per step beside the decode: at least 9 steps, none over the budget.
  expect(model.load.steps - stepsBefore).toBeGreaterThanOrEqual(9);
  expect(Math.max(...sizes)).toBeLessThanOrEqual(8);
  for (;;) if ((await iterator.next()).done) break;
});

test('admission is first come, first served', async () => {
  const model = await open({ maxSequences: 1, tokensPerStep: 4 });
  const order: string[] = [];
  await Promise.all(
    ['a', 'b', 'c', 'd'].map((name, i) => model.forward(ids(10 + i, 9 - i * 2)).then(() => order.push(name))),
  );
  expect(order).toEqual(['a', 'b', 'c', 'd']);
});

test('aborting a waiting or a running request ends it with ERR_DYNAMOE_ABORTED and frees its KV blocks', async () => {
  const model = await open({ maxSequences: 1 });
  const pool = model.info.kvPool;
  const running = new AbortController();
  const waiting = new AbortController();
  let seen = 0;
  const first = (async () => {
    for await (const token of model.generate(ids(5, 4), { maxTokens: 50, signal: running.signal })) {
      void token;
      if (++seen === 2) running.abort();
    }
  })();
  const second = (async () => {
    for await (const token of model.generate(ids(6, 4), { maxTokens: 50, signal: waiting.signal })) void token;
  })();
  waiting.abort();
  expect(await codeOf(second)).toBe('ERR_DYNAMOE_ABORTED');
  expect(await codeOf(first)).toBe('ERR_DYNAMOE_ABORTED');
  expect(seen).toBe(2);
  await untilSteps(model, model.load.steps); // the scheduler has dropped them
  await model.forward([1, 2]);
  expect(model.load.reservedBlocks).toBe(0);
  expect(model.load.running + model.load.waiting).toBe(0);
  // Every native block is back in the pool.
  expect(model.load.freeBlocks).toBe(model.load.poolBlocks);
  expect(model.load.poolBlocks * model.load.blockTokens).toBe(pool.positions);
});

test('forward and score take an AbortSignal: aborted while waiting or between chunks, or before they start', async () => {
  const model = await open({ maxSequences: 1, tokensPerStep: 4 });
  const blocker = model.forward(ids(1, 40));
  const controller = new AbortController();
  const waiting = model.score(ids(2, 20), { signal: controller.signal });
  const running = new AbortController();
  const chunked = model.forward(ids(3, 40), { signal: running.signal });
  controller.abort();
  expect(await codeOf(waiting)).toBe('ERR_DYNAMOE_ABORTED');
  await blocker;
  await untilSteps(model, model.load.steps + 2); // the chunked forward has started
  running.abort();
  expect(await codeOf(chunked)).toBe('ERR_DYNAMOE_ABORTED');
  expect(await codeOf(model.forward([1], { signal: AbortSignal.abort() }))).toBe('ERR_DYNAMOE_ABORTED');
  expect(await codeOf(model.forward([1], { signal: {} as AbortSignal }))).toBe('ERR_DYNAMOE_TYPE');
  expect(model.load.reservedBlocks).toBe(0);
});

test('a caller that stops iterating early frees the sequence', async () => {
  const model = await open({ maxSequences: 2 });
  for await (const token of model.generate(ids(7, 4), { maxTokens: 40 })) {
    void token;
    break;
  }
  await model.forward([1, 2, 3]);
  expect(model.load.running).toBe(0);
  expect(model.load.reservedBlocks).toBe(0);
  expect(model.load.freeBlocks).toBe(model.load.poolBlocks);
});

test('the KV pool bounds requests: too large fails at once, two that fit only in turn both run', async () => {
  const model = await open({ maxSequences: 4, kvPoolTokens: 64 });
  expect(model.info.kvPool.positions).toBe(64);
  expect(() => model.generate(ids(8, 10), { maxTokens: 100 })).toThrow(
    expect.objectContaining({ code: 'ERR_DYNAMOE_OUT_OF_MEMORY' }),
  );
  expect(await codeOf(model.forward(ids(8, 65)))).toBe('ERR_DYNAMOE_OUT_OF_MEMORY');
  // 40 positions each: 2 blocks of 32 each, so the second waits for the first's blocks.
  const ends: string[] = [];
  const run = async (name: string, seed: number) => {
    const tokens: number[] = [];
    for await (const t of model.generate(ids(seed, 8), { maxTokens: 32 })) tokens.push(t.id);
    ends.push(name);
    return tokens;
  };
  const [a, b] = await Promise.all([run('a', 20), run('b', 21)]);
  expect(ends).toEqual(['a', 'b']);
  expect(a.length + b.length).toBeGreaterThan(0);
  expect(model.load.reservedBlocks).toBe(0);
  expect(model.load.freeBlocks).toBe(2);
});

test('a full queue refuses with ERR_DYNAMOE_BUSY', async () => {
  const model = await open({ maxSequences: 1, maxQueue: 1 });
  const first = model.forward(ids(1, 30));
  const second = model.forward(ids(2, 30));
  expect(await codeOf(model.forward(ids(3, 30)))).toBe('ERR_DYNAMOE_BUSY');
  await Promise.all([first, second]);
});

test('disposing the model ends waiting and running requests with ERR_DYNAMOE_DISPOSED', async () => {
  // Its own model: disposed here, not by afterEach.
  const model = await loadModel(dir, { maxSequences: 1 });
  const running = (async () => {
    for await (const token of model.generate(ids(1, 4), { maxTokens: 60 })) void token;
  })();
  const waiting = model.forward(ids(2, 10));
  await untilSteps(model, 2);
  model.dispose();
  expect(await codeOf(running)).toBe('ERR_DYNAMOE_DISPOSED');
  expect(await codeOf(waiting)).toBe('ERR_DYNAMOE_DISPOSED');
  expect(await codeOf(model.forward([1]))).toBe('ERR_DYNAMOE_DISPOSED');
});

test('scheduler limits are checked', async () => {
  for (const [option, value] of [
    ['maxSequences', 0],
    ['tokensPerStep', 1.5],
    ['kvPoolTokens', -1],
    ['maxQueue', -1],
  ] as const) {
    expect(await codeOf(loadModel(dir, { [option]: value }))).toBe('ERR_DYNAMOE_VALUE');
  }
  expect(await codeOf(loadModel(dir, { maxSequences: 'many' as unknown as number }))).toBe('ERR_DYNAMOE_TYPE');
});
