// The HTTP server example: SSE streaming, per-request policies and expert usage, errors, fair queue, 503, aborts.
// It runs against the compiled package (dist/), as the example does, with a small synthetic model.
import { connect } from 'net';
import type { AddressInfo } from 'net';
import type { Server } from 'http';
import type { Model } from '../dist/lib';
import { createSyntheticModel } from '../dist/lib/model/synthetic-model';
import { slowed, until } from './serve-helpers';

// The example is plain JavaScript (// @ts-check); these are the parts of it the tests use.
interface ExpertUsage {
  policy: string;
  experts_per_token: number;
  routed_tokens: number;
  layers: { layer: number; policy: string; experts_per_token: number; histogram: number[] }[];
}
interface FinalEvent {
  finish_reason: 'length' | 'stop' | 'eos';
  usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number };
  timings: { queue_ms: number; prefill_ms: number; decode_ms: number; total_ms: number };
  expert_usage: ExpertUsage;
}
interface TokenEvent {
  token: number;
  text: string;
}
interface ErrorBody {
  error: { code: string; message: string };
}
interface RequestRecord {
  method: string;
  path: string;
  client: string;
  status: number;
  outcome?: 'finished' | 'aborted' | 'failed';
  tokens?: number;
  error?: string;
}
interface CompletionServer extends Server {
  shutdown(): Promise<void>;
}
interface ServerModule {
  createServer(options: {
    model: Model;
    maxActive?: number;
    maxQueued?: number;
    log?: (record: RequestRecord) => void;
  }): CompletionServer;
}
interface FairQueueLike<T> {
  readonly size: number;
  readonly full: boolean;
  sizeOf(client: string): number;
  push(client: string, item: T): boolean;
  shift(): T | undefined;
  remove(client: string, item: T): boolean;
  drain(): T[];
}
interface SchedulerLike {
  readonly active: number;
  readonly queued: number;
  tryAcquire(client: string, signal: AbortSignal): Promise<() => void> | null;
  close(error: unknown): void;
}

const { createServer } = require('../examples/http-server/server') as ServerModule;
const { FairQueue } = require('../examples/http-server/fair-queue') as {
  FairQueue: new <T>(maxSize: number) => FairQueueLike<T>;
};
const { GenerationScheduler } = require('../examples/http-server/scheduler') as {
  GenerationScheduler: new (limits: { maxActive: number; maxQueued: number }) => SchedulerLike;
};
const { parseCompletionRequest } = require('../examples/http-server/request') as {
  parseCompletionRequest(body: unknown): { prompt: unknown; options: Record<string, unknown>; stream: boolean };
};
const { toJson, describeError } = require('../examples/http-server/responses') as {
  toJson(value: unknown): string;
  describeError(error: unknown): { status: number; code: string; message: string };
};

// Small, so a generation takes milliseconds in jest (the default synthetic model is 100 MB of weights).
const SMALL = { layers: 2, hidden: 64, heads: 4, kvHeads: 2, experts: 8, ffn: 64 };
const PROMPT = 'Hello, world!';
const DONE = Symbol('[DONE]');


/** Starts a server on 127.0.0.1, port 0; returns it with its base URL and its access log. */
async function start(model: Model, limits: { maxActive?: number; maxQueued?: number } = {}) {
  const records: RequestRecord[] = [];
  const server = createServer({ model, ...limits, log: (record) => records.push(record) });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { server, url: `http://127.0.0.1:${port}`, records };
}

function post(url: string, body: unknown, init: { signal?: AbortSignal; client?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (init.client) headers['x-client-id'] = init.client;
  return fetch(`${url}/v1/completions`, {
    method: 'POST',
    headers,
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: init.signal,
  });
}

/** The server-sent events of a response as they arrive: each `data:` payload parsed, `[DONE]` as DONE. */
async function* sseEvents(response: Response): AsyncGenerator<unknown> {
  const reader = response.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
      const lines = buffer.slice(0, end).split('\n');
      buffer = buffer.slice(end + 2);
      expect(lines.every((line) => line.startsWith('data: '))).toBe(true);
      const data = lines.map((line) => line.slice('data: '.length)).join('\n');
      yield data === '[DONE]' ? DONE : JSON.parse(data);
    }
  }
  expect(buffer).toBe(''); // nothing after the last complete event
}

