// Whole models: every architecture's native forward against the float64 reference, from safetensors and GGUF.
import * as path from 'path';
import { loadModel } from '../lib';
import { maxRelativeError } from './reference/layer';
import { refModelForward } from './reference/model';
import { ARCHITECTURES, GGUF_ARCHITECTURES, makeTinyModel, tempDir, writeGgufCheckpoint, writeHfCheckpoint } from './model-fixtures';

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
      expect(maxRelativeError(logits, reference.logits)).toBeLessThan(1e-4);
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
