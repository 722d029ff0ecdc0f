// Whole models: every architecture's native forward against the float64 reference, from safetensors and GGUF.
import * as path from 'path';
import { cpuInfo, loadModel } from '../lib';
import { setCpuIsa } from '../lib/backend/internals';
import { maxRelativeError } from './reference/layer';
import { refModelForward } from './reference/model';
import { ARCHITECTURES, asGgufModel, GGUF_ARCHITECTURES, makeTinyModel, tempDir, writeGgufCheckpoint, writeHfCheckpoint } from './model-fixtures';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11];

let temp: ReturnType<typeof tempDir>;
beforeAll(() => {
  temp = tempDir('dynamoe-models-');
});
afterAll(() => temp.cleanup());

describe.each(ARCHITECTURES)('%s', (arch) => {
  const model = makeTinyModel(arch, 7);
  const reference = refModelForward(model, TOKENS);

  test('f32 safetensors logits match the float64 reference (max rel. error <= 1e-4)', async () => {
    const dir = path.join(temp.dir, `${arch}-hf`);
    await writeHfCheckpoint(dir, model, 'f32');
    const loaded = await loadModel(dir);
    try {
      expect(loaded.info.architecture).toBe(arch);
      const { logits, stats } = await loaded.forward(TOKENS, { stats: true });
      expect(logits.length).toBe(TOKENS.length * model.vocab);
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
      // The experts each token used, layer by layer, are the reference's.
      expect(stats!.layers.map((l) => l.histogram.reduce((s, n, c) => s + n * c, 0))).toEqual(
        reference.counts.map((c) => c.reduce((s, n) => s + n, 0)),
      );
    } finally {
      loaded.dispose();
    }
  });

  const ggufArch = GGUF_ARCHITECTURES[arch];
  if (ggufArch) test(`GGUF (${ggufArch}) gives the same logits as safetensors`, async () => {
    const file = path.join(temp.dir, `${arch}.gguf`);
    await writeGgufCheckpoint(file, model, 'f32');
    const loaded = await loadModel(file);
    try {
      const { logits } = await loaded.forward(TOKENS);
      const expected = asGgufModel(model) === model ? reference : refModelForward(asGgufModel(model), TOKENS);
      expect(maxRelativeError(logits, expected.logits)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  });
});

// Attention sums its scores in 8-wide partial sums: a head width that is not a multiple of 8 takes the tail path.
test('qwen3-moe with head dim 12 (not a multiple of 8) matches the float64 reference', async () => {
  const model = makeTinyModel('qwen3-moe', 9, { headDim: 12 });
  const reference = refModelForward(model, TOKENS);
  const dir = path.join(temp.dir, 'qwen3-head12-hf');
  await writeHfCheckpoint(dir, model, 'f32');
  const loaded = await loadModel(dir);
  try {
    expect(loaded.info.headDim).toBe(12);
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

// The attention kernel of every instruction set this CPU runs. Head widths: one register (8), a multiple of 8 but
// not of 16 (24: AVX-512 takes the portable path), chunks of 4 + 1 registers (40), 16 registers (128), and 12 (no
// SIMD family). 21 positions: two 8-position score blocks and a tail. Decode steps after a prefill read the cache
// the prefill wrote.
const ISAS = cpuInfo().supportedIsas;
const ORIGINAL_ISA = cpuInfo().isa;
const LONG_TOKENS = [...TOKENS, 9, 81, 44, 2, 190, 66, 13, 120, 29];
const PREFILL = 13;

describe.each(ISAS.map((isa) => [isa]))('attention on the %s kernels', (isa) => {
  beforeAll(() => setCpuIsa(isa));
  afterAll(() => setCpuIsa(ORIGINAL_ISA));

  // Head dims with and without a whole number of registers, and query heads per key/value head of 1 to 8: the
  // kernels take up to 4 heads of a group at once (then 2, then 1), and one head per item in decode steps.
  test.each([
    [8, 4, 4],
    [12, 4, 4],
    [24, 4, 4],
    [40, 6, 1],
    [128, 4, 4],
    [16, 8, 1],
    [32, 6, 2],
    [128, 8, 2],
    [48, 10, 2],
  ])('head dim %d, %d heads, %d key/value heads: forward, then prefill + decode steps, match the float64 reference', async (headDim, heads, kvHeads) => {
    const model = makeTinyModel('qwen3-moe', 11, { headDim, heads, kvHeads });
    const reference = refModelForward(model, LONG_TOKENS);
    const dir = path.join(temp.dir, `qwen3-attention-${isa}-${headDim}-${heads}-${kvHeads}`);
    await writeHfCheckpoint(dir, model, 'f32');
    const loaded = await loadModel(dir);
    const session = loaded.createSession(LONG_TOKENS.length);
    try {
      expect(cpuInfo().isa).toBe(isa);
      const { logits } = await loaded.forward(LONG_TOKENS);
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
      const policies = loaded.policies(undefined);
      const stepped = [await loaded.step(session, Int32Array.from(LONG_TOKENS.slice(0, PREFILL)), policies, false, false)];
      for (const id of LONG_TOKENS.slice(PREFILL)) stepped.push(await loaded.step(session, Int32Array.of(id), policies, false, false));
      const steppedLogits = Float32Array.from(stepped.flatMap((s) => Array.from(s.logits)));
      expect(maxRelativeError(steppedLogits, reference.logits)).toBeLessThan(1e-4);
    } finally {
      session.dispose();
      loaded.dispose();
    }
  });
});

// A model hands the step scratch of ended sequences to new ones (ScratchPool): a sequence that starts on scratch
// a longer one filled, and four sequences alive at once, must each still give the reference's logits.
test('sessions that reuse ended sequences\' scratch, and sessions alive together, match the float64 reference', async () => {
  const model = makeTinyModel('qwen3-moe', 13, { headDim: 16, heads: 4, kvHeads: 2 });
  const short = [5, 77, 140, 2, 31, 250, 8];
  const expected = refModelForward(model, short).logits;
  const dir = path.join(temp.dir, 'qwen3-scratch-reuse');
  await writeHfCheckpoint(dir, model, 'f32');
  const loaded = await loadModel(dir);
  const policies = loaded.policies(undefined);
  // Prefill of all but the last token, then one decode step: the logits of every position, concatenated.
  const run = async (session: ReturnType<typeof loaded.createSession>) => {
    const prefill = await loaded.step(session, Int32Array.from(short.slice(0, -1)), policies, false, false);
    const last = await loaded.step(session, Int32Array.of(short[short.length - 1]), policies, false, false);
    return Float32Array.from([...prefill.logits, ...last.logits]);
  };
  try {
    await loaded.forward(LONG_TOKENS);  // its one-off sequence's scratch, filled for 21 tokens, goes to the pool
    for (let i = 0; i < 3; i++) {
      const session = loaded.createSession(short.length);
      try {
        expect(maxRelativeError(await run(session), expected)).toBeLessThan(1e-4);
      } finally {
        session.dispose();
      }
    }
    // Four at once (libuv runs up to four steps in parallel), twice: each needs a set of its own.
    for (let round = 0; round < 2; round++) {
      const sessions = Array.from({ length: 4 }, () => loaded.createSession(short.length));
      try {
        for (const logits of await Promise.all(sessions.map(run))) {
          expect(maxRelativeError(logits, expected)).toBeLessThan(1e-4);
        }
      } finally {
        for (const session of sessions) session.dispose();
      }
    }
  } finally {
    loaded.dispose();
  }
});
