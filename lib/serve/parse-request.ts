// The bodies of POST /v1/chat/completions and /v1/completions checked field by field (OpenAI's names, types, ranges).
import { PolicyOption } from '../policy/per-layer';
import { ChatMessage } from '../tokenizer/tokenizer';
import { RequestFields, typeFailure, unsupported, valueFailure } from './request-fields';

/** OpenAI's default temperature (the library's own default, 0, is greedy). */
export const DEFAULT_TEMPERATURE = 1;

/** Most stop strings a request may give (OpenAI allows 4; scanning for each costs a little per token). */
export const MAX_STOP_STRINGS = 16;

/** Most alternatives per position a request may ask logprobs of (OpenAI's top_logprobs limit). */
export const MAX_TOP_LOGPROBS = 20;

/** What a request asks the model to continue. */
export type RequestPrompt =
  | { kind: 'messages'; messages: ChatMessage[] }
  | { kind: 'text'; text: string }
  | { kind: 'tokens'; tokens: number[] };

/** A checked chat or completion request. */
export interface GenerationRequest {
  endpoint: 'chat' | 'completion';
  /** The model the client named (undefined when it named none). */
  model: string | undefined;
  prompt: RequestPrompt;
  /** Undefined: the endpoint's default (see the server). */
  maxTokens: number | undefined;
  temperature: number;
  topP: number;
  topK: number;
  /** Undefined: a fresh random seed per request, as OpenAI samples differently each time. */
  seed: number | undefined;
  stop: string[];
  policy: PolicyOption | undefined;
  stream: boolean;
  /** stream_options.include_usage: a last chunk with the usage (and experts per token), before [DONE]. */
  includeUsage: boolean;
  /** How many alternatives each token's logprobs list (chat: top_logprobs; completions: logprobs); undefined: none. */
  logprobs: number | undefined;
}

function stopStrings(fields: RequestFields): string[] {
  const stop = fields.value('stop');
  if (stop === undefined) return [];
  const list = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(list) || !list.every((s) => typeof s === 'string')) {
    throw typeFailure('stop', 'a string or an array of strings', stop);
  }
  if (list.length > MAX_STOP_STRINGS) throw valueFailure('stop', `at most ${MAX_STOP_STRINGS} strings`, stop);
  return list as string[];
}

function routingPolicy(fields: RequestFields): PolicyOption | undefined {
  const policy = fields.value('routing_policy');
  // The library takes 'top-p:0.4', 'top-k:1,top-p:0.5', policy objects, per-layer arrays and policy files, and
  // checks their values against the model (ERR_DYNAMOE_POLICY); only the outer type is checked here.
  if (policy !== undefined && typeof policy !== 'string' && typeof policy !== 'object') {
    throw typeFailure('routing_policy', "a policy ('top-p:0.4'), a policy object, or an array of them", policy);
  }
  return policy as PolicyOption | undefined;
}

/** Fields both endpoints share. */
function commonFields(
  fields: RequestFields,
  endpoint: GenerationRequest['endpoint'],
  prompt: RequestPrompt,
  logprobs: number | undefined,
): GenerationRequest {
  const n = fields.value('n');
  if (n !== undefined && n !== 1) throw unsupported('n', `only n = 1 is supported, got ${JSON.stringify(n)}`);
  const stream = fields.boolean('stream') ?? false;
  const streamOptions = stream ? new RequestFields(fields.object('stream_options') ?? {}) : undefined;
  const maxTokens =
    endpoint === 'chat'
      ? (fields.integer('max_completion_tokens', 1) ?? fields.integer('max_tokens', 1))
      : fields.integer('max_tokens', 1);
  return {
    endpoint,
    model: fields.string('model'),
    prompt,
    maxTokens,
    temperature: fields.number('temperature', 0, 2) ?? DEFAULT_TEMPERATURE,
    topP: fields.number('top_p', 0, 1, true) ?? 1,
    topK: fields.integer('top_k', 0) ?? 0,
    seed: fields.integer('seed', Number.MIN_SAFE_INTEGER),
    stop: stopStrings(fields),
    policy: routingPolicy(fields),
    stream,
    includeUsage: streamOptions?.boolean('include_usage') ?? false,
    logprobs,
  };
}

/** One message's content: a string, or text parts joined (images and audio are refused). */
function messageContent(value: unknown, param: string): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (!Array.isArray(value)) throw typeFailure(param, 'a string or an array of content parts', value);
  return value
    .map((part: unknown, i) => {
      const fields = new RequestFields(part);
      const type = fields.string('type');
      if (type !== 'text') {
        throw unsupported(`${param}[${i}]`, `only text content parts are supported, got type ${JSON.stringify(type)}`);
      }
      const text = fields.string('text');
      if (text === undefined) throw typeFailure(`${param}[${i}].text`, 'a string', part);
      return text;
    })
    .join('');
}

/** Checks a POST /v1/chat/completions body. */
export function parseChatRequest(body: unknown): GenerationRequest {
  const fields = new RequestFields(body);
  const list = fields.value('messages');
  if (!Array.isArray(list)) throw typeFailure('messages', 'an array of messages', list);
  if (list.length === 0) throw valueFailure('messages', 'a non-empty array', list);
  const messages = list.map((item: unknown, i): ChatMessage => {
    const message = new RequestFields(item);
    const role = message.string('role');
    if (role === undefined) throw typeFailure(`messages[${i}].role`, 'a string', item);
    return { role, content: messageContent(message.value('content'), `messages[${i}].content`) };
  });
  // logprobs: true reports each token's; top_logprobs (which needs it) that many alternatives too.
  const top = fields.integer('top_logprobs', 0, MAX_TOP_LOGPROBS);
  const logprobs = fields.boolean('logprobs') ?? false;
  if (top !== undefined && !logprobs) throw valueFailure('top_logprobs', 'given with logprobs: true', top);
  return commonFields(fields, 'chat', { kind: 'messages', messages }, logprobs ? (top ?? 0) : undefined);
}

function completionPrompt(value: unknown): RequestPrompt {
  const isIds = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
  if (typeof value === 'string') return { kind: 'text', text: value };
  if (isIds(value)) return { kind: 'tokens', tokens: value };
  if (Array.isArray(value) && value.length === 1 && (typeof value[0] === 'string' || isIds(value[0]))) {
    return completionPrompt(value[0]);
  }
  if (Array.isArray(value) && value.length > 1 && value.every((v) => typeof v === 'string' || isIds(v))) {
    throw unsupported('prompt', `one prompt per request is supported, got ${value.length}`);
  }
  throw typeFailure('prompt', 'a string, an array of token ids, or an array holding one of them', value);
}

/** Checks a POST /v1/completions body. */
export function parseCompletionRequest(body: unknown): GenerationRequest {
  const fields = new RequestFields(body);
  const prompt = completionPrompt(fields.value('prompt'));
  const bestOf = fields.value('best_of');
  if (bestOf !== undefined && bestOf !== 1) {
    throw unsupported('best_of', `only best_of = 1 is supported, got ${JSON.stringify(bestOf)}`);
  }
  if (fields.value('echo') === true) throw unsupported('echo', 'echo is not supported');
  const suffix = fields.value('suffix');
  if (suffix !== undefined && suffix !== '') throw unsupported('suffix', 'suffix (insertion) is not supported');
  return commonFields(fields, 'completion', prompt, fields.integer('logprobs', 0, MAX_TOP_LOGPROBS));
}
