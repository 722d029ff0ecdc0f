// `dynamoe serve` / startServer: the OpenAI-compatible server driven by the official openai client and by raw HTTP.
import { spawn } from 'child_process';
import * as path from 'path';
import OpenAI from 'openai';
import { backendInfo } from '../lib';
import type { Model } from '../lib';
import { createSyntheticModel } from '../lib/model/synthetic-model';
import { chatPromptIds, plainChatPrompt } from '../lib/serve/chat-prompt';
import { RunningServer, startServer } from '../lib/serve/server';
import { ServeOptions } from '../lib/serve/serve-options';
import {
  expectError,
  health,
  post,
  readEvents,
  scrape,
  slowed,
  sseEvents,
  summaryOf,
  until,
} from './serve-helpers';

// Small, so a generation takes milliseconds (the default synthetic model is 100 MB of weights).
const SMALL = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64 };
const MODEL = 'tiny-moe';
const CONTEXT = 256;
const MESSAGES = [
  { role: 'system' as const, content: 'You are terse.' },
  { role: 'user' as const, content: 'Name a prime.' },
];

let model: Model;
let server: RunningServer;
let client: OpenAI;
const extraServers: RunningServer[] = [];

async function startExtra(target: Model, options: ServeOptions): Promise<RunningServer> {
  const extra = await startServer(target, { port: 0, modelName: MODEL, ...options });
  extraServers.push(extra);
  return extra;
}

function clientOf(url: string): OpenAI {
  return new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30000 });
}

beforeAll(async () => {
  model = await createSyntheticModel(SMALL);
  server = await startServer(model, { port: 0, modelName: MODEL, contextTokens: CONTEXT });
  client = clientOf(server.url);
});

afterAll(async () => {
  await Promise.all([server, ...extraServers].map((s) => s?.close({ drainTimeoutMs: 0 })));
  model?.dispose();
});

/** Request fields the openai client's types do not know; it sends them as given. */
const routing = (policy: unknown) => ({ routing_policy: policy }) as unknown as Record<string, never>;

