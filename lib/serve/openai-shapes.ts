// OpenAI's response and stream-chunk shapes for chat and text completions, with dynamoe's experts_per_token usage.
import { randomUUID } from 'crypto';
import { GeneratedToken, GenerationSummary } from '../model/model';
import { RoutingStats } from '../model/routing-stats';

/** 'stop': the model's end token or a stop string; 'length': max_tokens reached. */
export type FinishReason = 'stop' | 'length';

/** dynamoe's extension of `usage`: mean experts per token over the prompt and the generated tokens. */
export interface ExpertsPerToken {
  /** Over all MoE layers. */
  overall: number;
  /** One per MoE layer, in layer order. */
  per_layer: number[];
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  experts_per_token: ExpertsPerToken;
}

/** What every response and chunk of one request repeats. */
export interface ResponseHead {
  id: string;
  created: number;
  model: string;
}

export function newResponseHead(endpoint: 'chat' | 'completion', model: string): ResponseHead {
  const prefix = endpoint === 'chat' ? 'chatcmpl' : 'cmpl';
  return { id: `${prefix}-${randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model };
}

export function finishReasonOf(summary: GenerationSummary): FinishReason {
  return summary.stopReason === 'maxTokens' ? 'length' : 'stop';
}

export function expertsPerToken(stats: RoutingStats): ExpertsPerToken {
  return { overall: stats.expertsPerToken, per_layer: stats.layers.map((l) => l.expertsPerToken) };
}

export function usageOf(summary: GenerationSummary): Usage {
  const completion = summary.tokenIds.length;
  return {
    prompt_tokens: summary.promptTokens,
    completion_tokens: completion,
    total_tokens: summary.promptTokens + completion,
    experts_per_token: expertsPerToken(summary.stats),
  };
}

/** A token's logprobs as the generation reported them, with its text decoded alone. */
export interface LoggedToken {
  token: string;
  logprob: number;
  top: Array<{ token: string; logprob: number }>;
}

export function loggedToken(token: GeneratedToken, text: string): LoggedToken {
  return { token: text, logprob: token.logprob ?? 0, top: (token.topLogprobs ?? []).map((t) => ({ token: t.text, logprob: t.logprob })) };
}

const utf8 = (text: string) => Array.from(Buffer.from(text, 'utf8'));

/**
 * OpenAI's logprobs object of some tokens: chat's `content` entries, or the completions' parallel lists
 * (`text_offset` counts from `offset`, the characters of the completion before these tokens); null without logprobs.
 */
export function logprobsBody(endpoint: 'chat' | 'completion', tokens: LoggedToken[] | undefined, offset = 0): unknown {
  if (!tokens) return null;
  if (endpoint === 'chat') {
    return {
      content: tokens.map((t) => ({
        token: t.token, logprob: t.logprob, bytes: utf8(t.token),
        top_logprobs: t.top.map((alt) => ({ token: alt.token, logprob: alt.logprob, bytes: utf8(alt.token) })),
      })),
    };
  }
  const text_offset: number[] = [];
  tokens.reduce((at, t) => (text_offset.push(at), at + t.token.length), offset);
  return {
    tokens: tokens.map((t) => t.token),
    token_logprobs: tokens.map((t) => t.logprob),
    // One object per position, best first: each alternative's text to its logprob (the best of equal texts kept).
    top_logprobs: tokens.map((t) => {
      const entries: Record<string, number> = {};
      for (const alt of t.top) if (!Object.hasOwn(entries, alt.token)) entries[alt.token] = alt.logprob;
      return entries;
    }),
    text_offset,
  };
}

/** The whole answer of a request made without `stream`. */
export function completionBody(
  endpoint: 'chat' | 'completion',
  head: ResponseHead,
  summary: GenerationSummary,
  tokens?: LoggedToken[],
): Record<string, unknown> {
  const finish_reason = finishReasonOf(summary);
  const logprobs = logprobsBody(endpoint, tokens);
  const choice =
    endpoint === 'chat'
      ? { index: 0, message: { role: 'assistant', content: summary.text }, logprobs, finish_reason }
      : { index: 0, text: summary.text, logprobs, finish_reason };
  return {
    ...head,
    object: endpoint === 'chat' ? 'chat.completion' : 'text_completion',
    choices: [choice],
    usage: usageOf(summary),
    routing_policy: summary.stats.policy,
  };
}

/**
 * One stream chunk: new text (chat: `delta.content`; the first chat chunk also carries `role`), or the last one's
 * empty delta with its finish reason.
 */
export function completionChunk(
  endpoint: 'chat' | 'completion',
  head: ResponseHead,
  piece: { text: string; first?: boolean; finishReason?: FinishReason; tokens?: LoggedToken[]; offset?: number },
): Record<string, unknown> {
  const finish_reason = piece.finishReason ?? null;
  const logprobs = logprobsBody(endpoint, piece.tokens, piece.offset);
  if (endpoint === 'completion') {
    return { ...head, object: 'text_completion', choices: [{ index: 0, text: piece.text, logprobs, finish_reason }] };
  }
  const delta: Record<string, string> = piece.first ? { role: 'assistant', content: piece.text } : {};
  if (!piece.first && piece.text !== '') delta.content = piece.text;
  return { ...head, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs, finish_reason }] };
}

/** The chunk `stream_options.include_usage` asks for: no choices, the usage, just before [DONE]. */
export function usageChunk(
  endpoint: 'chat' | 'completion',
  head: ResponseHead,
  summary: GenerationSummary,
): Record<string, unknown> {
  return {
    ...head,
    object: endpoint === 'chat' ? 'chat.completion.chunk' : 'text_completion',
    choices: [],
    usage: usageOf(summary),
    routing_policy: summary.stats.policy,
  };
}
