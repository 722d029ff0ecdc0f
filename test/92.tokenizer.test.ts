// Tokenizers from Hugging Face directories and from GGUF metadata: exact ids, round trips, streaming, chat
// templates, GGUF <-> tokenizer.json equivalence, and error codes.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { DynamoeError } from '../lib/errors';
import { loadTokenizerFromDirectory, Tokenizer, tokenizerFromGgufMetadata } from '../lib/tokenizer/tokenizer';
import {
  CHATML_TEMPLATE,
  tinyTokenizerConfig,
  tinyTokenizerGgufMetadata,
  tinyTokenizerJson,
  TinyTokenizerKind,
  writeTinyTokenizer,
} from './tokenizer-fixtures';

const KINDS: TinyTokenizerKind[] = ['byte-bpe', 'spm'];
const TEXTS = [
  'hello world',
  'héllo wörld ✓',
  'Hello, World!',
  ' hello  world ',
  'hello\n\nworld\t!',
  '日本語 🙂 naïve café',
  "it's 12345 o'clock",
  '<|im_start|>user\nhi<|im_end|>',
  '<s>hello</s>',
  'a<think>b',
  '',
];

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'dynamoe-tokenizer-'));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));
let dirCount = 0;

/** A fresh directory holding a tiny tokenizer; `edit` may rewrite its files first. */
function tinyDir(kind: TinyTokenizerKind, edit?: (dir: string) => void): string {
  const dir = path.join(tmpRoot, `${kind}-${dirCount++}`);
  fs.mkdirSync(dir);
  writeTinyTokenizer(dir, kind);
  edit?.(dir);
  return dir;
}

function writeJson(dir: string, name: string, value: unknown): void {
  fs.writeFileSync(path.join(dir, name), JSON.stringify(value));
}

/** The GGUF metadata as a reader returns it: plain values. */
function ggufMap(kind: TinyTokenizerKind, edit: Record<string, unknown> = {}): Map<string, unknown> {
  const map = new Map<string, unknown>(tinyTokenizerGgufMetadata(kind).map(([key, typed]) => [key, typed.value]));
  for (const [key, value] of Object.entries(edit)) {
    if (value === undefined) map.delete(key);
    else map.set(key, value);
  }
  return map;
}

async function expectCode(run: () => unknown, code: string, text?: string): Promise<void> {
  let caught: unknown;
  try {
    await run();
  } catch (error) {
    caught = error;
  }
  expect(caught).toBeInstanceOf(DynamoeError);
  expect((caught as DynamoeError).code).toBe(code);
  if (text !== undefined) expect((caught as DynamoeError).message).toContain(text);
}

/** Deterministic pseudo-random ids (LCG) for decode comparisons. */
function randomIds(seed: number, count: number, vocabSize: number): number[] {
  let state = seed >>> 0;
  return Array.from({ length: count }, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state % vocabSize;
  });
}

/** Streams ids through a stream decoder; returns the pieces (flush last). */
function stream(tokenizer: Tokenizer, ids: ArrayLike<number>, skipSpecialTokens = false): string[] {
  const decoder = tokenizer.createStreamDecoder({ skipSpecialTokens });
  const pieces = Array.from(ids, (id) => decoder.push(id));
  pieces.push(decoder.flush());
  return pieces;
}

describe('byte-level BPE (tokenizer.json directory)', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizerFromDirectory(tinyDir('byte-bpe'));
  });

  test('special token ids and vocabulary size', () => {
    expect(tok.vocabSize).toBe(269);
    expect(tok.bosTokenId).toBe(265);
    expect(tok.eosTokenIds).toEqual([267]);
  });

  test('encodes to exact ids (merges, byte-level bytes, special and user-defined tokens)', () => {
    expect(Array.from(tok.encode('hello world'))).toEqual([259, 264]);
    // é = C3 A9, ö = C3 B6, ✓ = E2 9C 93: one byte token each, as ids 0-255 are the bytes.
    expect(Array.from(tok.encode('héllo wörld ✓'))).toEqual([104, 0xc3, 0xa9, 257, 111, 260, 0xc3, 0xb6, 114, 263, 32, 0xe2, 0x9c, 0x93]);
    expect(Array.from(tok.encode('<|im_start|>user\nhi<|im_end|>'))).toEqual([266, 117, 115, 101, 114, 10, 104, 105, 267]);
    expect(Array.from(tok.encode('a<think>b'))).toEqual([97, 268, 98]);
    expect(Array.from(tok.encode('hello world', { addSpecialTokens: false }))).toEqual([259, 264]); // Qwen2 adds no BOS
    expect(tok.encode('hello')).toBeInstanceOf(Int32Array);
    expect(tok.encode('').length).toBe(0);
  });

  test('decode round-trips text, skips special tokens on request, takes typed arrays', () => {
    for (const text of TEXTS) expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.decode([266, 117, 115, 101, 114, 10, 104, 105, 267], { skipSpecialTokens: true })).toBe('user\nhi');
    expect(tok.decode([97, 268, 98], { skipSpecialTokens: true })).toBe('a<think>b'); // user-defined: not special
    expect(tok.decode(Int32Array.from([259, 264]))).toBe('hello world');
    expect(tok.decode([])).toBe('');
    expect(tok.decode([259, 44, 32, 46])).toBe('hello, .'); // no clean-up of spaces before punctuation
  });
});