/** Reads a whole event stream: token events, then the final event (or an error event), then [DONE]. */
async function readStream(response: Response) {
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: unknown[] = [];
  for await (const event of sseEvents(response)) events.push(event);
  expect(events[events.length - 1]).toBe(DONE);
  const tokens = events.slice(0, -2) as TokenEvent[];
  for (const token of tokens) expect(Object.keys(token).sort()).toEqual(['text', 'token']);
  return { tokens, last: events[events.length - 2] as FinalEvent | ErrorBody, events };
}

async function streamCompletion(url: string, body: Record<string, unknown>) {
  const { tokens, last } = await readStream(await post(url, { ...body, stream: true }));
  expect(last).toHaveProperty('finish_reason');
  return { tokens, final: last as FinalEvent, text: tokens.map((t) => t.text).join('') };
}

async function jsonCompletion(url: string, body: Record<string, unknown>) {
  const response = await post(url, { ...body, stream: false });
  expect(response.status).toBe(200);
  return (await response.json()) as FinalEvent & { text: string; token_ids: number[] };
}

async function expectError(response: Response, status: number, code: string): Promise<ErrorBody> {
  const body = (await response.json()) as ErrorBody;
  expect({ status: response.status, code: body.error?.code }).toEqual({ status, code });
  expect(typeof body.error.message).toBe('string');
  return body;
}

describe('FairQueue', () => {
  test('serves clients round-robin, each in its own arrival order', () => {
    const queue = new FairQueue<string>(10);
    for (const [client, item] of [
      ['a', 'a1'],
      ['a', 'a2'],
      ['a', 'a3'],
      ['b', 'b1'],
      ['c', 'c1'],
      ['b', 'b2'],
    ]) {
      expect(queue.push(client, item)).toBe(true);
    }
    expect(queue.size).toBe(6);
    expect(queue.sizeOf('a')).toBe(3);
    const order: string[] = [];
    for (let item = queue.shift(); item !== undefined; item = queue.shift()) order.push(item);
    expect(order).toEqual(['a1', 'b1', 'c1', 'a2', 'b2', 'a3']);
    expect(queue.size).toBe(0);
    expect(queue.shift()).toBeUndefined();
  });

  test('a client arriving later is served before the flooding client’s backlog', () => {
    const queue = new FairQueue<string>(10);
    for (let i = 1; i <= 5; i++) queue.push('flood', `f${i}`);
    expect(queue.shift()).toBe('f1');
    queue.push('late', 'l1');
    expect(queue.drain()).toEqual(['f2', 'l1', 'f3', 'f4', 'f5']);
  });

  test('is bounded over all clients', () => {
    const queue = new FairQueue<number>(2);
    expect(queue.push('a', 1)).toBe(true);
    expect(queue.push('b', 2)).toBe(true);
    expect(queue.full).toBe(true);
    expect(queue.push('c', 3)).toBe(false);
    expect(queue.sizeOf('c')).toBe(0);
    expect(queue.size).toBe(2);
    expect(queue.shift()).toBe(1);
    expect(queue.push('c', 3)).toBe(true);
    expect(queue.drain()).toEqual([2, 3]);
    expect(new FairQueue<number>(0).push('a', 1)).toBe(false);
    expect(() => new FairQueue<number>(-1)).toThrow(RangeError);
  });

  test('removes a waiting item; a client left with none loses its turn', () => {
    const queue = new FairQueue<string>(10);
    queue.push('a', 'a1');
    queue.push('b', 'b1');
    queue.push('a', 'a2');
    queue.push('c', 'c1');
    expect(queue.remove('b', 'b1')).toBe(true);
    expect(queue.remove('b', 'b1')).toBe(false);
    expect(queue.remove('a', 'nope')).toBe(false);
    expect(queue.remove('zzz', 'a1')).toBe(false);
    expect(queue.size).toBe(3);
    expect(queue.sizeOf('b')).toBe(0);
    expect(queue.remove('a', 'a2')).toBe(true);
    expect(queue.drain()).toEqual(['a1', 'c1']);
  });
});

