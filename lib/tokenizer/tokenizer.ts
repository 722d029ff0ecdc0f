// Tokenizers and chat templates for whole models: Hugging Face tokenizer.json directories and GGUF tokenizer
// metadata, run by @huggingface/tokenizers (BPE, byte fallback, byte-level) and @huggingface/jinja (templates).
import { promises as fs } from 'fs';
import * as path from 'path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfTokenizer } from '@huggingface/tokenizers';
import { DynamoeError } from '../errors';
import { describe } from '../validate';
import { ggufTokenizerParts } from './tokenizer-json';

/** One chat message, as chat templates expect it. */
export interface ChatMessage {
  role: string;
  content: string;
}

/** Incremental decoder for streamed generation (see {@link Tokenizer.createStreamDecoder}). */
export interface StreamDecoder {
  /** Appends a token id; returns the text it completes ('' while a multi-byte character is still incomplete). */
  push(id: number): string;
  /** Returns whatever is still held back (an incomplete trailing character decodes as U+FFFD) and resets. */
  flush(): string;
}

/** A text tokenizer with the model's special tokens and chat template. */
export interface Tokenizer {
  /** Number of token ids (every id this tokenizer produces or accepts is below it). */
  readonly vocabSize: number;
  /** The beginning-of-sequence token id, or null when the tokenizer has none. */
  readonly bosTokenId: number | null;
  /** Generation stops on any of these ids. */
  readonly eosTokenIds: number[];
  /** Text -> ids; `addSpecialTokens` (default true) adds BOS/EOS as the tokenizer's configuration says. */
  encode(text: string, options?: { addSpecialTokens?: boolean }): Int32Array;
  /** Ids -> text; `skipSpecialTokens` (default false) leaves out special tokens (BOS, EOS, chat markers). */
  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string;
  /**
   * Incremental decoding for streaming: `push(id)` returns the new text produced by appending `id`, holding back
   * incomplete UTF-8 / byte-fallback sequences until complete. The pieces concatenate to `decode(ids, options)`.
   */
  createStreamDecoder(options?: { skipSpecialTokens?: boolean }): StreamDecoder;
  /** Renders the checkpoint's chat template (null when it has none). */
  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string | null;
}

/** Everything a {@link LibraryTokenizer} is built from. */
interface TokenizerSpec {
  source: string;
  json: Record<string, unknown>;
  config: Record<string, unknown>;
  /** Resolves the special token ids once the vocabulary is built. */
  specialIds(hf: HfTokenizer, vocabSize: number): { bosTokenId: number | null; eosTokenIds: number[] };
  bosToken: string | null;
  eosToken: string | null;
  chatTemplate: string | null;
  /** Add BOS / EOS when the tokenizer.json post-processor did not (tokenizer_config add_bos_token / add_eos_token). */
  addBos: boolean;
  addEos: boolean;
  /** The tokens by id, to fill ids the library's vocabulary lost to duplicate token strings (GGUF). */
  tokensById?: string[];
}

/** Builds the library tokenizer, turning its plain Errors into DynamoeErrors that name the source. */
function createHfTokenizer(spec: TokenizerSpec): HfTokenizer {
  try {
    return new HfTokenizer(spec.json, spec.config);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    const unsupported = /^Unknown \w+ type/.test(message);
    throw new DynamoeError(
      unsupported ? 'ERR_DYNAMOE_UNSUPPORTED' : 'ERR_DYNAMOE_FORMAT',
      `${spec.source}: the tokenizer could not be built: ${message}`,
    );
  }
}

