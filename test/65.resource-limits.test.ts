// A model larger than memory, or a request for an absurd context, fails before anything big is allocated, with an
// error that names the size needed; a real checkpoint whose config claims a trillion-parameter model is refused
// without reading a tensor. Smaller machines are simulated by lowering what os.totalmem() reports.
import * as fs from 'fs';
import * as path from 'path';
import { createSyntheticModel, loadModel, Model } from '../lib';
import { kvCacheBytes, weightBytes } from '../lib/model/memory-need';
import { expectRejection, expectThrow } from './helpers';
import { makeTinyModel, tempDir, writeHfCheckpoint } from './model-fixtures';

const MiB = 2 ** 20;
// The module object itself (not an import wrapper, whose getters cannot be replaced), as the library reads it.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const os = require('os') as typeof import('os');

/** Runs `body` as if this machine had `bytes` of memory. */
async function withMemory<T>(bytes: number, body: () => Promise<T> | T): Promise<T> {
  const total = jest.spyOn(os, 'totalmem').mockReturnValue(bytes);
  const constrained = jest.spyOn(process, 'constrainedMemory').mockReturnValue(0);
  try {
    return await body();
  } finally {
    total.mockRestore();
    constrained.mockRestore();
  }
}

let temp: ReturnType<typeof tempDir>;
beforeAll(() => {
  temp = tempDir('dynamoe-limits-');
});
afterAll(() => temp.cleanup());

/** Writes a tiny real checkpoint, then edits its config.json. */
async function checkpointWithConfig(name: string, edit: (config: Record<string, unknown>) => void): Promise<string> {
  const dir = path.join(temp.dir, name);
  const tiny = makeTinyModel('mixtral', 3);
  await writeHfCheckpoint(dir, tiny);
  const config = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  edit(config);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
  return dir;
}

test('the weight estimate matches what a loaded model holds within 5% (f32 and bf16; small matrices add tile padding)', async () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    const model = await createSyntheticModel({ layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64, dtype });
    const estimate = weightBytes(model.spec, dtype);
    expect(Math.abs(estimate - model.info.weightBytes) / model.info.weightBytes).toBeLessThan(0.05);
    model.dispose();
  }
});

test('a checkpoint whose config describes a model larger than memory is refused before any tensor is read', async () => {
  const dir = await checkpointWithConfig('huge', (c) => {
    Object.assign(c, { hidden_size: 16384, intermediate_size: 65536, num_local_experts: 256, num_hidden_layers: 64 });
  });
  const started = performance.now();
  await expectRejection(() => loadModel(dir), 'ERR_DYNAMOE_OUT_OF_MEMORY', /needs \d+(\.\d)? (TiB|PiB) \(\d+ bytes\), more than the/);
  expect(performance.now() - started).toBeLessThan(2000);
});

test('on a machine with 96 MiB, the 100 MB f32 demo model is refused naming its size, and a smaller bf16 model loads', async () => {
  const shape = { layers: 4, hidden: 256, heads: 8, kvHeads: 4, experts: 16, ffn: 512 } as const;
  const loaded = await withMemory(96 * MiB, async () => {
    await expectRejection(() => createSyntheticModel(shape), 'ERR_DYNAMOE_OUT_OF_MEMORY', /needs 99\.\d MiB/);
    return createSyntheticModel({ ...shape, dtype: 'bf16', layers: 1, experts: 4 });
  });
  expect(loaded.info.weightBytes).toBeLessThan(96 * MiB);
  loaded.dispose();
});

describe('a model whose config claims an absurd context (2^40 positions)', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(await checkpointWithConfig('long-context', (c) => (c.max_position_embeddings = 2 ** 40)));
  });
  afterAll(() => model?.dispose());

  test('a generation past the longest sequence dynamoe runs is refused naming the limit', () => {
    expect(model.spec.maxContext).toBe(2 ** 40);
    expectThrow(() => model.generate('hi', { maxTokens: 2 ** 30 }), 'ERR_DYNAMOE_SHAPE', /1048576 positions/);
  });

  test('on a machine with 64 MiB, the KV pool is sized to fit and a generation past it is refused naming its size', async () => {
    const positions = 500_000;
    const needed = kvCacheBytes(model.spec, positions);
    expect(needed).toBeGreaterThan(64 * MiB);
    await withMemory(64 * MiB, async () => {
      const small = await loadModel(await checkpointWithConfig('long-context-small', (c) => (c.max_position_embeddings = 2 ** 40)));
      try {
        // Half of what the weights leave of 64 MiB, at most.
        expect(kvCacheBytes(small.spec, small.info.kvPool.positions)).toBeLessThanOrEqual(32 * MiB);
        expectThrow(() => small.generate(Int32Array.of(1), { maxTokens: positions - 1 }), 'ERR_DYNAMOE_OUT_OF_MEMORY', /244.1 MiB.*KV pool holds \(\d+ positions, [\d.]+ MiB\)/);
      } finally {
        small.dispose();
      }
    });
  });

  test('on a machine with 64 MiB, a forward over 300,000 tokens is refused naming its size, and small ones run', async () => {
    await withMemory(64 * MiB, async () => {
      await expectRejection(() => model.forward(new Int32Array(300_000).fill(1)), 'ERR_DYNAMOE_OUT_OF_MEMORY', /a forward over 300000 tokens needs/);
      expect((await model.forward([1, 2, 3])).logits.length).toBe(3 * model.spec.vocab);
    });
  });
});
