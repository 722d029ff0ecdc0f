// Granite MoE as a whole model against the float64 reference: safetensors (f32, bf16) and GGUF, non-trivial
// multipliers (embedding 12, residual 0.22, attention 1/64 != 1/sqrt(16), logits / 8), tied and untied embeddings,
// attention biases, the shared MLP of granitemoeshared, prefill then decode, every CPU kernel family. Bad
// checkpoints are refused naming what is wrong.
import * as fs from 'fs';
import * as path from 'path';
import { cpuInfo, loadModel, setCpuIsa } from '../lib';
import { native } from '../lib/addon/native';
import { DynamoeError } from '../lib/errors';
import { makeTinyGranite, TinyGranite, writeGraniteGguf, writeGraniteHf } from './granite-moe-fixtures';
import { refGraniteForward } from './reference/granite-moe';
import { maxRelativeError } from './reference/layer';
import { tempDir } from './model-fixtures';
import { quantise } from './reference/dtype';
import { bits, prefillThenDecode } from './model-steps';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 9, 81, 44, 2];
const PREFILL = 6;

let temp: ReturnType<typeof tempDir>;
const model = makeTinyGranite(3);
const reference = refGraniteForward(model, TOKENS);
let hfDir: string;
let ggufFile: string;

beforeAll(async () => {
  temp = tempDir('dynamoe-granite-');
  hfDir = path.join(temp.dir, 'hf');
  ggufFile = path.join(temp.dir, 'tiny.gguf');
  await writeGraniteHf(hfDir, model, 'f32');
  await writeGraniteGguf(ggufFile, model);
});
afterAll(() => temp.cleanup());



async function logitsOf(location: string, tokens = TOKENS): Promise<Float32Array> {
  const loaded = await loadModel(location);
  try {
    return (await loaded.forward(tokens)).logits;
  } finally {
    loaded.dispose();
  }
}

test('the reference itself: each multiplier changes the logits (the tests can tell them apart)', () => {
  const variants: Array<Partial<TinyGranite>> = [
    { embeddingMultiplier: 1 }, { residualMultiplier: 1 }, { attentionMultiplier: 0.25 }, { logitsScaling: 1 },
  ];
  for (const variant of variants) {
    expect(maxRelativeError(Float32Array.from(refGraniteForward({ ...model, ...variant }, TOKENS)), reference)).toBeGreaterThan(1e-2);
  }
});

test('f32 safetensors: the spec, and logits within 1e-4 of the float64 reference', async () => {
  const loaded = await loadModel(hfDir);
  try {
    expect(loaded.info.architecture).toBe('granite-moe');
    expect(loaded.spec.multipliers).toEqual({ embedding: 12, residual: 0.22, attention: 0.015625, logitsDivisor: 8 });
    expect(loaded.spec.headDim).toBe(16);
    expect(loaded.spec.tiedEmbeddings).toBe(false);
    expect(loaded.spec.layers[0]).toMatchObject({
      kind: 'moe', experts: 4, ffn: 24, policy: { kind: 'top-k', k: 2, normalize: true }, router: { scoring: 'softmax-of-kept' },
    });
    expect(loaded.spec.layers[0]).not.toHaveProperty('shared');
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, reference)).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

test('GGUF (granitemoe) gives the reference logits and the spec of its safetensors', async () => {
  const loaded = await loadModel(ggufFile);
  const fromHf = await loadModel(hfDir);
  try {
    expect(loaded.info.architecture).toBe('granite-moe');
    expect(loaded.spec).toEqual({
      ...fromHf.spec, ropeStyle: 'pairs', rmsNormEpsilon: loaded.spec.rmsNormEpsilon,
      multipliers: { ...fromHf.spec.multipliers, residual: loaded.spec.multipliers!.residual },
    });
    // The file holds f32 scales.
    expect(loaded.spec.multipliers!.residual).toBeCloseTo(0.22, 6);
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, reference)).toBeLessThan(1e-4);
    expect(maxRelativeError(logits, (await fromHf.forward(TOKENS)).logits)).toBeLessThan(1e-5);
  } finally {
    loaded.dispose();
    fromHf.dispose();
  }
});

