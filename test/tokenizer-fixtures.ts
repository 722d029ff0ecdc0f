// Tiny tokenizers for tests: the same tokenizer written as a Hugging Face directory (tokenizer.json,
// tokenizer_config.json) and as GGUF metadata entries. 'byte-bpe' is byte-level BPE as in Qwen2 (ids 0-255 are the
// bytes); 'spm' is SentencePiece BPE with byte fallback as in Llama / Mixtral (ids 3-258 are <0x00>-<0xFF>).
import * as fs from 'fs';
import * as path from 'path';
import { byteLevelAlphabet } from '../lib/tokenizer/byte-level-alphabet';
import { GgufTypedValue } from '../lib/formats/gguf';

/** The two tiny tokenizer kinds. */
export type TinyTokenizerKind = 'byte-bpe' | 'spm';

/** ChatML, as Qwen2 uses it. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}" +
  "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/** Mixtral-style [INST] template, which rejects conversations whose roles do not alternate. */
export const INST_TEMPLATE =
  "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}";

/** The pre-tokenizer split of Qwen2's tokenizer.json. */
export const QWEN2_SPLIT =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

interface TinySpec {
  tokens: string[];
  /** llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte. */
  types: number[];
  scores: number[];
  merges: [string, string][];
  bos: number;
  eos: number;
  unk: number | null;
}

/** Byte-level BPE: 256 byte tokens, 9 merges (hello, Ġworld), 3 control tokens and 1 user-defined token. */
function byteBpeSpec(): TinySpec {
  const merges: [string, string][] = [
    ['h', 'e'], ['l', 'l'], ['he', 'll'], ['hell', 'o'], ['Ġ', 'w'], ['o', 'r'], ['Ġw', 'or'], ['l', 'd'], ['Ġwor', 'ld'],
  ];
  const tokens = [...byteLevelAlphabet(), ...merges.map(([a, b]) => a + b), '<|endoftext|>', '<|im_start|>', '<|im_end|>', '<think>'];
  const types = tokens.map((_, id) => (id < 265 ? 1 : id < 268 ? 3 : 4));
  return { tokens, types, scores: tokens.map(() => 0), merges, bos: 265, eos: 267, unk: null };
}

/**
 * SentencePiece BPE: <unk> <s> </s>, the 256 byte tokens, 8 single characters and 10 merged pieces whose scores
 * (-1 ... -10) give the merge order, as in a SentencePiece model (a GGUF of it carries scores, not merges).
 */
