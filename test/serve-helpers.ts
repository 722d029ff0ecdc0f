// Helpers of the `dynamoe serve` tests: raw requests, server-sent events, a slowed model, metric samples, polling.
import type { GenerateOptions, GeneratedToken, GenerationSummary, Model } from '../lib';
import type { RoutingStats } from '../lib/model/routing-stats';

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `check` until true (fails after `ms`). */
export async function until(check: () => boolean | Promise<boolean>, what: string, ms = 15000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** POSTs `body` (JSON-encoded unless a string) to `url + path`. */
export function post(url: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal,
  });
}

export interface ErrorObject {
  message: string;
  type: string;
  param: string | null;
  code: string;
}

/** Checks an error response: status, OpenAI's error-object shape and our code; returns the error object. */
export async function expectError(
  response: Response,
  status: number,
  code: string,
  param?: string | null,
): Promise<ErrorObject> {
  const body = (await response.json()) as { error: ErrorObject };
  expect({ status: response.status, code: body.error?.code }).toEqual({ status, code });
  expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type']);
  expect(typeof body.error.message).toBe('string');
  expect(body.error.message.length).toBeGreaterThan(0);
  const type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
  expect(body.error.type).toBe(type);
  if (param !== undefined) expect(body.error.param).toBe(param);
  return body.error;
}

export const DONE = '[DONE]';

/** The events of a server-sent event stream as they arrive: each `data:` payload parsed, `[DONE]` as DONE. */
export async function* sseEvents(response: Response): AsyncGenerator<Record<string, unknown> | typeof DONE> {
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
      yield data === DONE ? DONE : (JSON.parse(data) as Record<string, unknown>);
    }
  }
  expect(buffer).toBe(''); // nothing after the last complete event
}

/** A whole event stream; checks it ends with [DONE] and returns the events before it. */
export async function readEvents(response: Response): Promise<Record<string, unknown>[]> {
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const events: (Record<string, unknown> | typeof DONE)[] = [];
  for await (const event of sseEvents(response)) events.push(event);
  expect(events[events.length - 1]).toBe(DONE);
  expect(events.indexOf(DONE)).toBe(events.length - 1);
  return events.slice(0, -1) as Record<string, unknown>[];
}

/** Runs a generation to its end and returns its summary. */
export async function summaryOf(
  model: Model,
  prompt: Int32Array | number[] | string,
  options: GenerateOptions,
): Promise<GenerationSummary> {
  const generation = model.generate(prompt, options);
  for await (const _ of generation); // the summary is what is compared
  return generation.summary!;
}

/**
 * The same model, each generated token held back `msPerToken`: generations long enough to queue behind, abort or
 * drain at a known point, without a large model. Everything else (info, spec, tokenizer) is the model's own.
 */
export function slowed<M extends object>(model: M, msPerToken: number): M {
  // Generic: test 98 passes the built library's Model (dist/), the serve tests the source's (lib/).
  const source = model as unknown as Model;
  const slow = Object.create(model) as Model;
  slow.generate = (prompt: string | Int32Array | number[], options?: GenerateOptions) => {
    const inner = source.generate(prompt, options);
    const wrapper = {
      get summary(): GenerationSummary | undefined {
        return inner.summary;
      },
      get stats(): RoutingStats | undefined {
        return inner.stats;
      },
      async *[Symbol.asyncIterator](): AsyncGenerator<GeneratedToken> {
        for await (const token of inner) {
          await sleep(msPerToken);
          yield token;
        }
      },
    };
    return wrapper as unknown as ReturnType<Model['generate']>;
  };
  return slow as unknown as M;
}

/** The samples of a Prometheus text body: `name{labels}` -> value (the labels as written). */
export function metricSamples(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: '${line}'`);
    samples.set(match[1], Number(match[2]));
  }
  return samples;
}

export async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`);
  expect(response.status).toBe(200);
  return metricSamples(await response.text());
}

export async function health(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${url}/health`);
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}