describe('with the openai client', () => {
  test('lists and retrieves the one served model', async () => {
    const models = [];
    for await (const m of client.models.list()) models.push(m);
    expect(models).toHaveLength(1);
    expect(models[0]).toMatchObject({ id: MODEL, object: 'model', owned_by: 'dynamoe', context_length: CONTEXT });
    expect(await client.models.retrieve(MODEL)).toMatchObject({ id: MODEL, object: 'model' });
  });

  test('chat completion: the chat template, greedy text as the library makes it, experts per token', async () => {
    const expected = await summaryOf(model, chatPromptIds(model.tokenizer, MESSAGES), { maxTokens: 6, temperature: 0 });
    const body = { model: MODEL, messages: MESSAGES, max_tokens: 6, temperature: 0 };
    const response = await client.chat.completions.create(body);
    expect(response.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(response.object).toBe('chat.completion');
    expect(response.model).toBe(MODEL);
    expect(Math.abs(response.created - Date.now() / 1000)).toBeLessThan(60);
    expect(response.choices).toHaveLength(1);
    const [choice] = response.choices;
    expect(choice.index).toBe(0);
    expect(choice.message).toEqual({ role: 'assistant', content: expected.text });
    expect(choice.finish_reason).toBe(expected.stopReason === 'maxTokens' ? 'length' : 'stop');
    const promptTokens = chatPromptIds(model.tokenizer, MESSAGES).length;
    expect(response.usage).toEqual({
      prompt_tokens: promptTokens,
      completion_tokens: expected.tokenIds.length,
      total_tokens: promptTokens + expected.tokenIds.length,
      experts_per_token: { overall: 2, per_layer: [2, 2] }, // the synthetic model's default: top-k 2
    });
  });

  test('chat completion streamed: role first, deltas making the same text, finish, usage chunk, [DONE]', async () => {
    const body = { model: MODEL, messages: MESSAGES, max_tokens: 8, temperature: 0 };
    const whole = await client.chat.completions.create(body);
    const streamed = { ...body, stream: true as const, stream_options: { include_usage: true } };
    const stream = await client.chat.completions.create(streamed);
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.length).toBeGreaterThanOrEqual(3);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === MODEL)).toBe(true);
    expect(chunks[0].choices[0].delta).toEqual({ role: 'assistant', content: '' });
    const usage = chunks[chunks.length - 1];
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual(whole.usage);
    const last = chunks[chunks.length - 2].choices[0];
    expect(last.finish_reason).toBe(whole.choices[0].finish_reason);
    expect(last.delta).toEqual({});
    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(whole.choices[0].message.content);
  });

  test('text completion, whole and streamed, as the library generates it', async () => {
    const prompt = 'Harder tasks need more experts';
    const expected = await summaryOf(model, prompt, { maxTokens: 7, temperature: 0 });
    const whole = await client.completions.create({ model: MODEL, prompt, max_tokens: 7, temperature: 0 });
    expect(whole.id).toMatch(/^cmpl-[0-9a-f]{32}$/);
    expect(whole.object).toBe('text_completion');
    expect(whole.choices).toEqual([{ index: 0, text: expected.text, logprobs: null, finish_reason: 'length' }]);
    expect(whole.usage).toMatchObject({
      prompt_tokens: expected.promptTokens,
      completion_tokens: 7,
      total_tokens: expected.promptTokens + 7,
    });

    const stream = await client.completions.create({ model: MODEL, prompt, max_tokens: 7, temperature: 0, stream: true });
    const chunks = [];
    for await (const chunk of stream) chunks.push(chunk);
    expect(chunks.every((c) => c.object === 'text_completion' && c.id.startsWith('cmpl-'))).toBe(true);
    expect(chunks.map((c) => c.choices[0].text).join('')).toBe(expected.text);
    expect(chunks.slice(0, -1).every((c) => c.choices[0].finish_reason === null)).toBe(true);
    expect(chunks[chunks.length - 1].choices[0].finish_reason).toBe('length');
    expect(chunks.some((c) => 'usage' in c && c.usage)).toBe(false); // no include_usage, no usage chunk
  });

  test('logprobs: chat content entries and completion lists, whole and streamed, as the library reports them', async () => {
    const ids = chatPromptIds(model.tokenizer, MESSAGES);
    const expected: Array<{ id: number; logprob?: number; topLogprobs?: Array<{ text: string; logprob: number }> }> = [];
    for await (const token of model.generate(ids, { maxTokens: 6, logprobs: 3 })) expected.push(token);
    const text = (id: number) => model.tokenizer.decode([id], { skipSpecialTokens: false });
    const chat = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3 });
    const content = chat.choices[0].logprobs!.content!;
    expect(content.map((c) => c.token)).toEqual(expected.map((t) => text(t.id)));
    content.forEach((c, i) => {
      expect(c.logprob).toBeCloseTo(expected[i].logprob!, 9);
      expect(c.bytes).toEqual(Array.from(Buffer.from(c.token, 'utf8')));
      expect(c.top_logprobs.map((t) => [t.token, t.logprob])).toEqual(expected[i].topLogprobs!.map((t) => [t.text, t.logprob]));
    });
    // Streamed: every token's entry arrives once, in order, across the chunks.
    const stream = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 6, temperature: 0, logprobs: true, top_logprobs: 3, stream: true });
    const streamed: unknown[] = [];
    for await (const chunk of stream) streamed.push(...(chunk.choices[0]?.logprobs?.content ?? []));
    expect(streamed).toEqual(content);
    // Without logprobs the field stays null; top_logprobs alone is refused.
    const plain = await client.chat.completions.create({ model: MODEL, messages: MESSAGES, max_tokens: 2, temperature: 0 });
    expect(plain.choices[0].logprobs).toBeNull();
    await expectError(await post(server.url, '/v1/chat/completions', { messages: MESSAGES, top_logprobs: 2 }), 400, 'ERR_DYNAMOE_VALUE', 'top_logprobs');
    await expectError(await post(server.url, '/v1/completions', { prompt: 'Hi', logprobs: 21 }), 400, 'ERR_DYNAMOE_VALUE', 'logprobs');

    const prompt = 'Harder tasks need more experts';
    const completion = await client.completions.create({ model: MODEL, prompt, max_tokens: 5, temperature: 0, logprobs: 2 });
    const lists = completion.choices[0].logprobs!;
    const tokens: typeof expected = [];
    for await (const token of model.generate(prompt, { maxTokens: 5, logprobs: 2 })) tokens.push(token);
    expect(lists.tokens).toEqual(tokens.map((t) => text(t.id)));
    lists.token_logprobs!.forEach((lp, i) => expect(lp).toBeCloseTo(tokens[i].logprob!, 9));
    expect(lists.top_logprobs!.map((entry) => Object.keys(entry).length)).toEqual(tokens.map((t) => new Set(t.topLogprobs!.map((a) => a.text)).size));
    expect(lists.text_offset).toEqual(lists.tokens!.map((_, i) => lists.tokens!.slice(0, i).join('').length));
  });

  test('routing_policy changes the experts each token uses, in every policy form', async () => {
    const ask = async (policy: unknown) => {
      const body = { model: MODEL, prompt: 'Hello, world!', max_tokens: 4, temperature: 0, ...routing(policy) };
      const response = await client.completions.create(body);
      return response.usage as unknown as { experts_per_token: { overall: number; per_layer: number[] } };
    };
    expect((await ask('top-k:1')).experts_per_token).toEqual({ overall: 1, per_layer: [1, 1] });
    expect((await ask('top-k:1,top-k:3')).experts_per_token).toEqual({ overall: 2, per_layer: [1, 3] });
    const mixed = await ask(['top-k:3', { kind: 'top-k', k: 4 }]);
    expect(mixed.experts_per_token).toEqual({ overall: 3.5, per_layer: [3, 4] });
    const topP = (await ask({ kind: 'top-p', p: 0.4 })).experts_per_token;
    expect(topP.per_layer).toHaveLength(2);
    for (const value of topP.per_layer) {
      expect(value).toBeGreaterThanOrEqual(1);
      expect(value).toBeLessThanOrEqual(SMALL.experts);
    }
    expect(topP.overall).toBeCloseTo((topP.per_layer[0] + topP.per_layer[1]) / 2, 10);
    expect((await ask('top-p:0.4')).experts_per_token).toEqual(topP);
    expect((await ask(undefined)).experts_per_token).toEqual({ overall: 2, per_layer: [2, 2] });
  });

  test('a seed makes sampling reproducible (and matches the library); another seed samples differently', async () => {
    const sample = async (seed: number) => {
      const body = { model: MODEL, prompt: 'Once', max_tokens: 12, temperature: 1, seed };
      const response = await client.completions.create(body);
      return response.choices[0].text;
    };
    const first = await sample(7);
    expect(await sample(7)).toBe(first);
    expect(first).toBe((await summaryOf(model, 'Once', { maxTokens: 12, temperature: 1, seed: 7 })).text);
    expect(await sample(8)).not.toBe(first);
  });

  test('stop strings end the text before the first one, whole and streamed, with finish_reason stop', async () => {
    const body = { model: MODEL, prompt: 'Stop', max_tokens: 16, temperature: 0 };
    const full = (await client.completions.create(body)).choices[0].text;
    const chars = Array.from(full);
    const stop = chars.slice(4, 6).join(''); // two characters from the middle of the greedy text
    const expected = full.slice(0, full.indexOf(stop));
    const whole = await client.completions.create({ ...body, stop: [stop, 'never'] });
    expect(whole.choices[0]).toMatchObject({ text: expected, finish_reason: 'stop' });
    expect(whole.usage!.completion_tokens).toBeLessThan(16);
    const stream = await client.completions.create({ ...body, stop, stream: true });
    const pieces = [];
    for await (const chunk of stream) pieces.push(chunk.choices[0]);
    expect(pieces.map((p) => p.text).join('')).toBe(expected);
    expect(pieces[pieces.length - 1].finish_reason).toBe('stop');
  });

  test('errors arrive as the client’s APIError with our status, code, type and param', async () => {
    const failure = async (request: Promise<unknown>) => {
      const error = await request.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(OpenAI.APIError);
      const { status, code, type, param } = error as InstanceType<typeof OpenAI.APIError>;
      return { status, code, type, param };
    };
    const base = { model: MODEL, prompt: 'Hi', max_tokens: 2 };
    expect(await failure(client.completions.create({ ...base, ...routing('top-k:99') }))).toEqual({
      status: 400,
      code: 'ERR_DYNAMOE_POLICY',
      type: 'invalid_request_error',
      param: 'routing_policy',
    });
    expect(await failure(client.completions.create({ ...base, model: 'gpt-4o' }))).toEqual({
      status: 404,
      code: 'model_not_found',
      type: 'invalid_request_error',
      param: 'model',
    });
    expect(await failure(client.chat.completions.create({ model: MODEL, messages: MESSAGES, n: 2 }))).toMatchObject({
      status: 400,
      code: 'ERR_DYNAMOE_UNSUPPORTED',
      param: 'n',
    });
    expect(await failure(client.completions.create({ ...base, max_tokens: CONTEXT }))).toMatchObject({
      status: 400,
      code: 'ERR_DYNAMOE_SHAPE',
      param: 'max_tokens',
    });
    expect(await failure(client.models.retrieve('nope'))).toMatchObject({ status: 404, code: 'model_not_found' });
  });
});

