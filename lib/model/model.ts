// A loaded model: forward passes over whole token sequences and streaming generation, routed by any policy.
import type { NativeKvSession, NativeModelGraph, NativeMoeStepStats } from '../addon/native-surface';
import { DType } from '../dtype';
import { DynamoeError, fromNativeError } from '../errors';
import { PolicyOption, resolvePolicies } from '../policy/per-layer';
import { RoutingPolicy } from '../policy/routing-policy';
import { policyLabel } from '../policy/short-form';
import { Tokenizer } from '../tokenizer/tokenizer';
import { describe, typeError } from '../validate';
import { kvCacheBytes, requireMemory, stepBytes } from './memory-need';
import { RoutingStats, RoutingStatsAccumulator } from './routing-stats';
import { checkSampling, Sampler, SamplingOptions } from './sampling';
import { moeLayers, ModelSpec } from './spec';

/** Options of {@link Model.forward}. */
export interface ModelForwardOptions {
  /** Routing policy for this call (default: the model's). */
  policy?: PolicyOption;
  /** Return routing statistics. */
  stats?: boolean;
}

/** Result of {@link Model.forward}. */
export interface ModelForwardResult {
  /** [tokens][vocab] logits of every position. */
  logits: Float32Array;
  stats?: RoutingStats;
}

/** Options of {@link Model.score}. */
export interface ScoreOptions {
  /** Routing policy for this call (default: the model's). */
  policy?: PolicyOption;
  /** Return routing statistics. */
  stats?: boolean;
}

/** Result of {@link Model.score}: how well the model predicts each next token of a sequence. */
export interface ScoreResult {
  /** [tokens - 1] log P(tokens[i + 1] | tokens[0..i]) in nats. */
  logProbs: Float64Array;
  /** Negative log-likelihood of the predicted tokens, summed (nats). */
  nll: number;
  /** exp(nll / predicted tokens). */
  perplexity: number;
  stats?: RoutingStats;
}

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
}

/** One streamed token. */
export interface GeneratedToken {
  id: number;
  /** Text this token completes (may be '' inside a multi-byte character). */
  text: string;
}

/** What a finished generation did. */
export interface GenerationSummary {
  text: string;
  tokenIds: number[];
  promptTokens: number;
  stopReason: 'eos' | 'stop' | 'maxTokens';
  prefillMs: number;
  decodeMs: number;
  /** Routing statistics over the prompt and the generated tokens. */
  stats: RoutingStats;
}

/** Sizes and choices of a loaded model, as `dynamoe inspect` prints them. */
export interface ModelInfo extends ModelSpec {
  dtype: DType;
  /** Bytes of packed weights held by the native graph. */
  weightBytes: number;
  /** Policy label per MoE layer (the model's default). */
  defaultPolicy: string[];
  source: string;
}

/** Longest sequence one forward or generation runs (the native step and KV cache limit), whatever the context. */
export const MAX_SEQUENCE = 1 << 20;

export class Model {
  private readonly moe;
  private readonly defaultPolicies: RoutingPolicy[];

  /** @internal Use {@link loadModel}. */
  constructor(
    private graph: NativeModelGraph | null,
    readonly spec: ModelSpec,
    readonly tokenizer: Tokenizer,
    readonly dtype: DType,
    readonly source: string,
    policy: PolicyOption | undefined,
  ) {
    this.moe = moeLayers(spec).map((l) => ({ ...l.moe, layer: l.layer }));
    this.defaultPolicies = resolvePolicies(policy, this.moe);
  }

  get info(): ModelInfo {
    return {
      ...this.spec,
      dtype: this.dtype,
      weightBytes: this.requireGraph().weightBytes,
      defaultPolicy: this.defaultPolicies.map(policyLabel),
      source: this.source,
    };
  }

  get disposed(): boolean {
    return this.graph === null;
  }

  /** Runs a fresh sequence through the model; resolves to the logits of every position. */
  async forward(tokens: Int32Array | number[], options: ModelForwardOptions = {}): Promise<ModelForwardResult> {
    const ids = this.checkTokens(tokens);
    requireMemory(stepBytes(this.spec, ids.length, ids.length), `a forward over ${ids.length} tokens`);
    const policies = this.policies(options.policy);
    const result = await this.step(null, ids, policies, false, options.stats === true);
    const out: ModelForwardResult = { logits: result.logits };
    if (result.stats) {
      const stats = this.statsAccumulator(policies);
      stats.add(result.stats);
      out.stats = stats.result();
    }
    return out;
  }

