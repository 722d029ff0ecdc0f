// GGUF tokenizer metadata (as llama.cpp writes it) -> the equivalent Hugging Face tokenizer.json object, which
// @huggingface/tokenizers then runs. Internal: the public API is in tokenizer.ts.
import { DynamoeError } from '../errors';
import { describe } from '../validate';

/** The pieces of a tokenizer that the GGUF metadata describes, ready for {@link tokenizer.ts}. */
export interface GgufTokenizerParts {
  /** A tokenizer.json object (model, normalizer, pre-tokenizer, post-processor, decoder, added tokens). */
  json: Record<string, unknown>;
  /** The tokens by id (tokenizer.ggml.tokens). */
  tokens: string[];
  bosTokenId: number | null;
  /** eos_token_id first, then eot / eom and the end-of-turn control tokens llama.cpp stops on. */
  eosTokenIds: number[];
  /** The texts of bos_token_id and eos_token_id (for chat templates). */
  bosToken: string | null;
  eosToken: string | null;
  chatTemplate: string | null;
}

/** llama.cpp's token types (tokenizer.ggml.token_type). */
const TYPE_NORMAL = 1;
const TYPE_UNKNOWN = 2;
const TYPE_CONTROL = 3;
const TYPE_USER_DEFINED = 4;

/** Split patterns of byte-level BPE pre-tokenizers, by llama.cpp's `tokenizer.ggml.pre` name (others: GPT-2's). */
const LLAMA3_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const QWEN2_PATTERN =
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const SPLIT_PATTERNS: Record<string, string> = {
  'llama-bpe': LLAMA3_PATTERN,
  llama3: LLAMA3_PATTERN,
  'smaug-bpe': LLAMA3_PATTERN,
  dbrx: LLAMA3_PATTERN,
  qwen2: QWEN2_PATTERN,
  'deepseek-r1-qwen': QWEN2_PATTERN,
};

/** Control tokens llama.cpp also treats as end of generation, whatever eos_token_id says. */
const END_OF_GENERATION_TEXTS = new Set([
  '<|eot_id|>',
  '<|eom_id|>',
  '<|im_end|>',
  '<|end|>',
  '<end_of_turn>',
  '<|endoftext|>',
  '<EOT>',
]);

/** Typed access to a GGUF metadata map; every failure names the key and the source. */
class MetadataReader {
  constructor(
    private readonly metadata: ReadonlyMap<string, unknown>,
    private readonly source: string,
  ) {}

