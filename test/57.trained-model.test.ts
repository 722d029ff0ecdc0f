// The trained models shipped in models/ (see training/): they load, write English words, predict held-out text far
// better than chance, route as trained, and stay small enough to ship.
import * as fs from 'fs';
import * as path from 'path';
import { loadModel, Model, textWindows } from '../lib';
import { shippedHeldOutText, shippedModelDir } from '../lib/cli/shipped-model';

const TOP2_DIR = path.join(__dirname, '..', 'models', 'dynamoe-tiny-top2');
const MAX_FILE_BYTES = 16 * 2 ** 20;
const PROMPT = 'And the LORD said unto Moses,';
/** Held-out tokens scored (the whole held-out text is ~51k tokens; this keeps the test quick). */
const SCORED_TOKENS = 4096;

/** Lower-case words of a text. */
function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+/g) ?? [];
}

/** Words counted as real: the held-out text's own, and the system dictionary's where one is installed. */
function knownWords(): Set<string> {
  const known = new Set(words(fs.readFileSync(shippedHeldOutText(), 'utf8')));
  const dictionary = '/usr/share/dict/words';
  if (fs.existsSync(dictionary)) for (const w of words(fs.readFileSync(dictionary, 'utf8'))) known.add(w);
  return known;
}

async function heldOutPerplexity(model: Model): Promise<number> {
  const text = fs.readFileSync(shippedHeldOutText(), 'utf8');
  const windows = textWindows(model.tokenizer, text, model.spec.maxContext, { maxTokens: SCORED_TOKENS });
  let nll = 0;
  let predicted = 0;
  for (const w of windows) {
    nll += (await model.score(w)).nll;
    predicted += w.length - 1;
  }
  return Math.exp(nll / predicted);
}

describe('the shipped top-p model', () => {
  let model: Model;
  beforeAll(async () => {
    model = await loadModel(shippedModelDir());
  });
  afterAll(() => model.dispose());

  test('is the Dynamic-MoE layout with top-p 0.4 routing, tied embeddings, and files of at most 16 MiB', () => {
    expect(model.spec.architecture).toBe('dynamic-moe');
    expect(model.spec.tiedEmbeddings).toBe(true);
    for (const layer of model.spec.layers) expect(layer).toMatchObject({ kind: 'moe', policy: { kind: 'top-p', p: 0.4 } });
    for (const dir of [shippedModelDir(), TOP2_DIR]) {
      expect(fs.statSync(path.join(dir, 'model.safetensors')).size).toBeLessThanOrEqual(MAX_FILE_BYTES);
    }
  });

  test('its tokenizer round-trips the held-out text', () => {
    const text = fs.readFileSync(shippedHeldOutText(), 'utf8').slice(0, 20000);
    const ids = model.tokenizer.encode(text);
    expect(model.tokenizer.decode(ids)).toBe(text);
    // Byte-level BPE trained on this English: about four characters per token.
    expect(text.length / ids.length).toBeGreaterThan(3);
  });

  test('greedy generation is deterministic and mostly real words', async () => {
    const generate = async () => {
      const g = model.generate(PROMPT, { maxTokens: 48 });
      for await (const _ of g); // the summary is what the test reads
      return g.summary!;
    };
    const first = await generate();
    const second = await generate();
    expect(second.tokenIds).toEqual(first.tokenIds);
    const generated = words(first.text);
    expect(generated.length).toBeGreaterThanOrEqual(20);
    const known = knownWords();
    const real = generated.filter((w) => known.has(w)).length / generated.length;
    expect(real).toBeGreaterThanOrEqual(0.9);
    // Top-p routes a varying number of experts: between one and all eight, not a whole number on average.
    expect(first.stats.expertsPerToken).toBeGreaterThan(1);
    expect(first.stats.expertsPerToken).toBeLessThan(8);
  });

  test('held-out perplexity is far below the vocabulary size', async () => {
    const perplexity = await heldOutPerplexity(model);
    expect(perplexity).toBeLessThan(model.spec.vocab / 40);
  });
});

describe('the shipped top-2 twin', () => {
  test('is a Mixtral-layout top-2 model with the same tokenizer that also predicts held-out text', async () => {
    const twin = await loadModel(TOP2_DIR);
    try {
      expect(twin.spec.architecture).toBe('mixtral');
      for (const layer of twin.spec.layers) expect(layer).toMatchObject({ kind: 'moe', policy: { kind: 'top-k', k: 2 } });
      expect(twin.spec.vocab).toBe(4096);
      expect(await heldOutPerplexity(twin)).toBeLessThan(twin.spec.vocab / 40);
    } finally {
      twin.dispose();
    }
  });
});
