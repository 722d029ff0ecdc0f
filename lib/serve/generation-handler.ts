// One chat or text completion: check it, wait for a sequence slot, generate, stream chunks or answer JSON.
import type { IncomingMessage, ServerResponse } from 'http';
import { randomInt } from 'crypto';
import { Generation, Model } from '../model/model';
import { AdmissionQueue } from './admission-queue';
import { promptIds } from './chat-prompt';
import { clientGone, readJsonBody, sendJson } from './http-json';
import {
  completionBody, completionChunk, finishReasonOf, LoggedToken, loggedToken, newResponseHead, usageChunk,
} from './openai-shapes';
import { GenerationRequest, parseChatRequest, parseCompletionRequest } from './parse-request';
import { describeError, ServeError } from './serve-error';
import { ServerMetrics } from './server-metrics';
import { endEventStream, sendEvent, startEventStream } from './sse';

/** OpenAI's default max_tokens of /v1/completions (chat completions default to the server's defaultMaxTokens). */
export const DEFAULT_COMPLETION_MAX_TOKENS = 16;

/** What a generation request needs from the server. */
export interface GenerationContext {
  model: Model;
  /** The id clients name the model by. */
  modelId: string;
  /** Most positions (prompt + max_tokens) one request may use. */
  contextTokens: number;
  /** max_tokens of a chat request that gives none (capped by the room the context leaves). */
  defaultMaxTokens: number;
  maxBodyBytes: number;
  admission: AdmissionQueue;
  metrics: ServerMetrics;
  /** One per generation holding a slot; close() aborts them after the drain timeout. */
  controllers: Set<AbortController>;
}

/** The request's max_tokens, checked with its prompt against the context (400 ERR_DYNAMOE_SHAPE when over). */
function maxTokensWithin(request: GenerationRequest, promptTokens: number, context: number, chatDefault: number): number {
  const promptParam = request.endpoint === 'chat' ? 'messages' : 'prompt';
  if (promptTokens >= context) {
    const message = `the prompt has ${promptTokens} tokens; the context of ${context} tokens leaves no room to generate`;
    throw new ServeError(400, 'ERR_DYNAMOE_SHAPE', message, promptParam);
  }
  const room = context - promptTokens;
  if (request.maxTokens === undefined) {
    return Math.min(request.endpoint === 'chat' ? chatDefault : DEFAULT_COMPLETION_MAX_TOKENS, room);
  }
  if (request.maxTokens > room) {
    const total = promptTokens + request.maxTokens;
    const message =
      `prompt (${promptTokens} tokens) + max_tokens (${request.maxTokens}) = ${total} ` +
      `exceeds the context of ${context} tokens`;
    throw new ServeError(400, 'ERR_DYNAMOE_SHAPE', message, 'max_tokens');
  }
  return request.maxTokens;
}

/** Checks a request and makes its generation (not started: it runs once a slot is free). */
function prepare(context: GenerationContext, endpoint: 'chat' | 'completion', body: unknown, signal: AbortSignal) {
  const request = endpoint === 'chat' ? parseChatRequest(body) : parseCompletionRequest(body);
  if (request.model !== undefined && request.model !== context.modelId) {
    const message = `The model '${request.model}' does not exist; this server serves '${context.modelId}'`;
    throw new ServeError(404, 'model_not_found', message, 'model');
  }
  const { model } = context;
  const ids = promptIds(model.tokenizer, request.prompt);
  const maxTokens = maxTokensWithin(request, ids.length, context.contextTokens, context.defaultMaxTokens);
  // Made before queueing, so a bad policy, sampling value or token id is a 400 at once, never a wait then an error.
  const generation = model.generate(ids, {
    maxTokens,
    temperature: request.temperature,
    topP: request.topP,
    topK: request.topK,
    seed: request.seed ?? randomInt(2 ** 31),
    stop: request.stop,
    policy: request.policy,
    signal,
    ...(request.logprobs !== undefined ? { logprobs: request.logprobs } : {}),
  });
  return { request, generation, promptTokens: ids.length };
}

