// The runtimes of `npm run bench:serve` as targets of concurrent streaming clients: dynamoe's OpenAI-compatible server
// driven over HTTP by the openai client, and node-llama-cpp with one sequence of one context per client.
import OpenAI from 'openai';
import { loadModel, startServer } from '../lib';
import { NodeLlamaCpp } from './node-llama-cpp-api';

/** One streamed request, as its client saw it. */
export interface RequestTiming {
  /** Milliseconds from sending the request to the first non-empty text (to its end when no text came). */
  ttftMs: number;
  /** Milliseconds from sending the request to its end. */
  latencyMs: number;
  /** Tokens generated: max_tokens, fewer when the model ended the text (llama.cpp's: one more, see openLlamaCpp). */
  completionTokens: number;
}

/** A runtime serving a fixed number of clients, each generating its requests one after another. */
export interface ServeTarget {
  /** One greedy completion of `prompt` (token ids, BOS not included) for client `client`. */
  complete(client: number, prompt: number[], maxTokens: number): Promise<RequestTiming>;
  close(): Promise<void>;
}

const MODEL_NAME = 'bench-model';

/**
 * dynamoe's server on a free loopback port, a sequence slot per client (batched in the model's steps, as llama.cpp
 * batches its sequences), the model loaded for this target alone.
 */
export async function openDynamoe(file: string, clients: number): Promise<ServeTarget> {
  const model = await loadModel(file, { maxSequences: clients });
  const server = await startServer(model, { host: '127.0.0.1', port: 0, modelName: MODEL_NAME, maxSequences: clients, maxQueue: clients });
  const openai = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  const bos = model.tokenizer.bosTokenId;
  return {
    async complete(_client, prompt, maxTokens) {
      // The server takes token ids as given, while llama.cpp's LlamaCompletion puts BOS before them: same input.
      const ids = bos === null ? prompt : [bos, ...prompt];
      const sent = performance.now();
      const stream = await openai.completions.create({
        model: MODEL_NAME,
        prompt: ids,
        max_tokens: maxTokens,
        temperature: 0,
        stream: true,
        // The usage chunk counts every token; text chunks skip tokens whose text is empty.
        stream_options: { include_usage: true },
      });
      let firstText: number | undefined;
      let completionTokens: number | undefined;
      for await (const chunk of stream) {
        if (firstText === undefined && chunk.choices.some((choice) => choice.text !== '')) firstText = performance.now();
        if (chunk.usage) completionTokens = chunk.usage.completion_tokens;
      }
      const ended = performance.now();
      if (completionTokens === undefined) throw new Error('the stream ended without its usage chunk');
      return { ttftMs: (firstText ?? ended) - sent, latencyMs: ended - sent, completionTokens };
    },
    async close() {
      await server.close();
      model.dispose();
    },
  };
}

/** node-llama-cpp on the same file: one context of a sequence per client, so llama.cpp batches their tokens. */
export async function openLlamaCpp(
  peer: NodeLlamaCpp,
  file: string,
  clients: number,
  contextPerSequence: number,
  threads: number,
): Promise<ServeTarget> {
  const llama = await peer.getLlama({ gpu: false, build: 'never', logLevel: peer.LlamaLogLevel.error });
  // useMmap false: this VM pages out cold file-backed pages, which would stall the first requests (as in bench:model).
  const model = await llama.loadModel({ modelPath: file, useMmap: false });
  const context = await model.createContext({ contextSize: contextPerSequence, sequences: clients, threads });
  const sequences = Array.from({ length: clients }, () => context.getSequence());
  const completions = sequences.map((contextSequence) => new peer.LlamaCompletion({ contextSequence }));
  return {
    async complete(client, prompt, maxTokens) {
      const sampledBefore = sequences[client].tokenMeter.usedOutputTokens;
      const sent = performance.now();
      let firstText: number | undefined;
      const { metadata } = await completions[client].generateCompletionWithMeta(prompt, {
        maxTokens,
        temperature: 0,
        // Greedy as dynamoe's temperature 0: node-llama-cpp's completions apply a repeat penalty by default.
        repeatPenalty: false,
        onTextChunk: (text) => {
          if (firstText === undefined && text !== '') firstText = performance.now();
        },
      });
      const ended = performance.now();
      // Counted as sampled: LlamaCompletion holds back a token that ends in a partial character (it then samples one
      // past maxTokens to complete it, or drops it at maxTokens, unseen by onToken). The end token is not counted,
      // as in dynamoe's usage.
      const sampled = sequences[client].tokenMeter.usedOutputTokens - sampledBefore;
      const completionTokens = sampled - (metadata.stopReason === 'eogToken' ? 1 : 0);
      return { ttftMs: (firstText ?? ended) - sent, latencyMs: ended - sent, completionTokens };
    },
    async close() {
      for (const completion of completions) completion.dispose();
      await context.dispose();
      await model.dispose();
      await llama.dispose();
    },
  };
}

/** What a level of concurrent clients measured. */
export interface LevelRun {
  requests: RequestTiming[];
  /** Milliseconds from the first request sent to the last one ended. */
  wallMs: number;
  /** Largest resident set size of this process sampled during the level, in bytes. */
  peakRssBytes: number;
}

const RSS_SAMPLE_MS = 50;

/**
 * `clients` clients at once, each sending up to `requestsPerClient` requests one after another (prompt `promptOf(client,
 * request)`); none starts after `budgetMs`, so the level lasts at most that plus one request.
 */
export async function runLevel(
  target: ServeTarget,
  clients: number,
  requestsPerClient: number,
  promptOf: (client: number, request: number) => number[],
  maxTokens: number,
  budgetMs: number,
): Promise<LevelRun> {
  let peakRssBytes = process.memoryUsage.rss();
  const sampler = setInterval(() => {
    peakRssBytes = Math.max(peakRssBytes, process.memoryUsage.rss());
  }, RSS_SAMPLE_MS);
  const requests: RequestTiming[] = [];
  const started = performance.now();
  try {
    await Promise.all(
      Array.from({ length: clients }, async (_, client) => {
        for (let request = 0; request < requestsPerClient && performance.now() - started < budgetMs; request++) {
          requests.push(await target.complete(client, promptOf(client, request), maxTokens));
        }
      }),
    );
  } finally {
    clearInterval(sampler);
  }
  const wallMs = performance.now() - started;
  return { requests, wallMs, peakRssBytes: Math.max(peakRssBytes, process.memoryUsage.rss()) };
}