  /**
   * Scores a sequence: the log-probability of each token given the ones before it (perplexity, policy sweeps).
   * Only these log-probabilities leave native code, never the [tokens][vocab] logits.
   */
  async score(tokens: Int32Array | number[], options: ScoreOptions = {}): Promise<ScoreResult> {
    const ids = this.checkTokens(tokens);
    if (ids.length < 2) throw new DynamoeError('ERR_DYNAMOE_SHAPE', 'score needs at least 2 tokens');
    requireMemory(stepBytes(this.spec, ids.length, 0) + ids.length * 8, `scoring ${ids.length} tokens`);
    const policies = this.policies(options.policy);
    const result = await this.scoreStep(ids, policies, options.stats === true);
    const logProbs = result.logProbs.subarray(0, ids.length - 1);
    let nll = 0;
    for (const lp of logProbs) nll -= lp;
    const out: ScoreResult = { logProbs, nll, perplexity: Math.exp(nll / logProbs.length) };
    if (result.stats) {
      const stats = this.statsAccumulator(policies);
      stats.add(result.stats);
      out.stats = stats.result();
    }
    return out;
  }

  /** @internal One native scoring step over a fresh sequence: log P(ids[t + 1]) per position (NaN at the end). */
  async scoreStep(
    ids: Int32Array,
    policies: RoutingPolicy[],
    stats: boolean,
  ): Promise<{ logProbs: Float64Array; stats?: NativeMoeStepStats[] }> {
    const targets = new Int32Array(ids.length);
    targets.set(ids.subarray(1));
    targets[ids.length - 1] = -1;
    try {
      return await this.requireGraph().forward(null, ids, { policies, lastRowLogits: false, stats, targets });
    } catch (error) {
      fromNativeError(error);
    }
  }

  /**
   * Streams generated tokens for a prompt (text, or token ids): the prompt in one batched forward, then one token
   * per step. After the loop, {@link Generation.summary} says what happened.
   */
  generate(prompt: string | Int32Array | number[], options: GenerateOptions = {}): Generation {
    checkSampling(options);
    const stop: unknown = options.stop;
    if (stop !== undefined && !(Array.isArray(stop) && stop.every((s) => typeof s === 'string'))) {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', `stop must be an array of strings, got ${describe(stop)}`);
    }
    const signal: unknown = options.signal;
    // Checked by shape: an AbortSignal from another realm (vm contexts, jest) is not an instance of this one's.
    if (signal !== undefined && typeof (signal as AbortSignal | null)?.aborted !== 'boolean') {
      typeError('signal', 'an AbortSignal', signal);
    }
    const maxTokens = options.maxTokens ?? 128;
    if (!Number.isInteger(maxTokens) || maxTokens < 1) {
      throw new DynamoeError('ERR_DYNAMOE_VALUE', `maxTokens must be a positive integer, got ${String(maxTokens)}`);
    }
    const ids =
      typeof prompt === 'string'
        ? this.tokenizer.encode(prompt, { addSpecialTokens: options.addSpecialTokens ?? true })
        : this.checkTokens(prompt);
    if (ids.length === 0) throw new DynamoeError('ERR_DYNAMOE_VALUE', 'the prompt encodes to no tokens');
    const needed = ids.length + maxTokens;
    this.checkSequenceLength(needed, `prompt (${ids.length} tokens) + maxTokens (${maxTokens}) = ${needed} exceeds`);
    requireMemory(
      kvCacheBytes(this.spec, needed) + stepBytes(this.spec, ids.length, 1),
      `a generation of ${needed} positions (its KV cache and prefill)`,
    );
    return new Generation(this, ids, this.policies(options.policy), options, maxTokens);
  }

  /** Frees the native weights; running calls finish first. */
  dispose(): void {
    this.graph?.dispose();
    this.graph = null;
  }

  /** @internal */
  createSession(capacity: number): NativeKvSession {
    try {
      return this.requireGraph().createSession(capacity);
    } catch (error) {
      fromNativeError(error);
    }
  }

  /** @internal One native forward step. */
  async step(
    session: NativeKvSession | null,
    tokens: Int32Array,
    policies: RoutingPolicy[],
    lastRowLogits: boolean,
    stats: boolean,
  ): Promise<{ logits: Float32Array; stats?: NativeMoeStepStats[] }> {
    try {
      return await this.requireGraph().forward(session, tokens, { policies, lastRowLogits, stats });
    } catch (error) {
      fromNativeError(error);
    }
  }

  /** @internal */
  statsAccumulator(policies: RoutingPolicy[]): RoutingStatsAccumulator {
    return new RoutingStatsAccumulator(
      this.moe.map((l, slot) => ({ layer: l.layer, experts: l.experts, policy: policies[slot] })),
    );
  }

  /** @internal The checked per-MoE-layer policies of an option (the model's default when undefined). */
  policies(option: PolicyOption | undefined): RoutingPolicy[] {
    return option === undefined ? this.defaultPolicies : resolvePolicies(option, this.moe);
  }