describe('SentencePiece BPE with byte fallback (tokenizer.json directory)', () => {
  let tok: Tokenizer;
  beforeAll(async () => {
    tok = await loadTokenizerFromDirectory(tinyDir('spm'));
  });

  test('special token ids and vocabulary size', () => {
    expect(tok.vocabSize).toBe(277);
    expect(tok.bosTokenId).toBe(1);
    expect(tok.eosTokenIds).toEqual([2]);
  });

  test('encodes to exact ids (BOS, merges, byte fallback)', () => {
    expect(Array.from(tok.encode('hello world'))).toEqual([1, 274, 276]);
    expect(Array.from(tok.encode('hello world', { addSpecialTokens: false }))).toEqual([274, 276]);
    // ▁h <0xC3> <0xA9> ll o ▁w <0xC3> <0xB6> r ld ▁ <0xE2> <0x9C> <0x93>; byte b is id 3 + b.
    const b = (byte: number) => 3 + byte;
    expect(Array.from(tok.encode('héllo wörld ✓'))).toEqual([1, 268, b(0xc3), b(0xa9), 267, 263, 269, b(0xc3), b(0xb6), 265, 271, 259, b(0xe2), b(0x9c), b(0x93)]);
    expect(Array.from(tok.encode('Hello'))).toEqual([1, 259, b(0x48), 261, 267, 263]);
    expect(Array.from(tok.encode(''))).toEqual([1]);
  });

  test('decode round-trips text through byte fallback', () => {
    for (const text of TEXTS.filter((t) => !t.includes('<s>'))) {
      expect(tok.decode(tok.encode(text, { addSpecialTokens: false }))).toBe(text);
      expect(tok.decode(tok.encode(text), { skipSpecialTokens: true })).toBe(text);
    }
    // Legacy SentencePiece: text after a special token gets the '▁' prefix too; transformers decodes Llama alike.
    expect(tok.decode(tok.encode('hello world'))).toBe('<s> hello world');
    expect(tok.decode(tok.encode('<s>hello</s>', { addSpecialTokens: false }))).toBe('<s> hello</s>');
    expect(tok.decode(tok.encode('<s>hello</s>'), { skipSpecialTokens: true })).toBe('hello');
  });
});

describe('streaming decoder', () => {
  test.each(KINDS)('%s: pieces concatenate to decode() and never split a character', async (kind) => {
    const tok = await loadTokenizerFromDirectory(tinyDir(kind));
    for (const text of TEXTS) {
      const ids = tok.encode(text);
      for (const skip of [false, true]) {
        const pieces = stream(tok, ids, skip);
        expect(pieces.join('')).toBe(tok.decode(ids, { skipSpecialTokens: skip }));
        for (const piece of pieces) expect(piece).not.toContain('\uFFFD');
      }
    }
  });

  test.each(KINDS)('%s: holds back the bytes of ✓ until the last one arrives', async (kind) => {
    const tok = await loadTokenizerFromDirectory(tinyDir(kind));
    const ids = Array.from(tok.encode('hello ✓', { addSpecialTokens: false }));
    const pieces = stream(tok, ids);
    expect(pieces.slice(-4)).toEqual(['', '', '✓', '']); // the three byte tokens, then flush
    expect(pieces.join('')).toBe('hello ✓');
  });

  test.each(KINDS)('%s: random ids (invalid UTF-8 included) stream to exactly decode()', async (kind) => {
    const tok = await loadTokenizerFromDirectory(tinyDir(kind));
    for (let seed = 1; seed <= 20; seed++) {
      const ids = randomIds(seed, 40, tok.vocabSize);
      for (const skip of [false, true]) expect(stream(tok, ids, skip).join('')).toBe(tok.decode(ids, { skipSpecialTokens: skip }));
    }
  });

  test('flush() returns an unfinished character as decode() does, and the decoder is reusable', async () => {
    const tok = await loadTokenizerFromDirectory(tinyDir('byte-bpe'));
    const decoder = tok.createStreamDecoder();
    expect(decoder.push(0xe2)).toBe('');
    expect(decoder.push(0x9c)).toBe('');
    expect(decoder.flush()).toBe(tok.decode([0xe2, 0x9c]));
    expect(decoder.push(259)).toBe('hello');
    expect(decoder.push(264)).toBe(' world');
    expect(decoder.flush()).toBe('');
  });
});

