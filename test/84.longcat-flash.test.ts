// LongCat-Flash: shortcut-connected double layers (two MLA attentions with their own KV slots, two dense MLPs, the
// MoE block fed after the first attention and added after the second MLP) and identity zero-computation experts,
// against a float64 reference of HF's modeling_longcat_flash.py: logits, routing statistics, prefill + decode,
// dynamic policies, the cache's size, and configs that are refused.
import { spawnSync } from 'child_process';
import * as path from 'path';
import { loadModel, Model, parsePolicy } from '../lib';
import { DynamoeError } from '../lib/errors';
import { architectureForHfConfig } from '../lib/model/architectures';
import { ConfigReader } from '../lib/model/config-reader';
import { kvCacheBytes, weightBytes } from '../lib/model/memory-need';
import { maxRelativeError } from './reference/layer';
import { refLongcatForward } from './reference/longcat-model';
import { makeTinyLongcat, writeLongcatHf } from './longcat-fixtures';
import { tempDir } from './model-fixtures';
import { bits, prefillThenDecode } from './model-steps';

const TOKENS = [1, 17, 200, 33, 5, 250, 90, 7, 64, 3, 128, 11];
// 37 positions: past one 32-position KV block.
const LONG_TOKENS = Array.from({ length: 37 }, (_, i) => 1 + ((i * 104729 + 13) % 270));

const model = makeTinyLongcat(7);
let temp: ReturnType<typeof tempDir>;
let dir: string;
beforeAll(async () => {
  temp = tempDir('dynamoe-longcat-');
  dir = path.join(temp.dir, 'longcat-hf');
  await writeLongcatHf(dir, model);
});
afterAll(() => temp.cleanup());


const sum = (a: Int32Array) => a.reduce((s, n) => s + n, 0);

async function expectCode(promise: Promise<unknown>, code: string, mention: string): Promise<void> {
  const error = await promise.then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DynamoeError);
  expect((error as DynamoeError).code).toBe(code);
  expect((error as Error).message).toContain(mention);
}

test('config.json reads as shortcut-connected MoE layers with identity zero experts and the family router', () => {
  const spec = architectureForHfConfig(ConfigReader.fromJson(model.config, 'config.json')).fromHfConfig(
    ConfigReader.fromJson(model.config, 'config.json'),
  );
  expect(spec.architecture).toBe('longcat-flash');
  expect(spec.layers).toHaveLength(2);
  expect(spec.shortcutMoe).toEqual({ denseFfn: 48 });
  expect(spec.mla).toEqual({
    qLoraRank: 32, kvLoraRank: 24, nopeDim: 16, ropeDim: 8, valueDim: 12,
    loraScales: { query: Math.sqrt(2), latent: Math.sqrt(64 / 24) },
  });
  for (const layer of spec.layers) {
    expect(layer).toEqual({
      kind: 'moe', experts: 8, ffn: 32, policy: { kind: 'top-k', k: 3 },
      router: { scoring: 'softmax', selectionBias: true, scale: 3 },
      zeroExperts: { count: 4, kind: 'identity' },
    });
  }
  // Checkpoints whose config.json names only the class are recognised too.
  const { model_type: _type, ...unnamed } = model.config;
  expect(architectureForHfConfig(ConfigReader.fromJson(unnamed, 'config.json')).name).toBe('longcat-flash');
});

test('f32 safetensors: logits match the float64 reference, and zero experts take some of the k slots', async () => {
  const reference = refLongcatForward(model, TOKENS);
  const loaded = await loadModel(dir);
  try {
    expect(loaded.info.architecture).toBe('longcat-flash');
    expect(loaded.info.defaultPolicy).toEqual(['top-k:3', 'top-k:3']);
    const { logits, stats } = await loaded.forward(TOKENS, { stats: true });
    expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
    const layers = stats!.layers;
    expect(layers).toHaveLength(2);
    layers.forEach((l, i) => {
      expect(l.expertsPerToken).toBe(3);
      // What the reference routed to FFN experts, the model computed.
      expect(l.ffnExpertsPerToken).toBeCloseTo(sum(reference.ffnCounts[i]) / TOKENS.length, 12);
    });
    expect(stats!.ffnExpertsPerToken).toBeLessThan(3);
    expect(stats!.ffnExpertsPerToken).toBeGreaterThan(0);
  } finally {
    loaded.dispose();
  }
});

test('bf16 safetensors load and stay near the f32 logits', async () => {
  const bf16 = path.join(temp.dir, 'longcat-bf16');
  await writeLongcatHf(bf16, model, 'bf16');
  const [a, b] = [await loadModel(dir), await loadModel(bf16)];
  try {
    const [x, y] = [await a.forward(TOKENS), await b.forward(TOKENS)];
    expect(maxRelativeError(y.logits, x.logits)).toBeLessThan(0.1);
  } finally {
    a.dispose();
    b.dispose();
  }
});

