// Splits an evaluation text into the token windows perplexity is measured on.
import { DynamoeError } from '../errors';
import { Tokenizer } from '../tokenizer/tokenizer';
import { describe, requireObject, typeError } from '../validate';

/** Options of {@link textWindows}. */
export interface TextWindowOptions {
  /** Tokens per window, BOS included (default: 512, or the model's context when smaller). */
  window?: number;
  /** Use only the text's first this many tokens (default: all). */
  maxTokens?: number;
}

/**
 * The text as consecutive, non-overlapping windows, each starting with BOS when the tokenizer has one (as each
 * window is a fresh sequence); every token after a window's first is predicted once.
 */
export function textWindows(
  tokenizer: Tokenizer,
  text: string,
  maxContext: number,
  options: TextWindowOptions = {},
): Int32Array[] {
  if (typeof tokenizer !== 'object' || tokenizer === null || typeof tokenizer.encode !== 'function') {
    typeError('tokenizer', "a model's tokenizer", tokenizer);
  }
  if (typeof text !== 'string') typeError('text', 'a string', text);
  if (!Number.isInteger(maxContext) || maxContext < 2) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `maxContext must be an integer >= 2, got ${describe(maxContext)}`);
  }
  requireObject(options, 'textWindows options');
  const window = options.window ?? Math.min(512, maxContext);
  if (!Number.isInteger(window) || window < 2 || window > maxContext) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `window must be an integer in [2, ${maxContext}], got ${window}`);
  }
  const { maxTokens } = options;
  if (maxTokens !== undefined && (!Number.isInteger(maxTokens) || maxTokens < 2)) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `maxTokens must be an integer >= 2, got ${describe(maxTokens)}`);
  }
  let ids = tokenizer.encode(text, { addSpecialTokens: false });
  if (maxTokens !== undefined) ids = ids.subarray(0, maxTokens);
  const bos = tokenizer.bosTokenId;
  const body = bos === null ? window : window - 1;
  const windows: Int32Array[] = [];
  for (let start = 0; start < ids.length; start += body) {
    const chunk = ids.subarray(start, start + body);
    const tokens = new Int32Array(chunk.length + (bos === null ? 0 : 1));
    tokens.set(chunk, tokens.length - chunk.length);
    if (bos !== null) tokens[0] = bos;
    if (tokens.length >= 2) windows.push(tokens);
  }
  if (windows.length === 0) {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', 'the text is too short to measure: it needs at least 2 tokens');
  }
  return windows;
}