function spmSpec(): TinySpec {
  const bytes = Array.from({ length: 256 }, (_, b) => `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
  const chars = ['▁', 'h', 'e', 'l', 'o', 'w', 'r', 'd'];
  const merges: [string, string][] = [
    ['l', 'l'], ['▁', 'h'], ['▁', 'w'], ['o', 'r'], ['l', 'd'], ['▁h', 'e'], ['▁he', 'll'], ['▁hell', 'o'], ['▁w', 'or'], ['▁wor', 'ld'],
  ];
  const tokens = ['<unk>', '<s>', '</s>', ...bytes, ...chars, ...merges.map(([a, b]) => a + b)];
  const types = tokens.map((_, id) => (id === 0 ? 2 : id < 3 ? 3 : id < 259 ? 6 : 1));
  const scores = tokens.map((_, id) => (id < 259 ? 0 : id < 267 ? -1000 : -(id - 266)));
  return { tokens, types, scores, merges, bos: 1, eos: 2, unk: 0 };
}

function specOf(kind: TinyTokenizerKind): TinySpec {
  if (kind === 'byte-bpe') return byteBpeSpec();
  if (kind === 'spm') return spmSpec();
  throw new Error(`unknown tiny tokenizer kind ${String(kind)}`);
}

/** The tokenizer.json object of a tiny tokenizer, written the way Hugging Face tokenizers saves these models. */
export function tinyTokenizerJson(kind: TinyTokenizerKind): Record<string, unknown> {
  const spec = specOf(kind);
  const vocab: Record<string, number> = {};
  spec.tokens.forEach((token, id) => {
    // Llama's tokenizer.json lists its control tokens in the vocabulary too; Qwen2's only as added tokens.
    if (kind === 'spm' || (spec.types[id] !== 3 && spec.types[id] !== 4)) vocab[token] = id;
  });
  const added = spec.tokens.flatMap((content, id) =>
    [2, 3, 4].includes(spec.types[id] as number)
      ? [{ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: spec.types[id] !== 4 }]
      : [],
  );
  if (kind === 'byte-bpe') {
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false };
    return {
      version: '1.0', truncation: null, padding: null, added_tokens: added,
      normalizer: { type: 'NFC' },
      pre_tokenizer: { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: QWEN2_SPLIT }, behavior: 'Isolated', invert: false }, byteLevel] },
      post_processor: byteLevel,
      decoder: byteLevel,
      model: {
        type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false,
        byte_fallback: false, ignore_merges: false, vocab, merges: spec.merges.map(([a, b]) => `${a} ${b}`),
      },
    };
  }
  const bos = { SpecialToken: { id: '<s>', type_id: 0 } };
  return {
    version: '1.0', truncation: null, padding: null, added_tokens: added,
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [bos, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [bos, { Sequence: { id: 'A', type_id: 0 } }, bos, { Sequence: { id: 'B', type_id: 1 } }],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true,
      byte_fallback: true, ignore_merges: false, vocab, merges: spec.merges,
    },
  };
}

/** The tokenizer_config.json object of a tiny tokenizer (special tokens, chat template). */
export function tinyTokenizerConfig(kind: TinyTokenizerKind): Record<string, unknown> {
  if (kind === 'byte-bpe') {
    return {
      add_bos_token: false, add_prefix_space: false, bos_token: '<|endoftext|>', eos_token: '<|im_end|>', pad_token: '<|endoftext|>',
      clean_up_tokenization_spaces: false, model_max_length: 32768, tokenizer_class: 'Qwen2Tokenizer', chat_template: CHATML_TEMPLATE,
    };
  }
  return {
    add_bos_token: true, add_eos_token: false, bos_token: '<s>', eos_token: '</s>', unk_token: '<unk>', pad_token: null, legacy: true,
    clean_up_tokenization_spaces: false, model_max_length: 32768, tokenizer_class: 'LlamaTokenizer', chat_template: INST_TEMPLATE,
  };
}

/**
 * Writes a tiny tokenizer (tokenizer.json and tokenizer_config.json with a chat template, bos/eos tokens) into
 * `dir`, which must exist. Every token id is below `vocabSize` (269 for 'byte-bpe', 277 for 'spm').
 */
export function writeTinyTokenizer(dir: string, kind: TinyTokenizerKind): { vocabSize: number; bosTokenId: number; eosTokenId: number } {
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tinyTokenizerJson(kind), null, 2));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(tinyTokenizerConfig(kind), null, 2));
  const spec = specOf(kind);
  return { vocabSize: spec.tokens.length, bosTokenId: spec.bos, eosTokenId: spec.eos };
}

/**
 * The same tiny tokenizer as GGUF metadata entries, keys and value types as llama.cpp writes them ('spm' carries
 * scores and no merges, as Llama / Mixtral GGUFs do). `new Map(entries.map(([k, v]) => [k, v.value]))` is what a
 * GGUF reader returns.
 */
export function tinyTokenizerGgufMetadata(kind: TinyTokenizerKind): Array<[string, GgufTypedValue]> {
  const spec = specOf(kind);
  const u32 = (value: number): GgufTypedValue => ({ type: 'u32', value });
  const entries: Array<[string, GgufTypedValue]> = [
    ['tokenizer.ggml.model', { type: 'string', value: kind === 'byte-bpe' ? 'gpt2' : 'llama' }],
  ];
  if (kind === 'byte-bpe') entries.push(['tokenizer.ggml.pre', { type: 'string', value: 'qwen2' }]);
  entries.push(
    ['tokenizer.ggml.tokens', { type: 'array', itemType: 'string', value: spec.tokens }],
    ['tokenizer.ggml.token_type', { type: 'array', itemType: 'i32', value: spec.types }],
  );
  if (kind === 'byte-bpe') {
    entries.push(['tokenizer.ggml.merges', { type: 'array', itemType: 'string', value: spec.merges.map(([a, b]) => `${a} ${b}`) }]);
  } else {
    entries.push(['tokenizer.ggml.scores', { type: 'array', itemType: 'f32', value: spec.scores }]);
  }
  entries.push(['tokenizer.ggml.bos_token_id', u32(spec.bos)], ['tokenizer.ggml.eos_token_id', u32(spec.eos)]);
  if (spec.unk !== null) entries.push(['tokenizer.ggml.unknown_token_id', u32(spec.unk)]);
  if (kind === 'byte-bpe') entries.push(['tokenizer.ggml.padding_token_id', u32(265)]);
  entries.push(
    ['tokenizer.ggml.add_bos_token', { type: 'bool', value: kind === 'spm' }],
    ['tokenizer.ggml.add_eos_token', { type: 'bool', value: false }],
    ['tokenizer.chat_template', { type: 'string', value: kind === 'byte-bpe' ? CHATML_TEMPLATE : INST_TEMPLATE }],
  );
  return entries;
}
