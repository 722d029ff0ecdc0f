// gpt-oss as a whole model against the float64 reference: safetensors (f32, bf16) and GGUF, YaRN on and off, a
// sequence well past the sliding window, prefill then decode, chunked prefill, every CPU kernel family, and a
// request's bits the same alone and batched with others. Bad checkpoints are refused naming what is wrong.
import * as fs from 'fs';
import * as path from 'path';
import { cpuInfo, loadModel, Model, setCpuIsa, setQuantActivations } from '../lib';
import { DynamoeError } from '../lib/errors';
import {
  makeTinyGptOss,
  TinyGptOss,
  useHfMxfp4Experts,
  useMxfp4Experts,
  writeGptOssGguf,
  writeGptOssHf,
  writeGptOssHfMxfp4,
} from './gpt-oss-fixtures';
import { dequantizeReference } from './reference/quant-formats';
import { refGptOssForward } from './reference/gpt-oss';
import { maxRelativeError } from './reference/layer';
import { tempDir } from './model-fixtures';
import { quantise } from './reference/dtype';
import { bits, prefillThenDecode } from './model-steps';

// 21 tokens: four times the window of 5, so the window cuts on every sliding layer.
const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11, 9, 81, 44, 2, 190, 66, 13, 120, 29];
const PREFILL = 8;

let temp: ReturnType<typeof tempDir>;
const model = makeTinyGptOss(3);
const reference = refGptOssForward(model, TOKENS);
let hfDir: string;
let ggufFile: string;

// Quantized weights are held to the float64 reference of their dequantized values: the exact f32 path (the 8-bit
// activations of the default 'q8' path are held to their own reference in test 41 and test 39).
const QUANT_ACTIVATIONS = cpuInfo().quantActivations;
beforeAll(() => setQuantActivations('f32'));
afterAll(() => setQuantActivations(QUANT_ACTIVATIONS));
beforeAll(async () => {
  temp = tempDir('dynamoe-gpt-oss-');
  hfDir = path.join(temp.dir, 'hf');
  ggufFile = path.join(temp.dir, 'tiny.gguf');
  await writeGptOssHf(hfDir, model, 'f32');
});
afterAll(() => temp.cleanup());



test('the reference itself: the window and the sinks change the logits (the tests can tell them apart)', () => {
  const full: TinyGptOss = { ...model, layers: model.layers.map((l) => ({ ...l, window: 0 })) };
  expect(maxRelativeError(Float32Array.from(refGptOssForward(full, TOKENS)), reference)).toBeGreaterThan(1e-2);
  const noSinks: TinyGptOss = { ...model, layers: model.layers.map((l) => ({ ...l, sinks: new Float32Array(4).fill(-1e9) })) };
  expect(maxRelativeError(Float32Array.from(refGptOssForward(noSinks, TOKENS)), reference)).toBeGreaterThan(1e-2);
  const noYarn: TinyGptOss = { ...model, yarn: undefined };
  expect(maxRelativeError(Float32Array.from(refGptOssForward(noYarn, TOKENS)), reference)).toBeGreaterThan(1e-2);
});

test('f32 safetensors: the spec, and logits within 1e-4 of the float64 reference', async () => {
  const loaded = await loadModel(hfDir);
  try {
    expect(loaded.info.architecture).toBe('gpt-oss');
    expect(loaded.spec.attentionWindows).toEqual([5, 0, 5]);
    expect(loaded.spec.ropeScaling).toMatchObject({ kind: 'yarn', factor: 8, truncate: false });
    const moe = loaded.spec.layers[0];
    expect(moe).toMatchObject({ kind: 'moe', policy: { kind: 'top-k', k: 2, normalize: true }, router: { scoring: 'softmax-of-kept' } });
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, reference)).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

// llama.cpp's gpt-oss graph clamps at 7 whatever the model (GGUF has no key for it): GGUF tests use that clamp.
const ggufModel = makeTinyGptOss(3, { limit: 7 });

test('GGUF (gpt-oss) gives the reference logits, and the same as its safetensors', async () => {
  const expected = refGptOssForward(ggufModel, TOKENS);
  await writeGptOssGguf(ggufFile, ggufModel);
  const dir = path.join(temp.dir, 'clamp7-hf');
  await writeGptOssHf(dir, ggufModel, 'f32');
  const loaded = await loadModel(ggufFile);
  const fromHf = await loadModel(dir);
  try {
    expect(loaded.info.architecture).toBe('gpt-oss');
    expect(loaded.spec.attentionWindows).toEqual([5, 0, 5]);
    expect(loaded.spec).toEqual({ ...fromHf.spec, rmsNormEpsilon: loaded.spec.rmsNormEpsilon });
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, expected)).toBeLessThan(1e-4);
    expect(maxRelativeError(logits, (await fromHf.forward(TOKENS)).logits)).toBeLessThan(1e-5);
  } finally {
    loaded.dispose();
    fromHf.dispose();
  }
});