/** {@link Tokenizer} over a @huggingface/tokenizers instance. */
class LibraryTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosTokenId: number | null;
  readonly eosTokenIds: number[];
  private readonly hf: HfTokenizer;
  private readonly vocab: string[];
  private readonly cleanUp: boolean;
  private readonly appendEosId: number | undefined;
  private compiledTemplate: Template | null = null;

  constructor(private readonly spec: TokenizerSpec) {
    this.hf = createHfTokenizer(spec);
    if (this.hf.model === null) throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${spec.source}: tokenizer has no model`);
    this.vocab = this.hf.model.vocab; // by id, added tokens included
    spec.tokensById?.forEach((token, id) => {
      if (this.vocab[id] === undefined) this.vocab[id] = token;
    });
    this.vocabSize = this.vocab.length;
    const { bosTokenId, eosTokenIds } = spec.specialIds(this.hf, this.vocabSize);
    this.bosTokenId = bosTokenId;
    this.eosTokenIds = eosTokenIds;
    this.appendEosId = spec.eosToken === null ? undefined : this.hf.token_to_id(spec.eosToken);
    // tokenizers.js cleans up spaces before punctuation unless told not to; transformers (and llama.cpp) do not.
    this.cleanUp = spec.config.clean_up_tokenization_spaces === true;
  }

  encode(text: string, options?: { addSpecialTokens?: boolean }): Int32Array {
    if (typeof text !== 'string') throw new DynamoeError('ERR_DYNAMOE_TYPE', `text must be a string, got ${describe(text)}`);
    const add = options?.addSpecialTokens ?? true;
    const ids: (number | undefined)[] = this.library('encode', () => this.hf.encode(text, { add_special_tokens: add }).ids);
    const bos = this.bosTokenId;
    const eos = this.appendEosId;
    if (add && this.spec.addBos && bos !== null && ids[0] !== bos) ids.unshift(bos);
    if (add && this.spec.addEos && eos !== undefined && ids[ids.length - 1] !== eos) ids.push(eos);
    // The library hands out whatever ids tokenizer.json gives (vocabulary, added tokens, post-processor), and undefined
    // for an unk_token missing from the vocabulary: only ids in [0, vocabSize) that fit an Int32Array may leave.
    const limit = Math.min(this.vocabSize, 2 ** 31);
    if (!ids.every((id): id is number => typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < limit)) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${this.spec.source}: a token of the input has no valid id in the vocabulary`);
    }
    return Int32Array.from(ids);
  }

  decode(ids: ArrayLike<number>, options?: { skipSpecialTokens?: boolean }): string {
    return this.decodeChecked(this.checkIds(ids), options?.skipSpecialTokens ?? false);
  }

  createStreamDecoder(options?: { skipSpecialTokens?: boolean }): StreamDecoder {
    const skip = options?.skipSpecialTokens ?? false;
    // As text-generation-inference does: decode a short window twice (with and without the newest ids) and emit
    // the difference, so decoders that look at neighbours (byte fallback, SentencePiece's leading-space strip) agree
    // with a full decode; the window restarts after each emission.
    const ids: number[] = [];
    let prefix = 0; // start of the window
    let read = 0; // ids up to here have been emitted
    const emit = (force: boolean): string => {
      const before = read > prefix ? this.decodeChecked(ids.slice(prefix, read), skip) : '';
      const text = this.decodeChecked(ids.slice(prefix), skip);
      // A trailing U+FFFD is an unfinished UTF-8 sequence (byte fallback or byte-level): wait for its other bytes.
      if (!force && (text.length <= before.length || text.endsWith('\uFFFD'))) return '';
      ids.splice(0, read); // the new window starts at the old read position: drop what precedes it
      prefix = 0;
      read = ids.length;
      return text.slice(before.length);
    };
    return {
      push: (id: number): string => {
        ids.push(...this.checkIds([id]));
        return emit(false);
      },
      flush: (): string => {
        const rest = read < ids.length ? emit(true) : '';
        ids.length = prefix = read = 0;
        return rest;
      },
    };
  }

  applyChatTemplate(messages: ChatMessage[], options?: { addGenerationPrompt?: boolean }): string | null {
    if (this.spec.chatTemplate === null) return null;
    const valid =
      Array.isArray(messages) &&
      messages.every((m) => typeof m === 'object' && m !== null && typeof m.role === 'string' && typeof m.content === 'string');
    if (!valid) {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', `messages must be an array of { role: string, content: string }, got ${describe(messages)}`);
    }
    if (this.compiledTemplate === null) {
      try {
        this.compiledTemplate = new Template(this.spec.chatTemplate);
      } catch (error) {
        throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${this.spec.source}: the chat template does not parse: ${errorText(error)}`);
      }
    }
    try {
      return this.compiledTemplate.render({
        messages: messages.map((m) => ({ ...m })),
        add_generation_prompt: options?.addGenerationPrompt ?? false,
        bos_token: this.spec.bosToken ?? '',
        eos_token: this.spec.eosToken ?? '',
      });
    } catch (error) {
      // Templates reject conversations they cannot render (raise_exception), e.g. roles that do not alternate.
      throw new DynamoeError('ERR_DYNAMOE_VALUE', `${this.spec.source}: the chat template failed: ${errorText(error)}`);
    }
  }

  private checkIds(ids: ArrayLike<number>): number[] {
    if (typeof ids !== 'object' || ids === null || typeof ids.length !== 'number') {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', `ids must be an array of token ids, got ${describe(ids)}`);
    }
    const list = Array.from(ids);
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new DynamoeError('ERR_DYNAMOE_VALUE', `token id must be an integer in [0, ${this.vocabSize}), got ${describe(id)}`);
      }
    }
    return list;
  }

  private decodeChecked(ids: number[], skip: boolean): string {
    const present = ids.filter((id) => this.vocab[id] !== undefined); // ids no token uses decode to nothing
    if (present.length === 0) return ''; // tokenizers.js throws on an empty list
    return this.library('decode', () => this.hf.decode(present, { skip_special_tokens: skip, clean_up_tokenization_spaces: this.cleanUp }));
  }

  /** Runs a library call; its errors become ERR_DYNAMOE_FORMAT naming the source. */
  private library<T>(doing: string, call: () => T): T {
    try {
      return call();
    } catch (error) {
      // The library checks a tokenizer.json's components only when they run: a malformed one throws here, uncoded.
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${this.spec.source}: the tokenizer cannot ${doing}: ${errorText(error)}`);
    }
  }
}