test('each of the two attentions per layer has its own cache slot: 2 x layers latent rows per position', async () => {
  const loaded = await loadModel(dir, { kvPoolTokens: 256 });
  try {
    const pool = loaded.info.kvPool;
    const perTokenPerSlot = pool.bytes / pool.positions / (2 * model.layers.length);
    expect(perTokenPerSlot).toBe((model.kvLoraRank + model.ropeDim) * 4);
    expect(kvCacheBytes(loaded.spec, pool.positions)).toBe(pool.bytes);
  } finally {
    loaded.dispose();
  }
});

test('prefill then one-token decode steps equal the one-shot forward and the reference', async () => {
  const reference = refLongcatForward(model, LONG_TOKENS);
  const loaded = await loadModel(dir);
  try {
    const { logits } = await loaded.forward(LONG_TOKENS);
    expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
    const prefill = 30;
    const steppedLogits = await prefillThenDecode(loaded, LONG_TOKENS, prefill);
    expect(maxRelativeError(steppedLogits, reference.logits)).toBeLessThan(1e-4);
    expect(bits(steppedLogits.subarray(prefill * model.vocab)).equals(bits(logits.subarray(prefill * model.vocab)))).toBe(true);
  } finally {
    loaded.dispose();
  }
});

test('dynamic policies: top-p:0.5 over FFN and zero experts matches the reference', async () => {
  const policy = parsePolicy('top-p:0.5');
  const reference = refLongcatForward(model, TOKENS, policy as never);
  const loaded = await loadModel(dir);
  try {
    const { logits, stats } = await loaded.forward(TOKENS, { policy, stats: true });
    expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
    stats!.layers.forEach((l, i) => {
      expect(l.expertsPerToken).toBeCloseTo(sum(reference.counts[i]) / TOKENS.length, 12);
      expect(l.ffnExpertsPerToken).toBeCloseTo(sum(reference.ffnCounts[i]) / TOKENS.length, 12);
    });
    // top-p keeps a varying number of slots: not every token the same count.
    expect(reference.counts.some((c) => new Set(c).size > 1)).toBe(true);
    // Generation runs under the dynamic policy too.
    const out: number[] = [];
    for await (const token of loaded.generate(TOKENS, { maxTokens: 4, policy })) out.push(token.id);
    expect(out.length).toBeGreaterThan(0);
  } finally {
    loaded.dispose();
  }
});

// YaRN as HF's LongCat runs it: the RoPE parts rotate by the blended table with cos/sin times the mscale ratio, and
// yarn_apply_mscale multiplies the softmax scale by mscale(factor, mscale_all_dim)^2. Positions past the original
// context, a ramp inside the 4 rotated pairs.
test.each([
  ['rope_scaling', (y: Record<string, unknown>) => ({ rope_scaling: { type: 'yarn', ...y } })],
  ['rope_parameters', (y: Record<string, unknown>) => ({ rope_theta: null, rope_parameters: { rope_type: 'yarn', rope_theta: 10000, ...y } })],
])('YaRN from %s matches the float64 reference of HF\'s YaRN', async (key, change) => {
  const yarn = { factor: 8, originalContext: 16, betaFast: 4, betaSlow: 1, mscale: 1, mscaleAllDim: 0.8 };
  const keys = { factor: 8, original_max_position_embeddings: 16, beta_fast: 4, beta_slow: 1, mscale: 1, mscale_all_dim: 0.8 };
  const scaled = { ...model, yarn };
  const reference = refLongcatForward(scaled, LONG_TOKENS);
  // The plain RoPE is not the answer: the test would pass without YaRN otherwise.
  expect(maxRelativeError(refLongcatForward(model, LONG_TOKENS).logits, reference.logits)).toBeGreaterThan(1e-2);
  const yarnDir = path.join(temp.dir, `yarn-${key}`);
  await writeLongcatHf(yarnDir, model, 'f32', (config, tensors) => (Object.assign(config, change(keys)), tensors));
  const loaded = await loadModel(yarnDir);
  try {
    expect(loaded.info.ropeScaling?.softmaxFactor).toBeCloseTo((0.1 * 0.8 * Math.log(8) + 1) ** 2, 12);
    const { logits } = await loaded.forward(LONG_TOKENS);
    expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
  } finally {
    loaded.dispose();
  }
});