test('without YaRN (plain RoPE) from both formats', async () => {
  const plain = makeTinyGptOss(4, { yarn: false, limit: 7 });
  const expected = refGptOssForward(plain, TOKENS);
  const dir = path.join(temp.dir, 'plain-hf');
  const file = path.join(temp.dir, 'plain.gguf');
  await writeGptOssHf(dir, plain, 'f32');
  await writeGptOssGguf(file, plain);
  for (const location of [dir, file]) {
    const loaded = await loadModel(location);
    try {
      expect(loaded.spec.ropeScaling).toBeUndefined();
      expect(maxRelativeError((await loaded.forward(TOKENS)).logits, expected)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  }
});

test('GGUF with MXFP4 experts (as the released conversions have) matches the reference of the decoded weights', async () => {
  const quantized = makeTinyGptOss(5, { limit: 7, ffn: 64 });
  const blocks = useMxfp4Experts(quantized, 6, (bytes, rows, cols) => dequantizeReference('mxfp4', bytes, rows, cols));
  const file = path.join(temp.dir, 'mxfp4.gguf');
  await writeGptOssGguf(file, quantized, [], blocks);
  const loaded = await loadModel(file);
  try {
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, refGptOssForward(quantized, TOKENS))).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

test('safetensors with MXFP4 experts (the released checkpoints\' layout) stay MXFP4 and match the reference of the decoded weights', async () => {
  const quantized = makeTinyGptOss(7, { limit: 7, ffn: 64 });
  const experts = useHfMxfp4Experts(quantized, 8);
  const dir = path.join(temp.dir, 'mxfp4-hf');
  await writeGptOssHfMxfp4(dir, quantized, experts);
  const loaded = await loadModel(dir);
  try {
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, refGptOssForward(quantized, TOKENS))).toBeLessThan(1e-4);
    // 4.25 bits a weight: against the same weights in f32, each expert weight saves more than 3 of its 4 bytes.
    const expertValues = quantized.layers.reduce((n, l) => n + 3 * l.moe.experts * l.moe.ffn * l.moe.hidden, 0);
    const f32Dir = path.join(temp.dir, 'mxfp4-as-f32-hf');
    await writeGptOssHf(f32Dir, quantized, 'f32');
    const f32 = await loadModel(f32Dir);
    try {
      expect(f32.info.weightBytes - loaded.info.weightBytes).toBeGreaterThan(expertValues * 3);
    } finally {
      f32.dispose();
    }
  } finally {
    loaded.dispose();
  }
});

test('safetensors MXFP4 experts with a missing scales tensor are refused, naming it', async () => {
  const quantized = makeTinyGptOss(7, { limit: 7, ffn: 64 });
  const dir = path.join(temp.dir, 'mxfp4-hf-bad');
  await writeGptOssHfMxfp4(dir, quantized, useHfMxfp4Experts(quantized, 8));
  const index = path.join(dir, 'model.safetensors.index.json');
  const json = JSON.parse(fs.readFileSync(index, 'utf8'));
  delete json.weight_map['model.layers.1.mlp.experts.down_proj_scales'];
  fs.writeFileSync(index, JSON.stringify(json));
  await expect(loadModel(dir)).rejects.toMatchObject({
    code: 'ERR_DYNAMOE_FORMAT',
    message: expect.stringContaining('model.layers.1.mlp.experts.down_proj_scales'),
  });
});

test('bf16 safetensors match the reference of the bf16-rounded weights', async () => {
  const rounded: TinyGptOss = {
    ...model,
    embed: quantise(model.embed, 'bf16'),
    lmHead: quantise(model.lmHead, 'bf16'),
    layers: model.layers.map((l) => ({
      ...l, q: quantise(l.q, 'bf16'), k: quantise(l.k, 'bf16'), v: quantise(l.v, 'bf16'), o: quantise(l.o, 'bf16'),
      moe: { ...l.moe, router: quantise(l.moe.router, 'bf16'), gateUp: quantise(l.moe.gateUp, 'bf16'),
        gateUpBias: quantise(l.moe.gateUpBias, 'bf16'), down: quantise(l.moe.down, 'bf16'),
        downBias: quantise(l.moe.downBias, 'bf16') },
    })),
  };
  const dir = path.join(temp.dir, 'bf16-hf');
  await writeGptOssHf(dir, model, 'bf16');
  const loaded = await loadModel(dir, { dtype: 'f32' });
  try {
    const { logits } = await loaded.forward(TOKENS);
    expect(maxRelativeError(logits, refGptOssForward(rounded, TOKENS))).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

const ORIGINAL_ISA = cpuInfo().isa;
describe.each(cpuInfo().supportedIsas.map((isa) => [isa]))('on the %s kernels', (isa) => {
  beforeAll(() => setCpuIsa(isa));
  afterAll(() => setCpuIsa(ORIGINAL_ISA));

  test('forward, and prefill then decode steps, match the reference', async () => {
    const loaded = await loadModel(hfDir);
    try {
      expect(maxRelativeError((await loaded.forward(TOKENS)).logits, reference)).toBeLessThan(1e-4);
      expect(maxRelativeError(await prefillThenDecode(loaded, TOKENS, PREFILL), reference)).toBeLessThan(1e-4);
      // Decode from the first token on: every step's window starts inside the cache.
      expect(maxRelativeError(await prefillThenDecode(loaded, TOKENS, 1), reference)).toBeLessThan(1e-4);
    } finally {
      loaded.dispose();
    }
  });
});

describe('batching and chunking', () => {
  let alone: Model;
  let chunked: Model;
  beforeAll(async () => {
    alone = await loadModel(hfDir, { maxSequences: 1 });
    // Prompts cut in chunks of 3 tokens (chunk edges inside the window) and batched with others.
    chunked = await loadModel(hfDir, { maxSequences: 16, tokensPerStep: 3 });
  });
  afterAll(() => {
    alone.dispose();
    chunked.dispose();
  });

  test('a forward has the same bits alone and chunked, batched with 8 other requests', async () => {
    const expected = await alone.forward(TOKENS);
    expect(maxRelativeError(expected.logits, reference)).toBeLessThan(1e-4);
    const others = Array.from({ length: 8 }, (_, i) => {
      const ids = TOKENS.slice(i, i + 4 + i * 2).map((t) => (t * (i + 3)) % 269);
      return i % 2 === 0 ? chunked.forward(ids) : collect(chunked.generate(ids, { maxTokens: 6 }));
    });
    const result = await chunked.forward(TOKENS);
    await Promise.all(others);
    expect(bits(result.logits).equals(bits(expected.logits))).toBe(true);
  });

  test('greedy generation is the same alone and batched', async () => {
    const ids = TOKENS.slice(0, 9);
    const solo = await collect(alone.generate(ids, { maxTokens: 12 }));
    const neighbours = [chunked.forward(TOKENS), collect(chunked.generate(TOKENS.slice(3), { maxTokens: 10 }))];
    const batched = await collect(chunked.generate(ids, { maxTokens: 12 }));
    await Promise.all(neighbours);
    expect(batched).toEqual(solo);
  });
});

async function collect(generation: AsyncIterable<{ id: number }>): Promise<number[]> {
  const ids: number[] = [];
  for await (const token of generation) ids.push(token.id);
  return ids;
}

describe('bad checkpoints', () => {
  async function codeOf(edit: (dir: string) => void): Promise<{ code?: string; message: string }> {
    const dir = fs.mkdtempSync(path.join(temp.dir, 'bad-'));
    fs.cpSync(hfDir, dir, { recursive: true });
    edit(dir);
    try {
      (await loadModel(dir)).dispose();
      return { message: 'loaded' };
    } catch (error) {
      return { code: (error as DynamoeError).code, message: (error as Error).message };
    }
  }
  const editConfig = (dir: string, change: (c: Record<string, unknown>) => void) => {
    const file = path.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    change(config);
    fs.writeFileSync(file, JSON.stringify(config));
  };

  test('a RoPE scaling other than YaRN is refused', async () => {
    const r = await codeOf((d) => editConfig(d, (c) => (c.rope_scaling = { rope_type: 'longrope', factor: 2 })));
    expect(r.code).toBe('ERR_DYNAMOE_UNSUPPORTED');
    expect(r.message).toContain('rope_scaling');
  });

  test('a layer type that is neither sliding nor full is refused', async () => {
    const r = await codeOf((d) => editConfig(d, (c) => (c.layer_types = ['sliding_attention', 'chunked_attention', 'full_attention'])));
    expect(r.code).toBe('ERR_DYNAMOE_FORMAT');
    expect(r.message).toContain('layer_types');
  });

  test('a missing sinks, router bias or expert bias tensor is named, from either format', async () => {
    const cases: Array<[string, string]> = [
      ['model.layers.1.self_attn.sinks', 'blk.1.attn_sinks.weight'],
      ['model.layers.2.mlp.router.bias', 'blk.2.ffn_gate_inp.bias'],
      ['model.layers.0.mlp.experts.down_proj_bias', 'blk.0.ffn_down_exps.bias'],
    ];
    for (const [hfName, ggufName] of cases) {
      const dir = fs.mkdtempSync(path.join(temp.dir, 'missing-'));
      await writeGptOssHf(dir, model, 'f32', { omit: [hfName] });
      await expect(loadModel(dir)).rejects.toMatchObject({ code: 'ERR_DYNAMOE_FORMAT', message: expect.stringContaining(hfName) });
      const file = path.join(dir, 'model.gguf');
      await writeGptOssGguf(file, ggufModel, [ggufName]);
      // The GGUF spec reads biases off the tensors present: a missing sinks tensor is an error, missing biases
      // are none (llama.cpp requires them, so such a file is no gpt-oss conversion; it still loads).
      if (ggufName.includes('sinks')) {
        await expect(loadModel(file)).rejects.toMatchObject({ code: 'ERR_DYNAMOE_FORMAT', message: expect.stringContaining(ggufName) });
      }
    }
  });

  test('an expert tensor of the wrong shape is named', async () => {
    const ffn = await codeOf((d) => editConfig(d, (c) => (c.intermediate_size = 32)));
    expect(ffn.code).toBe('ERR_DYNAMOE_FORMAT');
    expect(ffn.message).toContain('mlp.experts');
  });
});