describe('chat templates', () => {
  const chat = [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: 'ok' },
    { role: 'user', content: 'more' },
  ];

  test('renders the ChatML template with and without the generation prompt', async () => {
    const tok = await loadTokenizerFromDirectory(tinyDir('byte-bpe'));
    const body = '<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n';
    expect(tok.applyChatTemplate(chat)).toBe(body);
    expect(tok.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe(`${body}<|im_start|>assistant\n`);
  });

  test('passes bos_token and eos_token; template exceptions are ERR_DYNAMOE_VALUE', async () => {
    const tok = await loadTokenizerFromDirectory(tinyDir('spm'));
    expect(tok.applyChatTemplate(chat)).toBe('<s>[INST] hi [/INST]ok</s>[INST] more [/INST]');
    await expectCode(() => tok.applyChatTemplate([{ role: 'assistant', content: 'x' }]), 'ERR_DYNAMOE_VALUE', 'roles must alternate');
    await expectCode(() => tok.applyChatTemplate('hi' as never), 'ERR_DYNAMOE_TYPE');
  });

  test('a list of named templates picks "default"; chat_template.jinja is read when the config has none', async () => {
    const listed = await loadTokenizerFromDirectory(
      tinyDir('byte-bpe', (dir) =>
        writeJson(dir, 'tokenizer_config.json', {
          ...tinyTokenizerConfig('byte-bpe'),
          chat_template: [{ name: 'tool_use', template: 'tools' }, { name: 'default', template: CHATML_TEMPLATE }],
        }),
      ),
    );
    expect(listed.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe('<|im_start|>user\nhi<|im_end|>\n');
    const jinja = await loadTokenizerFromDirectory(
      tinyDir('byte-bpe', (dir) => {
        writeJson(dir, 'tokenizer_config.json', { ...tinyTokenizerConfig('byte-bpe'), chat_template: undefined });
        fs.writeFileSync(path.join(dir, 'chat_template.jinja'), '{{ messages[0].content }}!');
      }),
    );
    expect(jinja.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBe('hi!');
  });

  test('null without a template; a template that does not parse is ERR_DYNAMOE_FORMAT', async () => {
    const none = await loadTokenizerFromDirectory(
      tinyDir('spm', (dir) => writeJson(dir, 'tokenizer_config.json', { ...tinyTokenizerConfig('spm'), chat_template: undefined })),
    );
    expect(none.applyChatTemplate([{ role: 'user', content: 'hi' }])).toBeNull();
    const broken = tokenizerFromGgufMetadata(ggufMap('spm', { 'tokenizer.chat_template': '{% for %}' }), 'broken.gguf');
    await expectCode(() => broken.applyChatTemplate([{ role: 'user', content: 'hi' }]), 'ERR_DYNAMOE_FORMAT', 'broken.gguf');
  });
});

describe('GGUF metadata', () => {
  test.each(KINDS)('%s: encodes and decodes exactly like the tokenizer.json directory', async (kind) => {
    const fromDir = await loadTokenizerFromDirectory(tinyDir(kind));
    const fromGguf = tokenizerFromGgufMetadata(ggufMap(kind), `${kind}.gguf`);
    expect(fromGguf.vocabSize).toBe(fromDir.vocabSize);
    expect(fromGguf.bosTokenId).toBe(fromDir.bosTokenId);
    for (const text of TEXTS) {
      for (const addSpecialTokens of [true, false]) {
        expect(Array.from(fromGguf.encode(text, { addSpecialTokens }))).toEqual(Array.from(fromDir.encode(text, { addSpecialTokens })));
      }
    }
    for (let seed = 1; seed <= 20; seed++) {
      const ids = randomIds(seed, 30, fromDir.vocabSize);
      for (const skipSpecialTokens of [false, true]) {
        expect(fromGguf.decode(ids, { skipSpecialTokens })).toBe(fromDir.decode(ids, { skipSpecialTokens }));
      }
    }
    const chat = [{ role: 'user', content: 'hi' }];
    expect(fromGguf.applyChatTemplate(chat, { addGenerationPrompt: true })).toBe(fromDir.applyChatTemplate(chat, { addGenerationPrompt: true }));
  });

  test('eos ids: eos_token_id first, then end-of-turn control tokens; generation_config.json lists for directories', async () => {
    expect(tokenizerFromGgufMetadata(ggufMap('byte-bpe'), 'q.gguf').eosTokenIds).toEqual([267, 265]);
    expect(tokenizerFromGgufMetadata(ggufMap('spm'), 'm.gguf').eosTokenIds).toEqual([2]);
    const dir = tinyDir('byte-bpe', (d) => writeJson(d, 'generation_config.json', { bos_token_id: 265, eos_token_id: [265, 267] }));
    expect((await loadTokenizerFromDirectory(dir)).eosTokenIds).toEqual([265, 267]);
    const single = tinyDir('spm', (d) => writeJson(d, 'generation_config.json', { eos_token_id: 1 }));
    expect((await loadTokenizerFromDirectory(single)).eosTokenIds).toEqual([1, 2]);
  });

  test('typed arrays, { type, value } entries and default pre-tokenizers ("olmo") are accepted', async () => {
    const typed = ggufMap('spm', {
      'tokenizer.ggml.scores': Float32Array.from(ggufMap('spm').get('tokenizer.ggml.scores') as number[]),
      'tokenizer.ggml.token_type': Int32Array.from(ggufMap('spm').get('tokenizer.ggml.token_type') as number[]),
      'tokenizer.ggml.bos_token_id': 1n,
    });
    expect(Array.from(tokenizerFromGgufMetadata(typed, 't.gguf').encode('héllo'))).toEqual([1, 268, 198, 172, 267, 263]);
    // A 'llama' GGUF that carries merges uses them instead of deriving them from the scores.
    const spmMerges = (tinyTokenizerJson('spm') as { model: { merges: string[][] } }).model.merges.map((m) => m.join(' '));
    const withMerges = ggufMap('spm', { 'tokenizer.ggml.scores': undefined, 'tokenizer.ggml.merges': spmMerges });
    expect(Array.from(tokenizerFromGgufMetadata(withMerges, 'm.gguf').encode('héllo wörld'))).toEqual(Array.from(tokenizerFromGgufMetadata(ggufMap('spm'), 's.gguf').encode('héllo wörld')));
    const wrapped = new Map<string, unknown>(tinyTokenizerGgufMetadata('byte-bpe'));
    expect(Array.from(tokenizerFromGgufMetadata(wrapped, 'w.gguf').encode('hello world'))).toEqual([259, 264]);

    // GPT-2's regex inside the ByteLevel pre-tokenizer and no normalizer, as OLMoE's tokenizer.json has it.
    const olmoDir = tinyDir('byte-bpe', (dir) =>
      writeJson(dir, 'tokenizer.json', {
        ...tinyTokenizerJson('byte-bpe'),
        normalizer: null,
        pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
      }),
    );
    const fromDir = await loadTokenizerFromDirectory(olmoDir);
    const fromGguf = tokenizerFromGgufMetadata(ggufMap('byte-bpe', { 'tokenizer.ggml.pre': 'olmo' }), 'olmo.gguf');
    for (const text of TEXTS) {
      expect(Array.from(fromGguf.encode(text))).toEqual(Array.from(fromDir.encode(text)));
      expect(fromGguf.decode(fromGguf.encode(text))).toBe(text);
    }
  });
});

describe('errors', () => {
  test('directory: missing tokenizer.json is ERR_DYNAMOE_IO naming the path; bad JSON is ERR_DYNAMOE_FORMAT', async () => {
    const missing = path.join(tmpRoot, 'nope');
    await expectCode(() => loadTokenizerFromDirectory(missing), 'ERR_DYNAMOE_IO', path.join(missing, 'tokenizer.json'));
    const badJson = tinyDir('spm', (dir) => fs.writeFileSync(path.join(dir, 'tokenizer.json'), '{"model": '));
    await expectCode(() => loadTokenizerFromDirectory(badJson), 'ERR_DYNAMOE_FORMAT', 'tokenizer.json');
    const badConfig = tinyDir('spm', (dir) => fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), 'not json'));
    await expectCode(() => loadTokenizerFromDirectory(badConfig), 'ERR_DYNAMOE_FORMAT', 'tokenizer_config.json');
    const noModel = tinyDir('spm', (dir) => writeJson(dir, 'tokenizer.json', { ...tinyTokenizerJson('spm'), model: undefined }));
    await expectCode(() => loadTokenizerFromDirectory(noModel), 'ERR_DYNAMOE_FORMAT', "'model'");
    const badEos = tinyDir('spm', (dir) => writeJson(dir, 'generation_config.json', { eos_token_id: ['x'] }));
    await expectCode(() => loadTokenizerFromDirectory(badEos), 'ERR_DYNAMOE_FORMAT', 'eos_token_id');
    const unknownDecoder = tinyDir('spm', (dir) => writeJson(dir, 'tokenizer.json', { ...tinyTokenizerJson('spm'), decoder: { type: 'Nope' } }));
    await expectCode(() => loadTokenizerFromDirectory(unknownDecoder), 'ERR_DYNAMOE_UNSUPPORTED', 'Nope');
    await expectCode(() => loadTokenizerFromDirectory(42 as never), 'ERR_DYNAMOE_TYPE');
  });

  test('GGUF: unknown tokenizer models are ERR_DYNAMOE_UNSUPPORTED naming source and model', async () => {
    await expectCode(() => tokenizerFromGgufMetadata(ggufMap('spm', { 'tokenizer.ggml.model': 'bert' }), 'enc.gguf'), 'ERR_DYNAMOE_UNSUPPORTED', "enc.gguf: tokenizer model 'bert'");
  });

  test.each([
    ['spm', 'tokenizer.ggml.model', undefined],
    ['spm', 'tokenizer.ggml.model', 3],
    ['spm', 'tokenizer.ggml.tokens', undefined],
    ['spm', 'tokenizer.ggml.tokens', ['a', 1]],
    ['spm', 'tokenizer.ggml.scores', undefined],
    ['spm', 'tokenizer.ggml.scores', [1, 2]],
    ['spm', 'tokenizer.ggml.token_type', 'x'],
    ['spm', 'tokenizer.ggml.bos_token_id', 277],
    ['spm', 'tokenizer.ggml.eos_token_id', -1],
    ['spm', 'tokenizer.ggml.add_bos_token', 1],
    ['byte-bpe', 'tokenizer.ggml.merges', undefined],
    ['byte-bpe', 'tokenizer.ggml.merges', ['nospace']],
    ['byte-bpe', 'tokenizer.ggml.pre', 7],
    ['byte-bpe', 'tokenizer.chat_template', false],
  ] as const)('GGUF %s: %s = %p is ERR_DYNAMOE_FORMAT naming the key', async (kind, key, value) => {
    const map = ggufMap(kind);
    if (value === undefined) map.delete(key);
    else map.set(key, value);
    await expectCode(() => tokenizerFromGgufMetadata(map, 'bad.gguf'), 'ERR_DYNAMOE_FORMAT', `bad.gguf: GGUF key '${key}'`);
  });

  test('bad arguments: ERR_DYNAMOE_TYPE for wrong kinds, ERR_DYNAMOE_VALUE for ids outside the vocabulary', async () => {
    const tok = tokenizerFromGgufMetadata(ggufMap('byte-bpe'), 'q.gguf');
    await expectCode(() => tok.encode(5 as never), 'ERR_DYNAMOE_TYPE');
    await expectCode(() => tok.decode(7 as never), 'ERR_DYNAMOE_TYPE');
    await expectCode(() => tok.decode([269]), 'ERR_DYNAMOE_VALUE', '[0, 269)');
    await expectCode(() => tok.decode([1.5]), 'ERR_DYNAMOE_VALUE');
    await expectCode(() => tok.createStreamDecoder().push(-1), 'ERR_DYNAMOE_VALUE');
    await expectCode(() => tokenizerFromGgufMetadata({} as never, 'x.gguf'), 'ERR_DYNAMOE_TYPE');
  });
});

describe('fixtures', () => {
  test.each(KINDS)('%s: small vocabulary, every id below vocabSize, explicit GGUF value types', (kind) => {
    const { vocabSize } = writeTinyTokenizer(fs.mkdtempSync(path.join(tmpRoot, 'fx-')), kind);
    expect(vocabSize).toBeLessThanOrEqual(300);
    const json = tinyTokenizerJson(kind) as { model: { vocab: Record<string, number> }; added_tokens: { id: number }[] };
    const ids = [...Object.values(json.model.vocab), ...json.added_tokens.map((t) => t.id)];
    expect(Math.max(...ids)).toBe(vocabSize - 1);
    expect(new Set(ids).size).toBe(vocabSize);
    for (const [key, typed] of tinyTokenizerGgufMetadata(kind)) {
      expect(['string', 'u32', 'bool', 'f32', 'i32', 'array']).toContain(typed.type);
      if (typed.type === 'array') expect(['string', 'f32', 'i32']).toContain(typed.itemType);
      if (key.endsWith('_token_id')) expect(typed.value as number).toBeLessThan(vocabSize);
    }
  });
});