describe('with raw HTTP', () => {
  test('malformed input: bad JSON, wrong types, out-of-range values, refused features', async () => {
    const url = server.url;
    await expectError(await post(url, '/v1/completions', '{"prompt": "Hi",'), 400, 'ERR_DYNAMOE_FORMAT', null);
    await expectError(await post(url, '/v1/chat/completions', '[1, 2]'), 400, 'ERR_DYNAMOE_TYPE', null);
    const chat = { model: MODEL, messages: MESSAGES, max_tokens: 2 };
    const badContent = { ...chat, messages: [{ role: 'user', content: 5 }] };
    const cases: [string, Record<string, unknown>, string, string][] = [
      ['/v1/chat/completions', { ...chat, messages: 'Hi' }, 'ERR_DYNAMOE_TYPE', 'messages'],
      ['/v1/chat/completions', { ...chat, messages: [] }, 'ERR_DYNAMOE_VALUE', 'messages'],
      ['/v1/chat/completions', { ...chat, messages: [{ content: 'Hi' }] }, 'ERR_DYNAMOE_TYPE', 'messages[0].role'],
      ['/v1/chat/completions', badContent, 'ERR_DYNAMOE_TYPE', 'messages[0].content'],
      ['/v1/chat/completions', { ...chat, temperature: 'hot' }, 'ERR_DYNAMOE_TYPE', 'temperature'],
      ['/v1/chat/completions', { ...chat, temperature: 2.5 }, 'ERR_DYNAMOE_VALUE', 'temperature'],
      ['/v1/chat/completions', { ...chat, top_p: 0 }, 'ERR_DYNAMOE_VALUE', 'top_p'],
      ['/v1/chat/completions', { ...chat, stream: 'yes' }, 'ERR_DYNAMOE_TYPE', 'stream'],
      ['/v1/chat/completions', { ...chat, model: 7 }, 'ERR_DYNAMOE_TYPE', 'model'],
      ['/v1/chat/completions', { ...chat, seed: 1.5 }, 'ERR_DYNAMOE_VALUE', 'seed'],
      ['/v1/completions', { prompt: 'Hi', max_tokens: -3 }, 'ERR_DYNAMOE_VALUE', 'max_tokens'],
      ['/v1/completions', { prompt: 'Hi', max_tokens: 0 }, 'ERR_DYNAMOE_VALUE', 'max_tokens'],
      ['/v1/completions', { prompt: 'Hi', max_tokens: '5' }, 'ERR_DYNAMOE_TYPE', 'max_tokens'],
      ['/v1/completions', { prompt: 'Hi', max_tokens: 2.5 }, 'ERR_DYNAMOE_VALUE', 'max_tokens'],
      ['/v1/completions', { prompt: 'Hi', stop: [1] }, 'ERR_DYNAMOE_TYPE', 'stop'],
      ['/v1/completions', { prompt: 42 }, 'ERR_DYNAMOE_TYPE', 'prompt'],
      ['/v1/completions', { prompt: ['a', 'b'] }, 'ERR_DYNAMOE_UNSUPPORTED', 'prompt'],
      ['/v1/completions', { prompt: 'Hi', echo: true }, 'ERR_DYNAMOE_UNSUPPORTED', 'echo'],
      ['/v1/completions', { prompt: 'Hi', routing_policy: 5 }, 'ERR_DYNAMOE_TYPE', 'routing_policy'],
      ['/v1/completions', { prompt: 'Hi', routing_policy: 'top-q:1' }, 'ERR_DYNAMOE_POLICY', 'routing_policy'],
      ['/v1/completions', { prompt: [1, 99999] }, 'ERR_DYNAMOE_VALUE', ''],
    ];
    for (const [route, body, code, param] of cases) {
      const error = await expectError(await post(url, route, body), 400, code, param === '' ? null : param);
      if (param && code !== 'ERR_DYNAMOE_POLICY') expect(error.message).toContain(param.replace(/\[.*$/, ''));
    }
  });

  test('unknown fields and JSON nulls are ignored; token-id prompts and one-element prompt arrays work', async () => {
    const ids = Array.from(model.tokenizer.encode('Hello'));
    const expected = await summaryOf(model, ids, { maxTokens: 3, temperature: 0 });
    for (const prompt of [ids, [ids], 'Hello', ['Hello']]) {
      const ignored = { top_p: null, user: 'u1', presence_penalty: 0, made_up: { x: 1 } };
      const body = { prompt, max_tokens: 3, temperature: 0, ...ignored };
      const response = await post(server.url, '/v1/completions', body);
      expect(response.status).toBe(200);
      const json = (await response.json()) as { choices: { text: string }[]; usage: { prompt_tokens: number } };
      expect(json.choices[0].text).toBe(expected.text);
      expect(json.usage.prompt_tokens).toBe(ids.length);
    }
  });

  test('max_tokens defaults: OpenAI’s 16 for completions, defaultMaxTokens for chat, within the context', async () => {
    const extra = await startExtra(model, { defaultMaxTokens: 5, contextTokens: 40 });
    const tokensOf = async (route: string, body: Record<string, unknown>) => {
      const response = await post(extra.url, route, { ...body, temperature: 0, routing_policy: 'top-k:1' });
      expect(response.status).toBe(200);
      return ((await response.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens;
    };
    // The synthetic model never samples its end token greedily from these prompts, so the limits are what stop it.
    expect(await tokensOf('/v1/completions', { prompt: 'Hi' })).toBe(16);
    expect(await tokensOf('/v1/completions', { prompt: 'x'.repeat(30) })).toBe(40 - 31); // BOS + 30 bytes
    expect(await tokensOf('/v1/chat/completions', { messages: MESSAGES.slice(1) })).toBe(5);
  });

  test('the body limit: 413 over it (default 1 MiB), accepted just under it', async () => {
    const padding = (bytes: number) => JSON.stringify({ prompt: 'Hi', max_tokens: 1, padding: 'x'.repeat(bytes) });
    const under = padding((1 << 20) - 100);
    expect(Buffer.byteLength(under)).toBeLessThanOrEqual(1 << 20);
    expect((await post(server.url, '/v1/completions', under)).status).toBe(200);
    await expectError(await post(server.url, '/v1/completions', padding(1 << 20)), 413, 'request_too_large', null);
    const small = await startExtra(model, { maxBodyBytes: 64 });
    await expectError(await post(small.url, '/v1/completions', padding(100)), 413, 'request_too_large');
  });

  test('the context: prompt + max_tokens over it is a 400 naming max_tokens; a prompt alone names prompt', async () => {
    const ids = Array.from(model.tokenizer.encode('Hello'));
    const over = await expectError(
      await post(server.url, '/v1/completions', { prompt: ids, max_tokens: CONTEXT - ids.length + 1 }),
      400,
      'ERR_DYNAMOE_SHAPE',
      'max_tokens',
    );
    expect(over.message).toContain(`exceeds the context of ${CONTEXT} tokens`);
    const fits = { prompt: 'x'.repeat(CONTEXT - 3), max_tokens: 2, temperature: 0 };
    expect((await post(server.url, '/v1/completions', fits)).status).toBe(200); // BOS + 253 bytes + 2 = 256
    const long = { prompt: 'x'.repeat(CONTEXT), max_tokens: 1 };
    await expectError(await post(server.url, '/v1/completions', long), 400, 'ERR_DYNAMOE_SHAPE', 'prompt');
    await expectError(
      await post(server.url, '/v1/chat/completions', { messages: [{ role: 'user', content: 'x'.repeat(CONTEXT) }] }),
      400,
      'ERR_DYNAMOE_SHAPE',
      'messages',
    );
  });

  test('routes: unknown path 404, wrong method 405 with Allow, unknown model 404 model_not_found, /health', async () => {
    const embeddings = await fetch(`${server.url}/v1/embeddings`, { method: 'POST', body: '{}' });
    await expectError(embeddings, 404, 'not_found', null);
    const wrong = await fetch(`${server.url}/v1/completions`);
    expect(wrong.headers.get('allow')).toBe('POST');
    await expectError(wrong, 405, 'method_not_allowed');
    await expectError(await post(server.url, '/v1/models', {}), 405, 'method_not_allowed');
    const unknown = await expectError(
      await post(server.url, '/v1/chat/completions', { model: 'llama-3', messages: MESSAGES }),
      404,
      'model_not_found',
      'model',
    );
    expect(unknown.message).toContain(`'llama-3'`);
    expect(await health(server.url)).toEqual({
      status: 200,
      body: { status: 'ok', model: MODEL, active_sequences: 0, queue_depth: 0, max_sequences: model.info.limits.maxSequences, max_queue: 64 },
    });
  });

  test('chat without a chat template: the documented plain prompt', async () => {
    const tokenizer = Object.create(model.tokenizer) as Model['tokenizer'];
    tokenizer.applyChatTemplate = () => null;
    const plain = Object.create(model) as Model;
    Object.defineProperty(plain, 'tokenizer', { value: tokenizer });
    const extra = await startExtra(plain, {});
    const prompt = plainChatPrompt(MESSAGES);
    expect(prompt).toBe('system: You are terse.\nuser: Name a prime.\nassistant:');
    const expected = await summaryOf(model, prompt, { maxTokens: 5, temperature: 0 });
    const body = { model: MODEL, messages: MESSAGES, max_tokens: 5, temperature: 0 };
    const response = await clientOf(extra.url).chat.completions.create(body);
    expect(response.choices[0].message.content).toBe(expected.text);
    expect(response.usage!.prompt_tokens).toBe(model.tokenizer.encode(prompt).length);
  });

  test('/metrics: Prometheus text whose counters move with requests', async () => {
    const response = await fetch(`${server.url}/metrics`);
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8');
    const text = await response.text();
    for (const [name, type] of [
      ['dynamoe_requests_total', 'counter'],
      ['dynamoe_prompt_tokens_total', 'counter'],
      ['dynamoe_completion_tokens_total', 'counter'],
      ['dynamoe_active_sequences', 'gauge'],
      ['dynamoe_queue_depth', 'gauge'],
      ['dynamoe_batch_size', 'gauge'],
      ['dynamoe_time_to_first_token_seconds', 'histogram'],
      ['dynamoe_decode_tokens_per_second', 'histogram'],
      ['dynamoe_experts_per_token', 'histogram'],
      ['dynamoe_routed_experts_total', 'counter'],
    ]) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
      expect(text).toMatch(new RegExp(`^# HELP ${name} \\S`, 'm'));
    }
    const ok = 'dynamoe_requests_total{endpoint="/v1/completions",status="200"}';
    const before = await scrape(server.url);
    const body = { model: MODEL, prompt: 'Count me', max_tokens: 5, temperature: 0, ...routing('top-k:3') };
    const result = await client.completions.create(body);
    await post(server.url, '/v1/completions', { prompt: 'Hi', max_tokens: -1 });
    const after = await scrape(server.url);
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);
    expect(delta(ok)).toBe(1);
    expect(delta('dynamoe_requests_total{endpoint="/v1/completions",status="400"}')).toBe(1);
    expect(delta('dynamoe_requests_total{endpoint="/metrics",status="200"}')).toBe(1);
    expect(delta('dynamoe_prompt_tokens_total')).toBe(result.usage!.prompt_tokens);
    expect(delta('dynamoe_completion_tokens_total')).toBe(5);
    expect(delta('dynamoe_generations_total{outcome="length"}')).toBe(1);
    expect(delta('dynamoe_time_to_first_token_seconds_count')).toBe(1);
    expect(delta('dynamoe_experts_per_token_sum')).toBeCloseTo(3, 10);
    const routed = result.usage!.prompt_tokens + 5 - 1; // the last token is never fed back
    expect(delta('dynamoe_routed_tokens_total{layer="0"}')).toBe(routed);
    expect(delta('dynamoe_routed_experts_total{layer="1"}')).toBe(3 * routed);
    expect(after.get('dynamoe_active_sequences')).toBe(0);
    const ttftCount = after.get('dynamoe_time_to_first_token_seconds_count');
    expect(after.get('dynamoe_time_to_first_token_seconds_bucket{le="+Inf"}')).toBe(ttftCount);
  });
});

describe('admission, disconnects and draining', () => {
  const long = { model: MODEL, prompt: 'Long', max_tokens: 400, temperature: 0, stream: true };

  /** Starts a streamed request and resolves once its first token chunk arrived (it holds a sequence slot). */
  async function startStreaming(url: string, body: Record<string, unknown>, signal?: AbortSignal) {
    const response = await post(url, '/v1/completions', body, signal);
    expect(response.status).toBe(200);
    const events = sseEvents(response);
    const first = await events.next();
    expect(first.done).toBe(false);
    return events;
  }

  test('one sequence and no queue: a second request gets 429 (raw and via the client) until the first ends', async () => {
    const extra = await startExtra(slowed(model, 5), { maxSequences: 1, maxQueue: 0 });
    const running = await startStreaming(extra.url, { ...long, max_tokens: 150 });
    const refused = await post(extra.url, '/v1/completions', { prompt: 'Hi', max_tokens: 2 });
    expect(refused.headers.get('retry-after')).toBe('1');
    const error = await expectError(refused, 429, 'queue_full', null);
    expect(error.message).toContain('queue is full');
    const viaClient = clientOf(extra.url).completions.create({ model: MODEL, prompt: 'Hi', max_tokens: 2 });
    await expect(viaClient).rejects.toMatchObject({ status: 429, code: 'queue_full' });
    const rest = [];
    for await (const event of running) rest.push(event);
    expect(rest[rest.length - 1]).toBe('[DONE]');
    expect((await post(extra.url, '/v1/completions', { prompt: 'Hi', max_tokens: 2 })).status).toBe(200);
  });

  test('waiting requests run first come, first served; the queue depth is reported', async () => {
    const extra = await startExtra(slowed(model, 5), { maxSequences: 1, maxQueue: 2 });
    const running = await startStreaming(extra.url, { ...long, max_tokens: 150 });
    const finished: string[] = [];
    const queued: Promise<number>[] = [];
    for (const [i, name] of ['first', 'second'].entries()) {
      // One at a time, so the order they reach the server is the order they were sent.
      queued.push(
        post(extra.url, '/v1/completions', { prompt: name, max_tokens: 2 }).then((response) => {
          finished.push(name);
          return response.status;
        }),
      );
      await until(async () => (await health(extra.url)).body.queue_depth === i + 1, `${name} to be queued`);
    }
    expect((await scrape(extra.url)).get('dynamoe_queue_depth')).toBe(2);
    expect((await scrape(extra.url)).get('dynamoe_active_sequences')).toBe(1);
    expect((await post(extra.url, '/v1/completions', { prompt: 'third', max_tokens: 2 })).status).toBe(429);
    for await (const _ of running); // the running generation ends; the queued ones follow in order
    expect(await Promise.all(queued)).toEqual([200, 200]);
    expect(finished).toEqual(['first', 'second']);
  });

  test('a client that disconnects mid-stream frees its sequence: its generation is aborted, the next runs', async () => {
    const extra = await startExtra(slowed(model, 20), { maxSequences: 1, maxQueue: 0 });
    const started = Date.now();
    const abort = new AbortController();
    const events = await startStreaming(extra.url, long, abort.signal); // 400 tokens x 20 ms: 8 s if left alone
    abort.abort();
    await events.return(undefined);
    await until(async () => (await health(extra.url)).body.active_sequences === 0, 'the slot to be freed');
    const next = await post(extra.url, '/v1/completions', { prompt: 'Next', max_tokens: 2 });
    expect(next.status).toBe(200);
    expect(Date.now() - started).toBeLessThan(5000);
    const metrics = await scrape(extra.url);
    expect(metrics.get('dynamoe_generations_total{outcome="aborted"}')).toBe(1);
    expect(metrics.get('dynamoe_generations_total{outcome="length"}')).toBe(1);
    expect(metrics.get('dynamoe_completion_tokens_total')).toBeLessThan(100);

    // The same for a request without `stream`: the client leaves before any byte of the answer.
    const leaving = new AbortController();
    const whole = post(extra.url, '/v1/completions', { ...long, stream: false }, leaving.signal);
    await until(async () => (await health(extra.url)).body.active_sequences === 1, 'the request to run');
    leaving.abort();
    await expect(whole).rejects.toThrow();
    await until(async () => (await health(extra.url)).body.active_sequences === 0, 'the slot to be freed again');
    expect((await scrape(extra.url)).get('dynamoe_generations_total{outcome="aborted"}')).toBe(2);
    expect((await post(extra.url, '/v1/completions', { prompt: 'Next', max_tokens: 2 })).status).toBe(200);
    expect(Date.now() - started).toBeLessThan(8000);
  });

  test('close(): new and waiting requests get 503, /health says draining, running ones finish, then it stops', async () => {
    const extra = await startServer(slowed(model, 10), { port: 0, modelName: MODEL, maxSequences: 1, maxQueue: 1 });
    const events = await startStreaming(extra.url, { ...long, max_tokens: 100 });
    const waiting = post(extra.url, '/v1/completions', { prompt: 'Waiting', max_tokens: 2 });
    await until(async () => (await health(extra.url)).body.queue_depth === 1, 'a queued request');
    const closed = extra.close();
    await expectError(await waiting, 503, 'server_shutting_down');
    const late = await post(extra.url, '/v1/completions', { prompt: 'Hi', max_tokens: 2 });
    await expectError(late, 503, 'server_shutting_down');
    const draining = { status: 'draining', active_sequences: 1, queue_depth: 0 };
    expect(await health(extra.url)).toMatchObject({ status: 503, body: draining });
    const rest: unknown[] = [];
    for await (const event of events) rest.push(event);
    expect(rest[rest.length - 1]).toBe('[DONE]');
    const final = rest[rest.length - 2] as { choices: { finish_reason: string }[] };
    expect(final.choices[0].finish_reason).toBe('length');
    expect(rest.length).toBeGreaterThan(3);
    await closed;
    await expect(fetch(`${extra.url}/health`)).rejects.toThrow();
  });

  test('close() past its drain timeout aborts running generations: their streams end with an error event', async () => {
    const extra = await startServer(slowed(model, 20), { port: 0, modelName: MODEL, drainTimeoutMs: 100 });
    const response = await post(extra.url, '/v1/chat/completions', { ...long, messages: MESSAGES });
    const closed = extra.close();
    const events = await readEvents(response);
    const last = events[events.length - 1] as { error: { code: string; type: string } };
    expect(last.error).toMatchObject({ code: 'server_shutting_down', type: 'server_error' });
    expect(events.length).toBeLessThan(100);
    await closed;
  });
});

describe('the dynamoe serve command', () => {
  const cli = path.join(__dirname, '..', 'dist', 'lib', 'cli.js');

  test('serves the shipped trained model, answers, and exits 0 on SIGTERM after draining', async () => {
    const args = [cli, 'serve', '--port', '0', '--max-sequences', '1', '--model-name', 'demo'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await until(() => /on (http:\/\/127\.0\.0\.1:\d+)/.test(stdout), 'the server to listen', 60000);
      const url = /on (http:\/\/127\.0\.0\.1:\d+)/.exec(stdout)![1];
      const cliClient = clientOf(url);
      const models = [];
      for await (const m of cliClient.models.list()) models.push(m.id);
      expect(models).toEqual(['demo']);
      const body = { model: 'demo', messages: MESSAGES, max_tokens: 2, temperature: 0 };
      const response = await cliClient.chat.completions.create(body);
      expect(response.usage).toMatchObject({ completion_tokens: 2 });
      // The shipped model routes top-p 0.4 in each of its 4 MoE layers: 1 to 8 experts a token.
      const experts = (response.usage as unknown as { experts_per_token: { overall: number; per_layer: number[] } }).experts_per_token;
      expect(experts.per_layer).toHaveLength(4);
      expect(experts.overall).toBeGreaterThanOrEqual(1);
      expect(experts.overall).toBeLessThanOrEqual(8);
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
      expect(stdout).toContain('POST /v1/chat/completions 200');
      expect(stdout).toContain('SIGTERM: draining');
      expect(stdout).toContain('dynamoe serve: stopped');
    } finally {
      child.kill('SIGKILL');
    }
  }, 90000);

  test('refuses bad flags with the library’s codes', async () => {
    const run = (...args: string[]) =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [cli, 'serve', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
        child.on('exit', (code) => resolve({ code, stderr }));
      });
    // Without a GPU, 'cuda' says why (with a GPU it would serve: the CUDA suites cover that).
    if (backendInfo().backend !== 'cuda') {
      const cuda = await run('--device', 'cuda');
      expect(cuda.code).toBe(1);
      expect(cuda.stderr).toContain('ERR_DYNAMOE_DEVICE');
    }
    const port = await run('--port=-1');
    expect(port).toMatchObject({ code: 1 });
    expect(port.stderr).toContain('--port must be an integer >= 0');
    const two = await run('a', 'b');
    expect(two.stderr).toContain("'serve' takes at most one model path");
  }, 60000);
});
