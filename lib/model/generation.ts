// Streaming generation: a scheduler job that prefills the prompt in chunks, then decodes one token per step beside
// the other requests; the async iterator hands its tokens to the caller.
import type { NativeStepResult, NativeStepSegment } from '../addon/native-surface';
import { DynamoeError } from '../errors';
import { PolicyOption } from '../policy/per-layer';
import { RoutingPolicy } from '../policy/routing-policy';
import { StreamDecoder, Tokenizer } from '../tokenizer/tokenizer';
import { RoutingStats, RoutingStatsAccumulator } from './routing-stats';
import { Sampler, SamplingOptions } from './sampling';
import { StepJob } from './step-scheduler';

/** Options of {@link Model.generate}. */
export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate (default 128). */
  maxTokens?: number;
  /** Generation stops when the text contains one of these (the stop text is not returned). */
  stop?: string[];
  /** Routing policy for this generation (default: the model's). */
  policy?: PolicyOption;
  /** Cancels the generation: the iterator throws ERR_DYNAMOE_ABORTED and the model stays usable. */
  signal?: AbortSignal;
  /** Add the tokenizer's BOS/EOS to a text prompt (default true). */
  addSpecialTokens?: boolean;
  /**
   * Report each token's log-probability under the model, and the `logprobs` (0 to 20) most likely tokens' at its
   * position (absent: none). Temperature, top-k and top-p shape the choice, not these numbers.
   */
  logprobs?: number;
}

/** A token's log-probability at one position (OpenAI's top_logprobs entries). */
export interface TokenLogprob {
  id: number;
  /** The token decoded alone (may be part of a multi-byte character). */
  text: string;
  logprob: number;
}

/** One streamed token. */
export interface GeneratedToken {
  id: number;
  /** Text this token completes (may be '' inside a multi-byte character). */
  text: string;
  /** With the `logprobs` option: log P(this token) under the model at its position. */
  logprob?: number;
  /** With the `logprobs` option: the most likely tokens at its position, best first. */
  topLogprobs?: TokenLogprob[];
}

/** What a finished generation did. */
export interface GenerationSummary {
  text: string;
  tokenIds: number[];
  promptTokens: number;
  stopReason: 'eos' | 'stop' | 'maxTokens';
  /** From the start of the iteration to the first token (queueing and the prompt's prefill). */
  prefillMs: number;
  decodeMs: number;
  /** Routing statistics over the prompt and the generated tokens. */
  stats: RoutingStats;
}

/** What a generation needs of its model. */
export interface GenerationHost {
  readonly tokenizer: Tokenizer;
  readonly vocab: number;
  statsAccumulator(policies: RoutingPolicy[]): RoutingStatsAccumulator;
  /** Queues a job on the model's scheduler (throws when it cannot be queued). */
  submit(job: StepJob): void;
}

/** A streaming generation: iterate it with `for await`; read {@link summary} afterwards. */
export class Generation implements AsyncIterable<GeneratedToken> {
  /** Set when the iteration finished (not when it was aborted or failed). */
  summary: GenerationSummary | undefined;
  private started = false;
  private job: GenerationJob | undefined;

  /** @internal */
  constructor(
    private readonly host: GenerationHost,
    private readonly prompt: Int32Array,
    private readonly policies: RoutingPolicy[],
    private readonly options: GenerateOptions,
    private readonly maxTokens: number,
  ) {}

  /**
   * Routing statistics of the steps run so far (undefined until the iteration starts): readable during it and
   * after it ended for any reason, so an aborted or failed generation still says what it used.
   */
  get stats(): RoutingStats | undefined {
    return this.job?.stats.result();
  }

  [Symbol.asyncIterator](): AsyncIterator<GeneratedToken> {
    if (this.started) throw new DynamoeError('ERR_DYNAMOE_VALUE', 'a generation can be iterated only once');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<GeneratedToken> {
    const job = new GenerationJob(this.host, this.prompt, this.policies, this.options, this.maxTokens);
    this.job = job;
    if (this.options.signal?.aborted) throw new DynamoeError('ERR_DYNAMOE_ABORTED', 'the generation was aborted');
    this.host.submit(job);
    try {
      for (;;) {
        const token = await job.next();
        if (token === null) break;
        // No token reaches the caller after an abort, even one the scheduler decoded before it.
        if (this.options.signal?.aborted) throw new DynamoeError('ERR_DYNAMOE_ABORTED', 'the generation was aborted');
        yield token;
      }
      this.summary = job.summary();
    } finally {
      // A caller that stops iterating early frees the sequence at the next step.
      job.cancel();
    }
  }
}

// The generation as the scheduler runs it: sampling, stop strings and text are handled as each step's logits
// arrive, and the tokens wait in a queue for the iterator.
class GenerationJob implements StepJob {
  readonly stats: RoutingStatsAccumulator;
  private prefilled = 0;
  private pendingPrompt = 0;
  private readonly sampler: Sampler;
  private readonly decoder: StreamDecoder;
  private readonly stops: string[];
  private readonly decodable: number;
  private readonly generated: number[] = [];
  private text = ''; // decoded so far, cut at a stop string
  private released = 0; // characters of `text` already handed out
  private pending = -1; // last token id, handed out one step late so held-back text can still join it
  private pendingLogprobs: Pick<GeneratedToken, 'logprob' | 'topLogprobs'> = {}; // the pending token's
  private stopReason: GenerationSummary['stopReason'] = 'maxTokens';
  private readonly started = performance.now();
  private prefillMs = 0;
  private ended = false;
  private error: unknown = undefined;
  private wasCancelled = false;
  private readonly queue: (GeneratedToken | null)[] = [];
  private wake: (() => void) | undefined;

