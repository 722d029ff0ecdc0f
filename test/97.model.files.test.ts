// Loading checkpoints: dtypes, shards, and bad files that must fail with the file and tensor named.
import * as fs from 'fs';
import * as path from 'path';
import { backendInfo, loadModel } from '../lib';
import { writeGguf } from '../lib/formats/gguf';
import { openGguf } from '../lib/formats/gguf';
import { maxRelativeError } from './reference/layer';
import { refModelForward } from './reference/model';
import { makeTinyModel, tempDir, writeGgufCheckpoint, writeHfCheckpoint } from './model-fixtures';

const TOKENS = [1, 100, 7, 200, 31, 4];

let temp: ReturnType<typeof tempDir>;
beforeAll(() => {
  temp = tempDir('dynamoe-files-');
});
afterAll(() => temp.cleanup());

async function logitsOf(location: string, options: Parameters<typeof loadModel>[1] = {}) {
  const model = await loadModel(location, options);
  try {
    return { dtype: model.dtype, logits: (await model.forward(TOKENS)).logits };
  } finally {
    model.dispose();
  }
}

describe.each(['bf16', 'f16'] as const)('%s checkpoints', (dtype) => {
  test('safetensors and GGUF give identical logits, close to the f32 reference', async () => {
    const model = makeTinyModel('qwen2-moe', 5);
    const dir = path.join(temp.dir, `qwen2-${dtype}`);
    const file = path.join(temp.dir, `qwen2-${dtype}.gguf`);
    await writeHfCheckpoint(dir, model, dtype);
    await writeGgufCheckpoint(file, model, dtype);
    const fromHf = await logitsOf(dir);
    const fromGguf = await logitsOf(file);
    expect(fromHf.dtype).toBe(dtype);
    expect(fromGguf.dtype).toBe(dtype);
    expect(fromGguf.logits).toEqual(fromHf.logits);
    // 16-bit weights: about 3 significant digits per weight, a few layers deep.
    expect(maxRelativeError(fromHf.logits, refModelForward(model, TOKENS).logits)).toBeLessThan(dtype === 'bf16' ? 0.05 : 0.01);
  });
});

test('a sharded checkpoint (index + several files) loads like a single file', async () => {
  const model = makeTinyModel('olmoe', 9);
  const single = path.join(temp.dir, 'olmoe-single');
  const sharded = path.join(temp.dir, 'olmoe-sharded');
  await writeHfCheckpoint(single, model, 'f32');
  await writeHfCheckpoint(sharded, model, 'f32', 64 * 1024);
  expect(fs.readdirSync(sharded).filter((f) => f.endsWith('.safetensors')).length).toBeGreaterThan(2);
  expect(fs.existsSync(path.join(sharded, 'model.safetensors.index.json'))).toBe(true);
  expect((await logitsOf(sharded)).logits).toEqual((await logitsOf(single)).logits);
});

test('dtype can be chosen at load: f32 weights packed as bf16', async () => {
  const dir = path.join(temp.dir, 'mixtral-f32');
  await writeHfCheckpoint(dir, makeTinyModel('mixtral', 2), 'f32');
  const asBf16 = await logitsOf(dir, { dtype: 'bf16' });
  const asF32 = await logitsOf(dir);
  expect(asBf16.dtype).toBe('bf16');
  expect(maxRelativeError(asBf16.logits, asF32.logits)).toBeLessThan(0.05);
  expect(asBf16.logits).not.toEqual(asF32.logits);
});