describe('GenerationScheduler', () => {
  test('runs at most maxActive, hands freed slots round-robin, refuses when full, drops aborted waiters', async () => {
    const scheduler = new GenerationScheduler({ maxActive: 2, maxQueued: 3 });
    const signal = new AbortController().signal;
    const release1 = await scheduler.tryAcquire('a', signal)!;
    const release2 = await scheduler.tryAcquire('a', signal)!;
    expect(scheduler.active).toBe(2);

    const started: string[] = [];
    const releases = new Map<string, () => void>();
    const wait = (client: string, name: string, s = signal) => {
      const slot = scheduler.tryAcquire(client, s);
      expect(slot).not.toBeNull();
      return slot!.then((release) => {
        started.push(name);
        releases.set(name, release);
      });
    };
    const a3 = wait('a', 'a3');
    const a4 = wait('a', 'a4');
    const leaving = new AbortController();
    const b1 = wait('b', 'b1', leaving.signal);
    expect(scheduler.queued).toBe(3);
    expect(scheduler.tryAcquire('c', signal)).toBeNull(); // full: the server answers 503

    leaving.abort();
    await expect(b1).rejects.toMatchObject({ code: 'ERR_DYNAMOE_ABORTED' });
    expect(scheduler.queued).toBe(2);
    const c1 = wait('c', 'c1');

    release1();
    release1(); // a second call must not free a second slot
    await a3;
    expect(scheduler.active).toBe(2);
    expect(started).toEqual(['a3']);
    release2();
    await c1; // client c's turn comes before client a's second waiting request
    expect(started).toEqual(['a3', 'c1']);
    releases.get('a3')!();
    await a4;
    expect(started).toEqual(['a3', 'c1', 'a4']);
    expect(scheduler.queued).toBe(0);

    const late = wait('d', 'd1');
    scheduler.close(new Error('closing'));
    await expect(late).rejects.toThrow('closing');
    await expect(scheduler.tryAcquire('e', signal)).rejects.toThrow('closing');
  }, 10000); // a slot never handed over hangs: fail fast
});

describe('request and response helpers', () => {
  test('completion fields map to generate options; the policy is passed on for the library to check', () => {
    expect(
      parseCompletionRequest({
        prompt: 'hi',
        max_tokens: 3,
        temperature: 0.5,
        top_k: 4,
        top_p: 0.9,
        seed: 7,
        stop: '\n',
        policy: 'top-k:1, top-p:0.4',
        n: 1, // unknown fields are ignored
      }),
    ).toEqual({
      prompt: 'hi',
      stream: true,
      options: { maxTokens: 3, temperature: 0.5, topK: 4, topP: 0.9, seed: 7, stop: ['\n'], policy: 'top-k:1, top-p:0.4' },
    });
    expect(parseCompletionRequest({ prompt: [1, 2], stream: false, policy: null, max_tokens: null })).toEqual({
      prompt: [1, 2],
      stream: false,
      options: {},
    });
    for (const body of [null, [], 'hi', {}, { prompt: 5 }, { prompt: 'x', stream: 'yes' }, { prompt: 'x', stop: [1] }]) {
      let code: unknown;
      try {
        parseCompletionRequest(body);
      } catch (error) {
        code = (error as { code?: unknown }).code;
      }
      expect({ body, code }).toEqual({ body, code: 'ERR_DYNAMOE_TYPE' });
    }
  });

  test('JSON keeps bigints, typed arrays and maps; errors map to statuses by code', () => {
    const json = toJson({ n: 5n, huge: 2n ** 70n, f: new Float32Array([0.5, 2]), i: new BigInt64Array([3n]), m: new Map([['k', 1]]) });
    expect(JSON.parse(json)).toEqual({ n: 5, huge: '1180591620717411303424', f: [0.5, 2], i: [3], m: { k: 1 } });
    expect(describeError({ code: 'ERR_DYNAMOE_POLICY', message: 'bad' })).toEqual({ status: 400, code: 'ERR_DYNAMOE_POLICY', message: 'bad' });
    expect(describeError({ code: 'ERR_DYNAMOE_DISPOSED', message: 'gone' }).status).toBe(503);
    expect(describeError({ code: 'ERR_DYNAMOE_OUT_OF_MEMORY', message: 'oom' }).status).toBe(500);
    // Unknown errors are not echoed: their messages may carry internals.
    expect(describeError(new Error('/secret/path'))).toEqual({ status: 500, code: 'ERR_HTTP_INTERNAL', message: 'internal server error' });
  });
});