function errorText(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Reads and parses a JSON object; undefined when an optional file is absent. */
async function readJsonObject(file: string, required: boolean): Promise<Record<string, unknown> | undefined> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (error) {
    if (!required && (error as { code?: unknown }).code === 'ENOENT') return undefined;
    throw new DynamoeError('ERR_DYNAMOE_IO', `cannot read ${file}: ${errorText(error)}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${file} is not valid JSON: ${errorText(error)}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${file} must hold a JSON object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

async function readOptionalText(file: string): Promise<string | null> {
  try {
    return await fs.readFile(file, 'utf8');
  } catch (error) {
    if ((error as { code?: unknown }).code === 'ENOENT') return null;
    throw new DynamoeError('ERR_DYNAMOE_IO', `cannot read ${file}: ${errorText(error)}`);
  }
}

/** A chat_template value: a string, or named templates (a list of { name, template } or an object) -> 'default'. */
function pickTemplate(value: unknown, where: string): string | null {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value.find((t) => typeof t === 'object' && t !== null && (t as { name?: unknown }).name === 'default');
    const template = (named as { template?: unknown } | undefined)?.template;
    if (named === undefined || typeof template === 'string') return (template as string | undefined) ?? null;
  } else if (typeof value === 'object') {
    const template = (value as Record<string, unknown>).default;
    if (template === undefined || typeof template === 'string') return template ?? null;
  }
  throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${where}: chat_template must be a string or a list of { name, template }, got ${describe(value)}`);
}

/** A special token in tokenizer_config.json: a string, or an AddedToken object with `content`. */
function tokenText(value: unknown): string | null {
  if (typeof value === 'string') return value;
  const content = (value as { content?: unknown } | null | undefined)?.content;
  return typeof content === 'string' ? content : null;
}

/** Token ids from generation_config.json: an id or a list of ids. */
function generationIds(value: unknown, key: string, file: string, vocabSize: number): number[] {
  if (value === undefined || value === null) return [];
  const list = Array.isArray(value) ? value : [value];
  if (!list.every((id) => Number.isInteger(id) && id >= 0 && id < vocabSize)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${file}: ${key} must be a token id or a list of token ids below ${vocabSize}, got ${describe(value)}`);
  }
  return list as number[];
}

/**
 * Loads a Hugging Face tokenizer directory: tokenizer.json (required), tokenizer_config.json (special tokens, chat
 * template; or chat_template.jinja / chat_template.json) and generation_config.json (eos ids, one or a list).
 * Rejects with ERR_DYNAMOE_IO when tokenizer.json cannot be read, ERR_DYNAMOE_FORMAT for invalid JSON or values,
 * ERR_DYNAMOE_UNSUPPORTED for tokenizer components the library does not implement.
 */
export async function loadTokenizerFromDirectory(dir: string): Promise<Tokenizer> {
  if (typeof dir !== 'string') throw new DynamoeError('ERR_DYNAMOE_TYPE', `dir must be a string, got ${describe(dir)}`);
  const tokenizerFile = path.join(dir, 'tokenizer.json');
  const configFile = path.join(dir, 'tokenizer_config.json');
  const generationFile = path.join(dir, 'generation_config.json');
  const json = (await readJsonObject(tokenizerFile, true)) as Record<string, unknown>;
  const config = (await readJsonObject(configFile, false)) ?? {};
  const generation = (await readJsonObject(generationFile, false)) ?? {};

  if (typeof json.model !== 'object' || json.model === null) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${tokenizerFile}: 'model' must be an object, got ${describe(json.model)}`);
  }
  if (json.added_tokens !== undefined && !Array.isArray(json.added_tokens)) {
    throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${tokenizerFile}: 'added_tokens' must be an array, got ${describe(json.added_tokens)}`);
  }
  // Their ids become BOS/EOS and encode() output as they are: a fractional or negative id must not get that far.
  for (const token of (json.added_tokens ?? []) as unknown[]) {
    const id = (token as { id?: unknown } | null)?.id;
    if (!(typeof id === 'number' && Number.isInteger(id) && id >= 0 && id < 2 ** 31)) {
      throw new DynamoeError('ERR_DYNAMOE_FORMAT', `${tokenizerFile}: an added token's id must be an integer in [0, 2^31), got ${describe(id)}`);
    }
  }
  // tokenizers.js requires every component key to be present (null when unused).
  const fullJson = { normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null, ...json, added_tokens: json.added_tokens ?? [] };
  const extra = config.additional_special_tokens;
  const libraryConfig = {
    ...config,
    additional_special_tokens: Array.isArray(extra) ? extra.map(tokenText).filter((t) => t !== null) : [],
  };

  let chatTemplate = pickTemplate(config.chat_template, configFile);
  if (chatTemplate === null) chatTemplate = await readOptionalText(path.join(dir, 'chat_template.jinja'));
  if (chatTemplate === null) {
    const templateFile = path.join(dir, 'chat_template.json');
    chatTemplate = pickTemplate((await readJsonObject(templateFile, false))?.chat_template, templateFile);
  }

  const bosToken = tokenText(config.bos_token);
  const eosToken = tokenText(config.eos_token);
  return new LibraryTokenizer({
    source: dir,
    json: fullJson,
    config: libraryConfig,
    specialIds: (hf, vocabSize) => {
      const idOf = (token: string | null) => (token === null ? undefined : hf.token_to_id(token));
      const generationBos = generationIds(generation.bos_token_id, 'bos_token_id', generationFile, vocabSize)[0];
      // generation_config's eos ids first (what transformers stops on), then the tokenizer's own eos_token.
      const eosTokenIds = generationIds(generation.eos_token_id, 'eos_token_id', generationFile, vocabSize);
      const eosId = idOf(eosToken);
      if (eosId !== undefined && !eosTokenIds.includes(eosId)) eosTokenIds.push(eosId);
      return { bosTokenId: idOf(bosToken) ?? generationBos ?? null, eosTokenIds };
    },
    bosToken,
    eosToken,
    chatTemplate,
    addBos: config.add_bos_token === true,
    addEos: config.add_eos_token === true,
  });
}