/**
 * Serves POST /v1/chat/completions or /v1/completions. Throws (for the server to answer with an error status) only
 * before any of the response is sent; once a stream has started, a failure becomes an OpenAI error event before
 * `[DONE]`. `received` is when the request arrived (performance.now()).
 */
export async function handleGeneration(
  context: GenerationContext,
  endpoint: 'chat' | 'completion',
  req: IncomingMessage,
  res: ServerResponse,
  received: number,
): Promise<void> {
  const body = await readJsonBody(req, context.maxBodyBytes);
  const controller = new AbortController();
  // 'close' also follows a normal end; only a response not yet finished means the client went away.
  const onClose = () => {
    if (!res.writableFinished) controller.abort(clientGone());
  };
  res.on('close', onClose);
  let generation: Generation | undefined;
  let release: (() => void) | undefined;
  try {
    const prepared = prepare(context, endpoint, body, controller.signal);
    generation = prepared.generation;
    release = await context.admission.acquire(controller.signal);
    context.controllers.add(controller);
    await run(context, prepared, res, received);
  } catch (error) {
    // An abort says why through its reason (client gone, shutdown), better than the library's ERR_DYNAMOE_ABORTED.
    const reported = controller.signal.aborted ? (controller.signal.reason as unknown) : error;
    if (release) context.metrics.generationEnded(controller.signal.aborted ? 'aborted' : 'error', generation?.stats);
    if (!res.headersSent) throw reported;
    await sendEvent(res, describeError(reported).body);
    endEventStream(res);
    if (describeError(reported).status === 500) throw reported; // logged by the server; the stream is already ended
  } finally {
    release?.();
    context.controllers.delete(controller);
    res.off('close', onClose);
  }
}

async function run(
  { metrics, modelId, model }: GenerationContext,
  { request, generation, promptTokens }: ReturnType<typeof prepare>,
  res: ServerResponse,
  received: number,
): Promise<void> {
  const { endpoint, stream } = request;
  metrics.promptTokens.inc({}, promptTokens);
  const head = newResponseHead(endpoint, modelId);
  if (stream) {
    startEventStream(res);
    if (endpoint === 'chat') await sendEvent(res, completionChunk(endpoint, head, { text: '', first: true }));
  }
  let tokens = 0;
  // With logprobs: every token's, and those not yet streamed (a token whose text is held back waits for the next).
  const logged: LoggedToken[] | undefined = request.logprobs !== undefined ? [] : undefined;
  let unsent = 0;
  let sentText = 0;
  const pendingTokens = () => (logged ? logged.slice(unsent) : undefined);
  for await (const token of generation) {
    if (tokens++ === 0) metrics.timeToFirstToken.observe((performance.now() - received) / 1000);
    metrics.completionTokens.inc();
    logged?.push(loggedToken(token, model.tokenizer.decode([token.id], { skipSpecialTokens: false })));
    if (stream && token.text !== '') {
      await sendEvent(res, completionChunk(endpoint, head, { text: token.text, tokens: pendingTokens(), offset: sentText }));
      unsent = logged?.length ?? 0;
      sentText += token.text.length;
    }
  }
  const summary = generation.summary;
  if (!summary) throw new Error('the generation ended without a summary');
  const finishReason = finishReasonOf(summary);
  const decodeSteps = summary.tokenIds.length - 1; // the prefill step yields the first token
  if (decodeSteps > 0 && summary.decodeMs > 0) metrics.decodeRate.observe((decodeSteps * 1000) / summary.decodeMs);
  metrics.generationEnded(finishReason, summary.stats);
  if (!stream) {
    sendJson(res, 200, completionBody(endpoint, head, summary, logged));
    return;
  }
  const rest = logged && unsent < logged.length ? { tokens: pendingTokens(), offset: sentText } : {};
  await sendEvent(res, completionChunk(endpoint, head, { text: '', finishReason, ...rest }));
  if (request.includeUsage) await sendEvent(res, usageChunk(endpoint, head, summary));
  endEventStream(res);
}