describe('bad checkpoints fail with a coded error naming the file and what is wrong', () => {
  const base = makeTinyModel('mixtral', 4);
  const write = async (name: string, edit: (dir: string) => void) => {
    const dir = path.join(temp.dir, name);
    await writeHfCheckpoint(dir, base, 'f32');
    edit(dir);
    return dir;
  };
  const editConfig = (dir: string, change: (c: Record<string, unknown>) => void) => {
    const file = path.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(file, 'utf8'));
    change(config);
    fs.writeFileSync(file, JSON.stringify(config));
  };

  test.each([
    ['missing path', async () => path.join(temp.dir, 'nope'), 'ERR_DYNAMOE_IO', 'nope'],
    ['no config.json', async () => write('no-config', (d) => fs.rmSync(path.join(d, 'config.json'))), 'ERR_DYNAMOE_IO', 'config.json'],
    ['config.json not JSON', async () => write('bad-json', (d) => fs.writeFileSync(path.join(d, 'config.json'), '{oops')), 'ERR_DYNAMOE_FORMAT', 'config.json'],
    ['unsupported architecture', async () => write('bert', (d) => editConfig(d, (c) => (c.model_type = 'bert'))), 'ERR_DYNAMOE_UNSUPPORTED', 'bert'],
    ['missing config key', async () => write('no-experts', (d) => editConfig(d, (c) => delete c.num_local_experts)), 'ERR_DYNAMOE_FORMAT', 'num_local_experts'],
    ['rope scaling', async () => write('rope-scaling', (d) => editConfig(d, (c) => (c.rope_scaling = { type: 'linear', factor: 4 }))), 'ERR_DYNAMOE_UNSUPPORTED', 'rope_scaling'],
    ['shape not matching the config', async () => write('wrong-ffn', (d) => editConfig(d, (c) => (c.intermediate_size = 64))), 'ERR_DYNAMOE_FORMAT', "block_sparse_moe.experts.0.w1.weight' has shape [48, 64]"],
    ['more layers than tensors', async () => write('missing-layer', (d) => editConfig(d, (c) => (c.num_hidden_layers = 3))), 'ERR_DYNAMOE_FORMAT', 'model.layers.2.'],
    ['truncated safetensors', async () => write('truncated', (d) => {
      const file = path.join(d, 'model.safetensors');
      fs.truncateSync(file, fs.statSync(file).size - 100);
    }), 'ERR_DYNAMOE_FORMAT', 'model.safetensors'],
  ])('%s', async (_name, make, code, fragment) => {
    const location = await make();
    const error = await loadModel(location).then(() => null, (e: unknown) => e as { code: string; message: string });
    expect(error).not.toBeNull();
    expect(error!.code).toBe(code);
    expect(error!.message).toContain(fragment);
  });

  test('a GGUF with a quantized tensor is refused naming the type; an unknown architecture too', async () => {
    const file = path.join(temp.dir, 'q.gguf');
    await writeGgufCheckpoint(file, base, 'f32');
    // Rewrite one tensor's type id in place: Q8_1 (9, a type dynamoe does not run) for token_embd.weight.
    const gguf = await openGguf(file);
    const info = gguf.tensors.get('token_embd.weight')!;
    await gguf.close();
    expect(info.dtype).toBe('f32');
    const bytes = fs.readFileSync(file);
    const name = Buffer.from('token_embd.weight');
    const at = bytes.indexOf(name) + name.length; // then u32 n_dims, u64 ne[n_dims], u32 type
    const nDims = bytes.readUInt32LE(at);
    bytes.writeUInt32LE(9, at + 4 + 8 * nDims);
    fs.writeFileSync(file, bytes);
    await expect(loadModel(file)).rejects.toMatchObject({ code: 'ERR_DYNAMOE_UNSUPPORTED', message: expect.stringContaining('Q8_1') });

    const other = path.join(temp.dir, 'gpt2.gguf');
    await writeGguf(other, { metadata: [['general.architecture', { type: 'string', value: 'gpt2' }]], tensors: [] });
    await expect(loadModel(other)).rejects.toMatchObject({ code: 'ERR_DYNAMOE_UNSUPPORTED', message: expect.stringContaining("'gpt2'") });
  });

  test("device 'cuda' without the CUDA build, and bad options", async () => {
    const dir = path.join(temp.dir, 'mixtral-f32');
    if (backendInfo().backend !== 'cuda') {
      await expect(loadModel(dir, { device: 'cuda' })).rejects.toMatchObject({ code: 'ERR_DYNAMOE_DEVICE' });
    }
    await expect(loadModel(dir, { dtype: 'f8' as 'f32' })).rejects.toMatchObject({ code: 'ERR_DYNAMOE_DTYPE' });
    await expect(loadModel('')).rejects.toMatchObject({ code: 'ERR_DYNAMOE_TYPE' });
    await expect(loadModel(dir, { policy: 'top-k:9' })).rejects.toMatchObject({ code: 'ERR_DYNAMOE_POLICY' });
  });
});