test.each([
  ['rope_scaling other than YaRN', { rope_scaling: { type: 'linear', factor: 4 } }, 'linear'],
  ['a rope_parameters rope_type other than default or YaRN', { rope_parameters: { rope_type: 'linear', factor: 4, rope_theta: 10000 } }, 'linear'],
  ['a head_dim other than qk_rope_head_dim', { head_dim: 16 }, 'head_dim'],
  ['no q_lora_rank', { q_lora_rank: null }, 'q_lora_rank'],
  ['a zero_expert_type other than identity', { zero_expert_type: 'const' }, 'zero_expert_type'],
  ['attention biases', { attention_bias: true }, 'attention_bias'],
])('%s is refused', async (_name, change, mention) => {
  const bad = path.join(temp.dir, `bad-${mention}-${Object.keys(change).join('')}`);
  await writeLongcatHf(bad, model, 'f32', (config, tensors) => (Object.assign(config, change), tensors));
  await expectCode(loadModel(bad), 'ERR_DYNAMOE_UNSUPPORTED', mention);
});

test('rope_parameters with the default rope_type give the same logits as rope_theta', async () => {
  const other = path.join(temp.dir, 'rope-parameters');
  await writeLongcatHf(other, model, 'f32', (config, tensors) => {
    delete config.rope_theta;
    config.rope_parameters = { rope_type: 'default', rope_theta: 10000 };
    return tensors;
  });
  const [a, b] = [await loadModel(dir), await loadModel(other)];
  try {
    expect(bits((await b.forward(TOKENS)).logits).equals(bits((await a.forward(TOKENS)).logits))).toBe(true);
  } finally {
    a.dispose();
    b.dispose();
  }
});

test('a missing sublayer tensor names itself', async () => {
  const bad = path.join(temp.dir, 'missing-mlp');
  await writeLongcatHf(bad, model, 'f32', (_config, tensors) => tensors.filter((t) => t.name !== 'model.layers.1.mlps.1.up_proj.weight'));
  const error = await loadModel(bad).then(() => undefined, (e: unknown) => e);
  expect(error).toBeInstanceOf(DynamoeError);
  expect((error as Error).message).toContain('model.layers.1.mlps.1.up_proj.weight');
});

test('the weight estimate counts both attentions and both dense MLPs of each layer (within 12%; tiny matrices pad)', async () => {
  for (const dtype of ['f32', 'bf16'] as const) {
    const loaded = await loadModel(dir, { dtype });
    try {
      const estimate = weightBytes(loaded.spec, dtype);
      expect(Math.abs(estimate - loaded.info.weightBytes) / loaded.info.weightBytes).toBeLessThan(0.12);
    } finally {
      loaded.dispose();
    }
  }
});

test('forwards and generations are the same bits alone and batched in 5-token chunks with others', async () => {
  const bf16 = path.join(temp.dir, 'longcat-batch');
  await writeLongcatHf(bf16, makeTinyLongcat(9), 'bf16');
  const alone: Model = await loadModel(bf16, { maxSequences: 1 });
  const chunked: Model = await loadModel(bf16, { maxSequences: 16, tokensPerStep: 5 });
  try {
    const prompts = Array.from({ length: 5 }, (_, i) => Array.from({ length: 3 + i * 5 }, (_, j) => 1 + ((i * 7919 + j * 104729) % 270)));
    const lone: Float32Array[] = [];
    for (const ids of prompts) lone.push((await alone.forward(ids)).logits);
    const collect = async (m: Model, ids: number[]) => {
      const out: number[] = [];
      for await (const token of m.generate(ids, { maxTokens: 6 })) out.push(token.id);
      return out;
    };
    const greedyAlone = await collect(alone, prompts[2]);
    // The most sequences any step of `chunked` held while the batch ran: they must really share steps.
    let largestStep = 0;
    let running = true;
    const watch = (async () => {
      while (running) {
        largestStep = Math.max(largestStep, chunked.load.lastStepSequences);
        await new Promise((resolve) => setImmediate(resolve));
      }
    })();
    const together = await Promise.all([...prompts.map((ids) => chunked.forward(ids)), collect(chunked, prompts[2])]);
    running = false;
    await watch;
    expect(largestStep).toBeGreaterThan(1);
    prompts.forEach((_, i) => expect(bits((together[i] as { logits: Float32Array }).logits).equals(bits(lone[i]))).toBe(true));
    expect(together[prompts.length]).toEqual(greedyAlone);
  } finally {
    alone.dispose();
    chunked.dispose();
  }
});

test('inspect names the architecture and the shortcut-connected layer shape', () => {
  const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');
  const r = spawnSync(process.execPath, [cli, 'inspect', dir], { encoding: 'utf8', timeout: 60000 });
  expect(r.status).toBe(0);
  expect(r.stdout).toContain('longcat-flash');
  expect(r.stdout).toMatch(/shortcut-connected: 2 attentions and 2 dense MLPs \(ffn 48\)/);
  expect(r.stdout).toContain('4 identity zero-computation experts');
});