  constructor(
    private readonly host: GenerationHost,
    private readonly prompt: Int32Array,
    private readonly policies: RoutingPolicy[],
    private readonly options: GenerateOptions,
    private readonly maxTokens: number,
  ) {
    this.stats = host.statsAccumulator(policies);
    this.sampler = new Sampler(options);
    this.decoder = host.tokenizer.createStreamDecoder({ skipSpecialTokens: true });
    this.stops = options.stop ?? [];
    // Ids past the tokenizer's vocabulary (padded embedding rows) can never be decoded: never sample them.
    this.decodable = Math.min(host.tokenizer.vocabSize, host.vocab);
  }

  get positions(): number {
    return this.prompt.length + this.maxTokens;
  }

  get signal(): AbortSignal | undefined {
    return this.options.signal;
  }

  get cancelled(): boolean {
    return this.wasCancelled;
  }

  get decoding(): boolean {
    return this.prefilled === this.prompt.length;
  }

  nextSegment(budget: number): Omit<NativeStepSegment, 'session'> {
    let tokens: Int32Array;
    if (this.decoding) {
      tokens = Int32Array.of(this.generated[this.generated.length - 1]);
    } else {
      this.pendingPrompt = Math.min(budget, this.prompt.length - this.prefilled);
      tokens = this.prompt.subarray(this.prefilled, this.prefilled + this.pendingPrompt);
    }
    // The backend chooses the id next to its logits: a GPU step copies one id back instead of [vocab] logits. The
    // draw is taken only when the step's row is the next token (the prompt's last chunk, or a decode step).
    const last = this.decoding || this.prefilled + this.pendingPrompt === this.prompt.length;
    const choice = last ? this.sampler.next(this.decodable) : { limit: this.decodable };
    const logprobs = last && this.options.logprobs !== undefined ? { logprobs: this.options.logprobs } : {};
    return { tokens, policies: this.policies, lastRowLogits: true, stats: true, sums: this.stats.runningSums(), choice, ...logprobs };
  }

  accept(result: NativeStepResult): boolean {
    if (result.stats) this.stats.add(result.stats);
    if (!this.decoding) {
      this.prefilled += this.pendingPrompt;
      if (!this.decoding) return false; // more of the prompt to go
      this.prefillMs = performance.now() - this.started;
    }
    const id = result.token as number;
    if (this.host.tokenizer.eosTokenIds.includes(id)) return this.end('eos');
    this.text += this.decoder.push(id);
    const stopAt = firstStop(this.text, this.stops, this.released);
    if (stopAt >= 0) {
      this.text = this.text.slice(0, stopAt);
      return this.end('stop');
    }
    this.generated.push(id);
    if (this.pending >= 0) this.hand(this.release(this.pending, heldBackFrom(this.text, this.stops, this.released)));
    this.pending = id;
    this.pendingLogprobs = this.logprobsOf(result);
    return this.generated.length >= this.maxTokens ? this.end('maxTokens') : false;
  }

  fail(error: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.error = error;
    this.wake?.();
  }

  cancel(): void {
    this.wasCancelled = true;
  }

  /** The next token, or null once the generation ended; rejects with the job's error. */
  async next(): Promise<GeneratedToken | null> {
    for (;;) {
      if (this.queue.length > 0) return this.queue.shift() as GeneratedToken | null;
      if (this.error !== undefined) throw this.error;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }

  summary(): GenerationSummary {
    return {
      text: this.text,
      tokenIds: this.generated,
      promptTokens: this.prompt.length,
      stopReason: this.stopReason,
      prefillMs: this.prefillMs,
      decodeMs: performance.now() - this.started - this.prefillMs,
      stats: this.stats.result(),
    };
  }

  private end(reason: GenerationSummary['stopReason']): true {
    this.stopReason = reason;
    if (reason !== 'stop') this.text += this.decoder.flush();
    if (this.pending >= 0) this.hand(this.release(this.pending, this.text.length));
    this.ended = true;
    this.hand(null);
    return true;
  }

  private hand(token: GeneratedToken | null): void {
    this.queue.push(token);
    this.wake?.();
  }

  private release(id: number, upTo: number): GeneratedToken {
    const piece = this.text.slice(this.released, upTo);
    this.released = upTo;
    return { id, text: piece, ...this.pendingLogprobs };
  }

  // The step's logprobs, as the caller receives them (each top id with its own text).
  private logprobsOf(result: NativeStepResult): Pick<GeneratedToken, 'logprob' | 'topLogprobs'> {
    if (result.logprob === undefined || !result.topLogprobs) return {};
    const { ids, logprobs } = result.topLogprobs;
    const decode = (id: number) => this.host.tokenizer.decode([id], { skipSpecialTokens: false });
    return { logprob: result.logprob, topLogprobs: Array.from(ids, (id, i) => ({ id, text: decode(id), logprob: logprobs[i] })) };
  }
}

// Start of the text that may still turn into a stop string (a suffix that is a stop's prefix): held back.
function heldBackFrom(text: string, stops: string[], from: number): number {
  let hold = 0;
  for (const stop of stops) {
    for (let k = Math.min(stop.length - 1, text.length); k > hold; k--) {
      if (text.endsWith(stop.slice(0, k))) {
        hold = k;
        break;
      }
    }
  }
  return Math.max(from, text.length - hold);
}

// Index of the earliest stop string in `text` that ends after `from` (-1 when none).
function firstStop(text: string, stops: string[], from: number): number {
  let best = -1;
  for (const stop of stops) {
    if (!stop) continue;
    const at = text.indexOf(stop, Math.max(0, from - stop.length + 1));
    if (at >= 0 && (best < 0 || at < best)) best = at;
  }
  return best;
}