test('tied embeddings (the LM head is the scaled-at-lookup table, read unscaled) from both formats', async () => {
  const tied = makeTinyGranite(4, { tied: true });
  const expected = refGraniteForward(tied, TOKENS);
  const dir = path.join(temp.dir, 'tied-hf');
  const file = path.join(temp.dir, 'tied.gguf');
  await writeGraniteHf(dir, tied, 'f32');
  await writeGraniteGguf(file, tied);
  for (const location of [dir, file]) {
    const loaded = await loadModel(location);
    try {
      expect(loaded.spec.tiedEmbeddings).toBe(true);
      expect(maxRelativeError((await loaded.forward(TOKENS)).logits, expected)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  }
});

test('granitemoeshared: the shared MLP, with q/k/v/o biases, from both formats', async () => {
  const shared = makeTinyGranite(5, { sharedFfn: 40, attentionBias: true });
  const expected = refGraniteForward(shared, TOKENS);
  const withoutShared = refGraniteForward({ ...shared, layers: shared.layers.map((l) => ({ ...l, moe: { ...l.moe, shared: undefined } })) }, TOKENS);
  expect(maxRelativeError(Float32Array.from(withoutShared), expected)).toBeGreaterThan(1e-2);
  const dir = path.join(temp.dir, 'shared-hf');
  const file = path.join(temp.dir, 'shared.gguf');
  await writeGraniteHf(dir, shared, 'f32');
  await writeGraniteGguf(file, shared);
  for (const location of [dir, file]) {
    const loaded = await loadModel(location);
    try {
      expect(loaded.spec.layers[1]).toMatchObject({ kind: 'moe', shared: { ffn: 40, gated: false } });
      expect(loaded.spec.attentionBias).toBe(true);
      expect(loaded.spec.outputBias).toBe(true);
      expect(maxRelativeError((await loaded.forward(TOKENS)).logits, expected)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  }
});

test('a GGUF without attention.scale attends at 1 / sqrt(head dim), as llama.cpp does', async () => {
  const plain = makeTinyGranite(6, { plain: true });
  const file = path.join(temp.dir, 'no-scale.gguf');
  await writeGraniteGguf(file, plain, { attentionScale: false });
  const loaded = await loadModel(file);
  try {
    expect(loaded.spec.multipliers).toEqual({ embedding: 1, residual: 1, logitsDivisor: 1 });
    expect(maxRelativeError((await loaded.forward(TOKENS)).logits, refGraniteForward(plain, TOKENS))).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

test('bf16 safetensors match the reference of the rounded weights', async () => {
  const rounded: TinyGranite = {
    ...model,
    embed: quantise(model.embed, 'bf16'),
    lmHead: quantise(model.lmHead!, 'bf16'),
    layers: model.layers.map((l) => ({
      ...l, q: quantise(l.q, 'bf16'), k: quantise(l.k, 'bf16'), v: quantise(l.v, 'bf16'), o: quantise(l.o, 'bf16'),
      moe: {
        ...l.moe, router: quantise(l.moe.router, 'bf16'), inputLinear: quantise(l.moe.inputLinear, 'bf16'),
        outputLinear: quantise(l.moe.outputLinear, 'bf16'),
      },
    })),
  };
  const dir = path.join(temp.dir, 'bf16-hf');
  await writeGraniteHf(dir, model, 'bf16');
  expect(maxRelativeError(await logitsOf(dir), refGraniteForward(rounded, TOKENS))).toBeLessThan(2e-2);
});

const ORIGINAL_ISA = cpuInfo().isa;
describe.each(cpuInfo().supportedIsas.map((isa) => [isa]))('on the %s kernels', (isa) => {
  beforeAll(() => setCpuIsa(isa));
  afterAll(() => setCpuIsa(ORIGINAL_ISA));

  test('forward, and prefill then decode steps, match the reference from both formats', async () => {
    for (const location of [hfDir, ggufFile]) {
      const loaded = await loadModel(location);
      try {
        const oneShot = (await loaded.forward(TOKENS)).logits;
        expect(maxRelativeError(oneShot, reference)).toBeLessThan(1e-4);
        const steps = await prefillThenDecode(loaded, TOKENS, PREFILL);
        expect(maxRelativeError(steps, reference)).toBeLessThan(1e-4);
        expect(maxRelativeError(steps, oneShot)).toBeLessThan(1e-5);
      } finally {
        loaded.dispose();
      }
    }
  });
});

test('a forward has the same bits alone and batched with other requests', async () => {
  const alone = await loadModel(hfDir, { maxSequences: 1 });
  const batched = await loadModel(hfDir, { maxSequences: 8, tokensPerStep: 5 });
  try {
    const expected = await alone.forward(TOKENS);
    const others = Array.from({ length: 4 }, (_, i) => batched.forward(TOKENS.slice(i, i + 5 + i).map((t) => (t * (i + 3)) % 269)));
    const result = await batched.forward(TOKENS);
    await Promise.all(others);
    expect(bits(result.logits).equals(bits(expected.logits))).toBe(true);
  } finally {
    alone.dispose();
    batched.dispose();
  }
});

test('the graph refuses a scale that is not a positive finite number on add, embedding, attention and logits nodes', async () => {
  const graph = new (native().ModelGraph)({ bufferWidths: [8, 8, 8, 8], vocab: 4, kvWidths: [8], moeExperts: [], dtype: 'f32', kvPoolTokens: 64 });
  try {
    const nodes = [
      { op: 'add', a: 0, b: 1, output: 0, width: 8 },
      { op: 'embedding', hidden: 8, output: 0, weight: new Float32Array(32) },
      { op: 'attention', query: 0, key: 1, value: 2, output: 3, heads: 2, kvHeads: 2, headDim: 4, slot: 0 },
      { op: 'logits', input: 0, hidden: 8, weight: new Float32Array(32) },
    ];
    for (const node of nodes) {
      for (const scale of [0, -1, NaN, Infinity, 1e39]) {
        // The node is checked as it is read, before any promise: a synchronous throw.
        expect(() => graph.addNode({ ...node, scale } as never)).toThrow(/scale must be a (positive )?finite number/);
      }
    }
  } finally {
    graph.dispose();
  }
});

describe('bad checkpoints', () => {
  async function configError(change: (c: Record<string, unknown>) => void): Promise<{ code?: string; message: string }> {
    const dir = fs.mkdtempSync(path.join(temp.dir, 'bad-'));
    fs.cpSync(hfDir, dir, { recursive: true });
    const file = path.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    change(config);
    fs.writeFileSync(file, JSON.stringify(config));
    try {
      (await loadModel(dir)).dispose();
      return { message: 'loaded' };
    } catch (error) {
      return { code: (error as DynamoeError).code, message: (error as Error).message };
    }
  }

  test('a multiplier that is not a positive number is refused, naming it', async () => {
    for (const key of ['embedding_multiplier', 'residual_multiplier', 'attention_multiplier', 'logits_scaling']) {
      const r = await configError((c) => (c[key] = 0));
      expect(r.code).toBe('ERR_DYNAMOE_FORMAT');
      expect(r.message).toContain(key);
    }
  });

  test('an activation other than silu is refused', async () => {
    const r = await configError((c) => (c.hidden_act = 'gelu'));
    expect(r.code).toBe('ERR_DYNAMOE_UNSUPPORTED');
    expect(r.message).toContain('hidden_act');
  });

  test('a missing or misshapen fused expert tensor is named, from either format', async () => {
    const dir = fs.mkdtempSync(path.join(temp.dir, 'missing-'));
    await writeGraniteHf(dir, model, 'f32', ['model.layers.1.block_sparse_moe.input_linear.weight']);
    await expect(loadModel(dir)).rejects.toMatchObject({
      code: 'ERR_DYNAMOE_FORMAT', message: expect.stringContaining('model.layers.1.block_sparse_moe.input_linear.weight'),
    });
    const r = await configError((c) => (c.intermediate_size = 20));
    expect(r.code).toBe('ERR_DYNAMOE_FORMAT');
    expect(r.message).toContain('block_sparse_moe.input_linear.weight');
    const file = path.join(dir, 'missing.gguf');
    await writeGraniteGguf(file, model, { omit: ['blk.0.ffn_up_exps.weight'] });
    await expect(loadModel(file)).rejects.toMatchObject({ code: 'ERR_DYNAMOE_FORMAT', message: expect.stringContaining('blk.0.ffn_up_exps.weight') });
  });

  test('a GGUF with a zero embedding, residual or logit scale is refused', async () => {
    for (const key of ['granitemoe.embedding_scale', 'granitemoe.residual_scale', 'granitemoe.logit_scale']) {
      const file = path.join(temp.dir, 'zero-scale.gguf');
      const zeroed = { ...model, [key.endsWith('embedding_scale') ? 'embeddingMultiplier' : key.endsWith('residual_scale') ? 'residualMultiplier' : 'logitsScaling']: 0 };
      await writeGraniteGguf(file, zeroed);
      await expect(loadModel(file)).rejects.toMatchObject({ code: 'ERR_DYNAMOE_UNSUPPORTED', message: expect.stringContaining(key) });
    }
  });

  test('a GGUF that switches RoPE off (Granite reads rope.scaling.finetuned so) is refused; switched on, it loads', async () => {
    const key = 'granitemoe.rope.scaling.finetuned';
    const off = path.join(temp.dir, 'rope-off.gguf');
    await writeGraniteGguf(off, model, { extra: [[key, { type: 'bool', value: false }]] });
    await expect(loadModel(off)).rejects.toMatchObject({ code: 'ERR_DYNAMOE_UNSUPPORTED', message: expect.stringContaining(key) });
    const on = path.join(temp.dir, 'rope-on.gguf');
    await writeGraniteGguf(on, model, { extra: [[key, { type: 'bool', value: true }]] });
    expect(maxRelativeError(await logitsOf(on), reference)).toBeLessThan(1e-4);
  });
});