/**
 * Builds a tokenizer from GGUF metadata (keys as llama.cpp writes them: tokenizer.ggml.model 'gpt2' or 'llama',
 * tokens, scores, token_type, merges, special token ids, add_bos_token, pre, tokenizer.chat_template). Values are
 * plain (numbers, bigints, strings, booleans, arrays or typed arrays) or wrapped as { type, value }. `source` names
 * the file in error messages. Throws ERR_DYNAMOE_UNSUPPORTED for other tokenizer models and ERR_DYNAMOE_FORMAT
 * (naming the key) for missing or ill-typed keys.
 */
export function tokenizerFromGgufMetadata(metadata: ReadonlyMap<string, unknown>, source: string): Tokenizer {
  if (typeof (metadata as { get?: unknown } | null)?.get !== 'function') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `metadata must be a Map, got ${describe(metadata)}`);
  }
  const parts = ggufTokenizerParts(metadata, String(source));
  return new LibraryTokenizer({
    source: String(source),
    json: parts.json,
    config: { clean_up_tokenization_spaces: false },
    specialIds: () => ({ bosTokenId: parts.bosTokenId, eosTokenIds: parts.eosTokenIds }),
    bosToken: parts.bosToken,
    eosToken: parts.eosToken,
    chatTemplate: parts.chatTemplate,
    addBos: false, // the post-processor built from add_bos_token / add_eos_token already adds them
    addEos: false,
    tokensById: parts.tokens,
  });
}