  private get(key: string): unknown {
    const value = this.metadata.get(key);
    // Accept entries still wrapped as { type, value } (the form GGUF writers take) as well as plain values.
    if (typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value)) {
      const wrapped = value as { type?: unknown; value?: unknown };
      if (typeof wrapped.type === 'string' && 'value' in wrapped) return wrapped.value;
    }
    return value;
  }

  fail(key: string, expected: string, value: unknown): never {
    const given = value === undefined ? 'it is missing' : `got ${describe(value)}`;
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${this.source}: GGUF key '${key}' must be ${expected}, ${given}`);
  }

  string(key: string): string;
  string(key: string, optional: true): string | undefined;
  string(key: string, optional = false): string | undefined {
    const value = this.get(key);
    if (value === undefined && optional) return undefined;
    if (typeof value !== 'string') this.fail(key, 'a string', value);
    return value;
  }

  bool(key: string): boolean | undefined {
    const value = this.get(key);
    if (value === undefined || typeof value === 'boolean') return value;
    this.fail(key, 'a boolean', value);
  }

  /** A token id: an integer in [0, vocabSize) (GGUF u32 or i32; u64 readers may give a bigint). */
  tokenId(key: string, vocabSize: number): number | undefined {
    const raw = this.get(key);
    if (raw === undefined) return undefined;
    const value = typeof raw === 'bigint' ? Number(raw) : raw;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value >= vocabSize) {
      this.fail(key, `a token id in [0, ${vocabSize})`, raw);
    }
    return value;
  }

  strings(key: string): string[];
  strings(key: string, optional: true): string[] | undefined;
  strings(key: string, optional = false): string[] | undefined {
    const value = this.get(key);
    if (value === undefined && optional) return undefined;
    if (!Array.isArray(value) || !value.every((item) => typeof item === 'string')) {
      this.fail(key, 'an array of strings', value);
    }
    return value as string[];
  }

  /** A numeric array of exactly `length` items (a JS array or a typed array). */
  numbers(key: string, length: number, integers: boolean): number[] | undefined {
    const value = this.get(key);
    if (value === undefined) return undefined;
    const list = Array.isArray(value) || ArrayBuffer.isView(value) ? Array.from(value as ArrayLike<unknown>) : null;
    const ok = (item: unknown): boolean =>
      typeof item === 'number' && (integers ? Number.isInteger(item) : Number.isFinite(item));
    if (list === null || list.length !== length || !list.every(ok)) {
      this.fail(key, `an array of ${length} ${integers ? 'integers' : 'finite numbers'}`, value);
    }
    return list as number[];
  }
}

/** tokenizer.json's TemplateProcessing for add_bos / add_eos, from [text, id] of each (null: nothing to add). */
function templateProcessor(bos: [string, number] | null, eos: [string, number] | null): Record<string, unknown> | null {
  if (bos === null && eos === null) return null;
  const special = ([id]: [string, number]) => ({ SpecialToken: { id, type_id: 0 } });
  const sequence = (id: string, typeId: number) => ({ Sequence: { id, type_id: typeId } });
  const bosItems = bos === null ? [] : [special(bos)];
  const eosItems = eos === null ? [] : [special(eos)];
  const specialTokens: Record<string, unknown> = {};
  for (const [text, id] of [bos, eos].filter((t) => t !== null)) specialTokens[text] = { id: text, ids: [id], tokens: [text] };
  return {
    type: 'TemplateProcessing',
    single: [...bosItems, sequence('A', 0), ...eosItems],
    pair: [...bosItems, sequence('A', 0), ...eosItems, ...bosItems, sequence('B', 1), ...eosItems],
    special_tokens: specialTokens,
  };
}

/**
 * SentencePiece BPE merges from the piece scores, as Hugging Face's SentencePiece -> BPE conversion derives them:
 * every split of a piece into two pieces is a merge, ranked by the merged piece's score (descending; ties keep
 * piece-id order, then the ids of the left and right parts).
 */
export function mergesFromScores(tokens: string[], scores: number[], mergeable: (id: number) => boolean): [string, string][] {
  const ids = new Map<string, number>();
  const lengths = new Set<number>(); // of the mergeable pieces, in code points
  tokens.forEach((token, id) => {
    if (mergeable(id) && !ids.has(token)) {
      ids.set(token, id);
      lengths.add(Array.from(token).length);
    }
  });
  const merges: { left: string; right: string; score: number }[] = [];
  tokens.forEach((token, id) => {
    if (!mergeable(id)) return;
    const chars = Array.from(token); // split on code points: pieces are whole characters
    const local: { left: string; right: string; l: number; r: number }[] = [];
    for (let i = 1; i < chars.length; i++) {
      // Both halves must be pieces: splits no piece's length allows are skipped, else one long piece costs its length squared.
      if (!lengths.has(i) || !lengths.has(chars.length - i)) continue;
      const left = chars.slice(0, i).join('');
      const right = chars.slice(i).join('');
      const l = ids.get(left);
      const r = ids.get(right);
      if (l !== undefined && r !== undefined) local.push({ left, right, l, r });
    }
    local.sort((a, b) => a.l - b.l || a.r - b.r);
    for (const { left, right } of local) merges.push({ left, right, score: scores[id] as number });
  });
  merges.sort((a, b) => b.score - a.score); // stable: equal scores keep the order above
  return merges.map(({ left, right }) => [left, right]);
}

/** GGUF merges ('a b') as pairs, split where llama.cpp splits them: the first space after the first character. */
function parseMerges(merges: string[], reader: MetadataReader): [string, string][] {
  return merges.map((merge) => {
    const at = merge.indexOf(' ', 1);
    if (at < 0) reader.fail('tokenizer.ggml.merges', "an array of 'left right' strings", merge);
    return [merge.slice(0, at), merge.slice(at + 1)];
  });
}

/**
 * Builds the tokenizer.json equivalent of a GGUF file's tokenizer metadata ('gpt2': byte-level BPE as in GPT-2,
 * Qwen2 and OLMoE; 'llama': SentencePiece BPE with byte fallback as in Llama and Mixtral).
 */
export function ggufTokenizerParts(metadata: ReadonlyMap<string, unknown>, source: string): GgufTokenizerParts {
  const reader: MetadataReader = new MetadataReader(metadata, source); // annotated: lets fail() narrow
  const model = reader.string('tokenizer.ggml.model');
  if (model !== 'gpt2' && model !== 'llama') {
    throw new DynamoeError(
      'ERR_DYNAMOE_UNSUPPORTED',
      `${source}: tokenizer model '${model}' is not supported (supported: 'gpt2' byte-level BPE, 'llama' SentencePiece BPE)`,
    );
  }
  const tokens = reader.strings('tokenizer.ggml.tokens');
  const n = tokens.length;
  if (n === 0) reader.fail('tokenizer.ggml.tokens', 'a non-empty array of strings', tokens);
  const types = reader.numbers('tokenizer.ggml.token_type', n, true) ?? new Array<number>(n).fill(TYPE_NORMAL);
  const id = (key: string) => reader.tokenId(`tokenizer.ggml.${key}`, n) ?? null;
  const bosId = id('bos_token_id');
  const eosId = id('eos_token_id');
  const unkId = id('unknown_token_id') ?? (types.includes(TYPE_UNKNOWN) ? types.indexOf(TYPE_UNKNOWN) : null);
  id('padding_token_id'); // checked only: padding plays no part in encoding or decoding
  const addBos = reader.bool('tokenizer.ggml.add_bos_token') ?? model === 'llama'; // llama.cpp's defaults
  const addEos = reader.bool('tokenizer.ggml.add_eos_token') ?? false;
  const chatTemplate = reader.string('tokenizer.chat_template', true) ?? null;

  // Generation stops on eos, eot and eom, and on the control tokens llama.cpp recognises as end of turn.
  const eos = new Set<number>();
  for (const key of ['eos_token_id', 'eot_token_id', 'eom_token_id']) {
    const value = id(key);
    if (value !== null) eos.add(value);
  }
  tokens.forEach((token, i) => {
    if ((types[i] === TYPE_CONTROL || types[i] === TYPE_USER_DEFINED) && END_OF_GENERATION_TEXTS.has(token)) eos.add(i);
  });

  const vocab: Record<string, number> = Object.create(null); // null prototype: a token may be named '__proto__'
  tokens.forEach((token, i) => {
    vocab[token] = i;
  });
  // Control, unknown and user-defined tokens are matched whole before the model runs, as in tokenizer.json.
  const addedTokens = tokens.flatMap((content, i) => {
    const type = types[i];
    if (type !== TYPE_CONTROL && type !== TYPE_USER_DEFINED && type !== TYPE_UNKNOWN) return [];
    const special = type !== TYPE_USER_DEFINED;
    return [{ id: i, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special }];
  });
  const postProcessor = templateProcessor(
    addBos && bosId !== null ? [tokens[bosId] as string, bosId] : null,
    addEos && eosId !== null ? [tokens[eosId] as string, eosId] : null,
  );

  const mergeStrings = reader.strings('tokenizer.ggml.merges', true);
  let json: Record<string, unknown>;
  if (model === 'gpt2') {
    if (mergeStrings === undefined) reader.fail('tokenizer.ggml.merges', 'an array of strings', undefined);
    const pre = reader.string('tokenizer.ggml.pre', true) ?? 'default';
    const pattern = SPLIT_PATTERNS[pre];
    json = {
      normalizer: pre === 'qwen2' ? { type: 'NFC' } : null,
      pre_tokenizer:
        pattern === undefined
          ? { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true }
          : {
              type: 'Sequence',
              pretokenizers: [
                { type: 'Split', pattern: { Regex: pattern }, behavior: 'Isolated', invert: false },
                { type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false },
              ],
            },
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: null,
        fuse_unk: false,
        byte_fallback: false,
        ignore_merges: pattern === LLAMA3_PATTERN, // Llama 3 (HF and llama.cpp) takes whole-vocab words as is
        vocab,
        merges: parseMerges(mergeStrings, reader),
      },
      decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    };
  } else {
    const addSpacePrefix = reader.bool('tokenizer.ggml.add_space_prefix') ?? true;
    let merges: [string, string][];
    if (mergeStrings !== undefined) {
      merges = parseMerges(mergeStrings, reader);
    } else {
      const scores = reader.numbers('tokenizer.ggml.scores', n, false);
      if (scores === undefined) reader.fail('tokenizer.ggml.scores', `an array of ${n} numbers`, undefined);
      merges = mergesFromScores(tokens, scores, (i) => types[i] === TYPE_NORMAL);
    }
    const replaceSpaces = { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' };
    json = {
      normalizer: addSpacePrefix
        ? { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, replaceSpaces] }
        : replaceSpaces,
      pre_tokenizer: null,
      model: {
        type: 'BPE',
        dropout: null,
        unk_token: unkId === null ? null : tokens[unkId],
        fuse_unk: true,
        byte_fallback: true,
        ignore_merges: false,
        vocab,
        merges,
      },
      decoder: {
        type: 'Sequence',
        decoders: [
          { type: 'Replace', pattern: { String: '\u2581' }, content: ' ' },
          { type: 'ByteFallback' },
          { type: 'Fuse' },
          ...(addSpacePrefix ? [{ type: 'Strip', content: ' ', start: 1, stop: 0 }] : []),
        ],
      },
    };
  }
  json = { version: '1.0', truncation: null, padding: null, added_tokens: addedTokens, post_processor: postProcessor, ...json };
  const text = (i: number | null) => (i === null ? null : (tokens[i] as string));
  return { json, tokens, bosTokenId: bosId, eosTokenIds: [...eos], bosToken: text(bosId), eosToken: text(eosId), chatTemplate };
}