  private requireGraph(): NativeModelGraph {
    if (!this.graph) throw new DynamoeError('ERR_DYNAMOE_DISPOSED', 'this model was disposed; load it again');
    return this.graph;
  }

  private checkTokens(tokens: Int32Array | number[]): Int32Array {
    if (!(tokens instanceof Int32Array) && !Array.isArray(tokens)) {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', 'tokens must be an Int32Array or an array of token ids');
    }
    if (tokens.length === 0) throw new DynamoeError('ERR_DYNAMOE_SHAPE', 'tokens must not be empty');
    const ids = Int32Array.from(tokens);
    for (let i = 0; i < tokens.length; i++) {
      const id = tokens[i];
      if (!Number.isInteger(id) || id < 0 || id >= this.spec.vocab) {
        throw new DynamoeError(
          'ERR_DYNAMOE_VALUE',
          `token ${i} is ${String(id)}, outside the vocabulary [0, ${this.spec.vocab})`,
        );
      }
    }
    this.checkSequenceLength(ids.length, `${ids.length} tokens exceed`);
    return ids;
  }

  /** Throws ERR_DYNAMOE_SHAPE, `exceeds` followed by the limit, when `length` positions pass the model's context. */
  private checkSequenceLength(length: number, exceeds: string): void {
    if (length > this.spec.maxContext) {
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${exceeds} the model's context of ${this.spec.maxContext} tokens`);
    }
    if (length > MAX_SEQUENCE) {
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${exceeds} the longest sequence dynamoe runs (${MAX_SEQUENCE} positions)`);
    }
  }
}

/** A streaming generation: iterate it with `for await`; read {@link summary} afterwards. */
export class Generation implements AsyncIterable<GeneratedToken> {
  /** Set when the iteration finished (not when it was aborted or failed). */
  summary: GenerationSummary | undefined;
  private started = false;
  private accumulator: RoutingStatsAccumulator | undefined;

  /** @internal */
  constructor(
    private readonly model: Model,
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
    return this.accumulator?.result();
  }

  [Symbol.asyncIterator](): AsyncIterator<GeneratedToken> {
    if (this.started) throw new DynamoeError('ERR_DYNAMOE_VALUE', 'a generation can be iterated only once');
    this.started = true;
    return this.run();
  }

  private async *run(): AsyncGenerator<GeneratedToken> {
    const { model, prompt, options } = this;
    const tokenizer = model.tokenizer;
    const sampler = new Sampler(options);
    const stats = model.statsAccumulator(this.policies);
    this.accumulator = stats;
    const decoder = tokenizer.createStreamDecoder({ skipSpecialTokens: true });
    const stops = options.stop ?? [];
    const session = model.createSession(prompt.length + this.maxTokens);
    const generated: number[] = [];
    let text = ''; // decoded so far, cut at a stop string
    let released = 0; // characters of `text` already yielded
    let pending = -1; // last token id, yielded one step late so held-back text can still join it
    const release = (id: number, upTo: number): GeneratedToken => {
      const piece = text.slice(released, upTo);
      released = upTo;
      return { id, text: piece };
    };
    let stopReason: GenerationSummary['stopReason'] = 'maxTokens';
    let prefillMs = 0;
    const started = performance.now();
    // Ids past the tokenizer's vocabulary (padded embedding rows) can never be decoded: never sample them.
    const decodable = Math.min(tokenizer.vocabSize, model.spec.vocab);
    try {
      let input = prompt;
      while (generated.length < this.maxTokens) {
        if (options.signal?.aborted) throw new DynamoeError('ERR_DYNAMOE_ABORTED', 'the generation was aborted');
        const step = await model.step(session, input, this.policies, true, true);
        if (step.stats) stats.add(step.stats);
        if (generated.length === 0) prefillMs = performance.now() - started;
        const id = sampler.next(decodable < step.logits.length ? step.logits.subarray(0, decodable) : step.logits);
        if (tokenizer.eosTokenIds.includes(id)) {
          stopReason = 'eos';
          break;
        }
        text += decoder.push(id);
        const stopAt = firstStop(text, stops, released);
        if (stopAt >= 0) {
          text = text.slice(0, stopAt);
          stopReason = 'stop';
          break;
        }
        generated.push(id);
        if (pending >= 0) yield release(pending, heldBackFrom(text, stops, released));
        pending = id;
        input = Int32Array.of(id);
      }
      if (stopReason !== 'stop') text += decoder.flush();
      if (pending >= 0) yield release(pending, text.length);
      this.summary = {
        text,
        tokenIds: generated,
        promptTokens: prompt.length,
        stopReason,
        prefillMs,
        decodeMs: performance.now() - started - prefillMs,
        stats: stats.result(),
      };
    } finally {
      session.dispose();
    }
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