describe('HTTP server', () => {
  let model: Model;
  let server: CompletionServer;
  let url: string;
  let records: RequestRecord[];
  // Servers a test starts itself; afterAll closes any a failing test left open.
  const extraServers: CompletionServer[] = [];

  beforeAll(async () => {
    model = await createSyntheticModel(SMALL);
    ({ server, url, records } = await start(model, { maxActive: 2, maxQueued: 4 }));
  });
  afterAll(async () => {
    await Promise.all([server, ...extraServers].map((s) => s?.shutdown()));
    model?.dispose();
  });

  async function startExtra(m: Model, limits: { maxActive?: number; maxQueued?: number }) {
    const started = await start(m, limits);
    extraServers.push(started.server);
    return started;
  }

  async function health(base: string) {
    const response = await fetch(`${base}/health`);
    return (await response.json()) as { status: string; active: number; queued: number };
  }

  test('GET /health and GET /v1/model describe the server and the model as JSON', async () => {
    expect(await health(url)).toEqual({ status: 'ok', active: 0, queued: 0, max_active: 2, max_queued: 4 });
    const response = await fetch(`${url}/v1/model`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    const info = (await response.json()) as Record<string, unknown>;
    expect(info).toMatchObject({
      architecture: 'mixtral',
      hidden: SMALL.hidden,
      dtype: 'f32',
      defaultPolicy: model.info.defaultPolicy,
      source: 'synthetic:seed=42',
      tokenizer: { vocab_size: 259, bos_token_id: 256, eos_token_ids: [257] },
    });
    expect(info.layers).toHaveLength(SMALL.layers);
    expect(info.weightBytes).toBe(model.info.weightBytes);
  });

  test('streams one event per token; the text equals the non-streamed and the library’s own greedy text', async () => {
    const request = { prompt: PROMPT, max_tokens: 24 };
    const streamed = await streamCompletion(url, request);
    const whole = await jsonCompletion(url, request);

    const direct = model.generate(PROMPT, { maxTokens: 24 });
    const directIds: number[] = [];
    for await (const token of direct) directIds.push(token.id);

    expect(streamed.tokens.length).toBe(24);
    expect(streamed.tokens.map((t) => t.token)).toEqual(directIds);
    expect(whole.token_ids).toEqual(directIds);
    expect(streamed.text).toBe(direct.summary!.text);
    expect(whole.text).toBe(streamed.text);

    for (const final of [streamed.final, whole]) {
      expect(final.finish_reason).toBe('length');
      expect(final.usage).toEqual({ prompt_tokens: direct.summary!.promptTokens, completion_tokens: 24, total_tokens: direct.summary!.promptTokens + 24 });
      expect(final.timings.prefill_ms).toBeGreaterThan(0);
      expect(final.timings.decode_ms).toBeGreaterThan(0);
      expect(final.timings.total_ms).toBeGreaterThanOrEqual(final.timings.prefill_ms + final.timings.decode_ms - 0.01);
      // The model's default policy ran (top-2 in every layer): statistics of this request, per layer.
      const label = model.info.defaultPolicy[0];
      expect(label).toMatch(/^top-k:2\b/);
      expect(final.expert_usage.policy).toBe(label);
      expect(final.expert_usage.experts_per_token).toBe(2);
      expect(final.expert_usage.routed_tokens).toBe(direct.summary!.stats.tokens);
      expect(final.expert_usage.layers.map((l) => [l.layer, l.policy, l.experts_per_token])).toEqual([
        [0, label, 2],
        [1, label, 2],
      ]);
    }
  });

  test('a per-request policy changes the experts used per token, per layer, and is reported', async () => {
    const usage = async (policy: unknown) => (await streamCompletion(url, { prompt: PROMPT, max_tokens: 8, policy })).final.expert_usage;

    const top1 = await usage('top-k:1');
    expect(top1.policy).toBe('top-k:1');
    expect(top1.experts_per_token).toBe(1);
    expect(top1.layers.map((l) => l.experts_per_token)).toEqual([1, 1]);
    expect(top1.layers[0].histogram).toEqual([0, top1.routed_tokens]);

    const top2 = await usage('top-k:2');
    expect(top2.experts_per_token).toBe(2);

    const perLayer = await usage('top-k:1,top-k:3');
    expect(perLayer.policy).toBe('top-k:1,top-k:3');
    expect(perLayer.layers.map((l) => [l.policy, l.experts_per_token])).toEqual([
      ['top-k:1', 1],
      ['top-k:3', 3],
    ]);
    expect(perLayer.experts_per_token).toBe(2);

    const object = await usage({ kind: 'top-k', k: 1 });
    expect(object.experts_per_token).toBe(1);

    // Dynamic routing: between 1 and all experts, and the same figures the library reports for that generation.
    const topP = await usage('top-p:0.4');
    expect(topP.policy).toBe('top-p:0.4');
    const direct = model.generate(PROMPT, { maxTokens: 8, policy: 'top-p:0.4' });
    for await (const _ of direct) void _;
    expect(topP.experts_per_token).toBe(direct.summary!.stats.expertsPerToken);
    expect(topP.experts_per_token).toBeGreaterThan(1);
    expect(topP.experts_per_token).toBeLessThan(SMALL.experts);
  });

  test('a stop string ends the completion before it', async () => {
    const { text: greedy } = await streamCompletion(url, { prompt: PROMPT, max_tokens: 24 });
    expect(greedy.length).toBeGreaterThanOrEqual(8);
    const stop = greedy.slice(6, 8);
    const stopped = await streamCompletion(url, { prompt: PROMPT, max_tokens: 24, stop });
    expect(stopped.final.finish_reason).toBe('stop');
    expect(stopped.text).toBe(greedy.slice(0, greedy.indexOf(stop)));
  });

  test('bad requests get 400 with a stable code, and the server keeps serving', async () => {
    const cases: Array<[unknown, number, string]> = [
      [{ prompt: PROMPT, policy: 'top-q:1' }, 400, 'ERR_DYNAMOE_POLICY'],
      [{ prompt: PROMPT, policy: 'top-k:99' }, 400, 'ERR_DYNAMOE_POLICY'],
      [{ prompt: PROMPT, policy: 'top-k:1,top-k:1,top-k:1' }, 400, 'ERR_DYNAMOE_POLICY'], // 3 policies, 2 layers
      [{ prompt: PROMPT, policy: { kind: 'top-p', p: 2 } }, 400, 'ERR_DYNAMOE_POLICY'],
      [{ prompt: PROMPT, max_tokens: 0 }, 400, 'ERR_DYNAMOE_VALUE'],
      [{ prompt: PROMPT, temperature: -1 }, 400, 'ERR_DYNAMOE_VALUE'],
      [{ prompt: [1, 2, 9999] }, 400, 'ERR_DYNAMOE_VALUE'],
      [{ prompt: PROMPT, max_tokens: 100000 }, 400, 'ERR_DYNAMOE_SHAPE'],
      [{ max_tokens: 4 }, 400, 'ERR_DYNAMOE_TYPE'],
      [{ prompt: PROMPT, stop: 5 }, 400, 'ERR_DYNAMOE_TYPE'],
      ['{"prompt": ', 400, 'ERR_HTTP_BAD_JSON'],
    ];
    for (const [body, status, code] of cases) {
      for (const stream of [true, false]) {
        const withStream = typeof body === 'object' && body !== null ? { ...body, stream } : body;
        await expectError(await post(url, withStream), status, code);
      }
    }
    await expectError(await fetch(`${url}/v1/nothing`), 404, 'ERR_HTTP_NOT_FOUND');
    const wrongMethod = await fetch(`${url}/v1/completions`);
    expect(wrongMethod.headers.get('allow')).toBe('POST');
    await expectError(wrongMethod, 405, 'ERR_HTTP_METHOD');
    await expectError(await post(url, 'x'.repeat((1 << 20) + 1)), 413, 'ERR_HTTP_BODY_TOO_LARGE');

    expect(records.filter((r) => r.status === 400).length).toBeGreaterThanOrEqual(cases.length * 2);
    expect(await health(url)).toMatchObject({ status: 'ok', active: 0, queued: 0 });
    expect((await jsonCompletion(url, { prompt: PROMPT, max_tokens: 2 })).token_ids).toHaveLength(2);
  });

  test('a client that closes before the end of its body is logged as 499 and costs nothing', async () => {
    const socket = connect(Number(new URL(url).port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.end('POST /v1/completions HTTP/1.1\r\nhost: x\r\nx-client-id: halfway\r\ncontent-length: 100\r\n\r\n{"prompt":');
    await until(() => records.some((r) => r.client === 'id:halfway'), 'the unfinished request to end');
    expect(records.find((r) => r.client === 'id:halfway')).toMatchObject({ status: 499, error: 'ERR_HTTP_CLIENT_CLOSED' });
    expect(await health(url)).toMatchObject({ status: 'ok', active: 0, queued: 0 });
  });

  test('a full queue answers 503; a queued client that leaves frees its place', async () => {
    const slow = await startExtra(slowed(model, 20), { maxActive: 1, maxQueued: 1 });
    const first = new AbortController();
    const running = await post(slow.url, { prompt: PROMPT, max_tokens: 1000 }, { signal: first.signal, client: 'a' });
    const runningEvents = sseEvents(running);
    expect((await runningEvents.next()).value).toHaveProperty('token'); // it runs

    const second = new AbortController();
    const waiting = await post(slow.url, { prompt: PROMPT, max_tokens: 2 }, { signal: second.signal, client: 'b' });
    expect(waiting.status).toBe(200); // accepted: the event stream starts while it waits
    expect(await health(slow.url)).toMatchObject({ active: 1, queued: 1 });

    const refused = await post(slow.url, { prompt: PROMPT, max_tokens: 2 }, { client: 'c' });
    expect(refused.headers.get('retry-after')).toBe('1');
    await expectError(refused, 503, 'ERR_HTTP_QUEUE_FULL');

    second.abort();
    await until(async () => (await health(slow.url)).queued === 0, 'the queued client to leave the queue');
    await until(() => slow.records.some((r) => r.client === 'id:b'), 'the queued request to be logged');
    expect(slow.records.find((r) => r.client === 'id:b')).toMatchObject({ outcome: 'aborted', tokens: 0 });

    // Its place is free again: this one is queued, not refused, and runs once the first client leaves.
    const next = post(slow.url, { prompt: PROMPT, max_tokens: 2, stream: false }, { client: 'c' });
    await until(async () => (await health(slow.url)).queued === 1, 'the next request to be queued');
    first.abort();
    const nextResponse = await next;
    expect(nextResponse.status).toBe(200);
    expect(((await nextResponse.json()) as { token_ids: number[] }).token_ids).toHaveLength(2);
  });

  test('waiting clients are served in turn, not in arrival order', async () => {
    const slow = await startExtra(slowed(model, 20), { maxActive: 1, maxQueued: 8 });
    const body = { prompt: PROMPT, max_tokens: 3 };
    // Event-stream headers arrive when a request is queued, so awaiting each fixes the arrival order.
    const responses = [await post(slow.url, { ...body, max_tokens: 50 }, { client: 'flood' })];
    for (let i = 0; i < 3; i++) responses.push(await post(slow.url, body, { client: 'flood' }));
    responses.push(await post(slow.url, body, { client: 'polite' }));
    expect(await health(slow.url)).toMatchObject({ active: 1, queued: 4 });
    await Promise.all(responses.map((r) => readStream(r)));
    const finished = slow.records.filter((r) => r.outcome === 'finished').map((r) => r.client);
    expect(finished).toEqual(['id:flood', 'id:flood', 'id:polite', 'id:flood', 'id:flood']);
  });

  test('a client that disconnects mid-stream aborts its generation; the server serves the next request', async () => {
    const slow = await startExtra(slowed(model, 5), { maxActive: 1, maxQueued: 4 });
    const controller = new AbortController();
    const response = await post(slow.url, { prompt: PROMPT, max_tokens: 1000 }, { signal: controller.signal, client: 'leaver' });
    let received = 0;
    for await (const event of sseEvents(response)) {
      expect(event).toHaveProperty('token');
      if (++received === 3) break;
    }
    controller.abort();

    await until(() => slow.records.some((r) => r.client === 'id:leaver'), 'the aborted request to end');
    const record = slow.records.find((r) => r.client === 'id:leaver')!;
    expect(record.outcome).toBe('aborted');
    expect(record.tokens).toBeGreaterThanOrEqual(3);
    expect(record.tokens).toBeLessThan(1000);
    expect(await health(slow.url)).toMatchObject({ active: 0, queued: 0 });

    // The slot is free and the model still works: the same greedy text as before, on both servers.
    const after = await streamCompletion(slow.url, { prompt: PROMPT, max_tokens: 12 });
    const reference = await jsonCompletion(url, { prompt: PROMPT, max_tokens: 12 });
    expect(after.text).toBe(reference.text);
    expect(after.final.finish_reason).toBe('length');
  });

  test('shutdown ends running and queued streams with an error event and closes the server', async () => {
    const slow = await startExtra(slowed(model, 20), { maxActive: 1, maxQueued: 4 });
    const running = await post(slow.url, { prompt: PROMPT, max_tokens: 1000 });
    const queued = await post(slow.url, { prompt: PROMPT, max_tokens: 1000 });
    const runningEvents = sseEvents(running);
    expect((await runningEvents.next()).value).toHaveProperty('token');

    await slow.server.shutdown();
    const rest: unknown[] = [];
    for await (const event of runningEvents) rest.push(event);
    // The aborted generation still reports what its steps used (the prompt at least).
    const [ended, done] = rest.slice(-2) as [{ expert_usage: { routed_tokens: number; layers: unknown[] } }, unknown];
    expect(ended).toMatchObject({ error: { code: 'ERR_HTTP_SHUTTING_DOWN', message: expect.any(String) } });
    expect(ended.expert_usage.routed_tokens).toBeGreaterThan(0);
    expect(ended.expert_usage.layers).toHaveLength(model.info.layers.filter((l) => l.kind === 'moe').length);
    expect(done).toBe(DONE);
    const { last, tokens } = await readStream(queued);
    expect(tokens).toHaveLength(0);
    expect(last).toMatchObject({ error: { code: 'ERR_HTTP_SHUTTING_DOWN' } });
    expect(slow.records.map((r) => [r.outcome, r.error])).toEqual([
      ['aborted', 'ERR_HTTP_SHUTTING_DOWN'],
      ['aborted', 'ERR_HTTP_SHUTTING_DOWN'],
    ]);
    expect(slow.server.listening).toBe(false);
    await expect(fetch(`${slow.url}/health`)).rejects.toThrow();
  });
});
