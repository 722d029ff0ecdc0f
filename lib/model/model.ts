// A loaded model: forward passes over whole token sequences and streaming generation, routed by any policy.
import type { NativeKvSession, NativeModelGraph, NativeMoeStepStats } from '../addon/native-surface';
import { DType } from '../dtype';
import { DynamoeError, fromNativeError } from '../errors';
import { PolicyOption, resolvePolicies } from '../policy/per-layer';
import { RoutingPolicy } from '../policy/routing-policy';
import { policyLabel } from '../policy/short-form';
import { Tokenizer } from '../tokenizer/tokenizer';
import { describe, typeError } from '../validate';
import { RoutingStats, RoutingStatsAccumulator } from './routing-stats';
import { Generation, GenerateOptions } from './generation';
import { formatBytes } from '../format-bytes';
import { requireMemory, stepBytes } from './memory-need';
import { PrefillJob, PrefillResult } from './prefill-job';
import { checkSampling } from './sampling';
import { moeLayers, ModelSpec, routedSlots } from './spec';
import { SchedulerLimits, SchedulerState, StepJob, StepScheduler } from './step-scheduler';

export { Generation } from './generation';
export type { GenerateOptions, GeneratedToken, GenerationSummary, TokenLogprob } from './generation';

/** Options of {@link Model.forward}. */
export interface ModelForwardOptions {
  /** Routing policy for this call (default: the model's). */
  policy?: PolicyOption;
  /** Return routing statistics. */
  stats?: boolean;
  /** Cancels the call (waiting, or between its steps): it rejects with ERR_DYNAMOE_ABORTED. */
  signal?: AbortSignal;
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
  /** Cancels the call (waiting, or between its steps): it rejects with ERR_DYNAMOE_ABORTED. */
  signal?: AbortSignal;
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

/** Sizes and choices of a loaded model, as `dynamoe inspect` prints them. */
export interface ModelInfo extends ModelSpec {
  dtype: DType;
  /** Where the weights live and the steps run. */
  device: 'cpu' | 'cuda';
  /** Bytes of packed weights held by the native graph. */
  weightBytes: number;
  /** Policy label per MoE layer (the model's default). */
  defaultPolicy: string[];
  source: string;
  /** The scheduler's limits (continuous batching). */
  limits: SchedulerLimits;
  /** The KV pool every sequence takes its cache from. */
  kvPool: { positions: number; blockTokens: number; bytes: number };
}

/** Longest sequence one forward or generation runs (the native step and KV cache limit), whatever the context. */
export const MAX_SEQUENCE = 1 << 20;

export class Model {
  private readonly moe;
  private readonly defaultPolicies: RoutingPolicy[];
  private readonly scheduler: StepScheduler;

  /** @internal Use {@link loadModel}. */
  constructor(
    private graph: NativeModelGraph | null,
    readonly spec: ModelSpec,
    readonly tokenizer: Tokenizer,
    readonly dtype: DType,
    readonly source: string,
    policy: PolicyOption | undefined,
    limits: SchedulerLimits,
    readonly device: 'cpu' | 'cuda' = 'cpu',
  ) {
    this.moe = moeLayers(spec).map((l) => ({ ...l.moe, layer: l.layer }));
    this.defaultPolicies = resolvePolicies(policy, this.moe);
    this.scheduler = new StepScheduler(graph as NativeModelGraph, limits);
  }

  get info(): ModelInfo {
    const graph = this.requireGraph();
    const pool = graph.kvPool;
    return {
      ...this.spec,
      dtype: this.dtype,
      device: this.device,
      weightBytes: graph.weightBytes,
      defaultPolicy: this.defaultPolicies.map(policyLabel),
      source: this.source,
      limits: this.scheduler.limits,
      kvPool: { positions: pool.blocks * pool.blockTokens, blockTokens: pool.blockTokens, bytes: pool.blocks * pool.blockBytes },
    };
  }

  /** What the model's scheduler is running now: sequences, queue, KV blocks, the last step's size. */
  get load(): SchedulerState {
    return this.scheduler.state;
  }

  get disposed(): boolean {
    return this.graph === null;
  }

  /** Runs a fresh sequence through the model; resolves to the logits of every position. */
  async forward(tokens: Int32Array | number[], options: ModelForwardOptions = {}): Promise<ModelForwardResult> {
    const ids = this.checkTokens(tokens);
    requireMemory(stepBytes(this.spec, ids.length, ids.length), `a forward over ${ids.length} tokens`);
    const policies = this.policies(options.policy);
    const stats = options.stats === true ? this.statsAccumulator(policies) : undefined;
    const signal = checkSignal(options.signal);
    const result = await this.prefill(new PrefillJob(ids, policies, stats, this.spec.vocab, undefined, signal));
    const out: ModelForwardResult = { logits: result.logits as Float32Array };
    if (stats) out.stats = stats.result();
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
    const stats = options.stats === true ? this.statsAccumulator(policies) : undefined;
    const logProbs = (await this.scoreStep(ids, policies, stats, checkSignal(options.signal))).subarray(0, ids.length - 1);
    let nll = 0;
    for (const lp of logProbs) nll -= lp;
    const out: ScoreResult = { logProbs, nll, perplexity: Math.exp(nll / logProbs.length) };
    if (stats) out.stats = stats.result();
    return out;
  }

  /**
   * @internal Scores a fresh sequence: log P(ids[t + 1]) per position (NaN at the end); its routing statistics are
   * added to `stats`.
   */
  async scoreStep(
    ids: Int32Array,
    policies: RoutingPolicy[],
    stats?: RoutingStatsAccumulator,
    signal?: AbortSignal,
  ): Promise<Float64Array> {
    const targets = new Int32Array(ids.length);
    targets.set(ids.subarray(1));
    targets[ids.length - 1] = -1;
    const result = await this.prefill(new PrefillJob(ids, policies, stats, this.spec.vocab, targets, signal));
    return result.logProbs as Float64Array;
  }

  /**
   * Streams generated tokens for a prompt (text, or token ids). The generation joins the model's scheduler: its
   * prompt is prefilled in chunks and its tokens decoded one per step beside the other requests, with the same
   * results as alone. After the loop, {@link Generation.summary} says what happened.
   */
  generate(prompt: string | Int32Array | number[], options: GenerateOptions = {}): Generation {
    checkSampling(options);
    const stop: unknown = options.stop;
    if (stop !== undefined && !(Array.isArray(stop) && stop.every((s) => typeof s === 'string'))) {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', `stop must be an array of strings, got ${describe(stop)}`);
    }
    checkSignal(options.signal);
    const logprobs: unknown = options.logprobs;
    if (logprobs !== undefined && !(Number.isInteger(logprobs) && (logprobs as number) >= 0 && (logprobs as number) <= 20)) {
      throw new DynamoeError('ERR_DYNAMOE_VALUE', `logprobs must be an integer in [0, 20], got ${describe(logprobs)}`);
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
    this.checkPoolFits(needed, `prompt (${ids.length} tokens) + maxTokens (${maxTokens})`);
    const policies = this.policies(options.policy);
    const host = {
      tokenizer: this.tokenizer,
      vocab: this.spec.vocab,
      statsAccumulator: (p: RoutingPolicy[]) => this.statsAccumulator(p),
      submit: (job: StepJob) => this.submit(job),
    };
    return new Generation(host, ids, policies, options, maxTokens);
  }

  /** Frees the native weights and KV pool; requests still waiting or running end with ERR_DYNAMOE_DISPOSED. */
  dispose(): void {
    if (!this.graph) return;
    this.scheduler.close(new DynamoeError('ERR_DYNAMOE_DISPOSED', 'the model was disposed while the request ran'));
    this.graph.dispose();
    this.graph = null;
  }

  /** @internal A KV session of the model's pool, outside the scheduler (benchmarks and tests step it directly). */
  createSession(capacity: number): NativeKvSession {
    try {
      return this.requireGraph().createSession(capacity);
    } catch (error) {
      fromNativeError(error);
    }
  }

  /** @internal One native forward step on a session, outside the scheduler. */
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
      this.moe.map((l, slot) => ({ layer: l.layer, experts: routedSlots(l), policy: policies[slot] })),
    );
  }

  /** @internal The checked per-MoE-layer policies of an option (the model's default when undefined). */
  policies(option: PolicyOption | undefined): RoutingPolicy[] {
    return option === undefined ? this.defaultPolicies : resolvePolicies(option, this.moe);
  }

  private submit(job: StepJob): void {
    this.requireGraph();
    this.scheduler.submit(job);
  }

  private async prefill(job: PrefillJob): Promise<PrefillResult> {
    this.checkPoolFits(job.positions, `${job.positions} tokens`);
    if (job.signal?.aborted) throw new DynamoeError('ERR_DYNAMOE_ABORTED', 'the request was aborted');
    this.submit(job);
    return job.result;
  }

  private requireGraph(): NativeModelGraph {
    if (!this.graph) throw new DynamoeError('ERR_DYNAMOE_DISPOSED', 'this model was disposed; load it again');
    return this.graph;
  }

  // Throws ERR_DYNAMOE_OUT_OF_MEMORY at the call (not later in the queue) when `positions` exceed the KV pool.
  private checkPoolFits(positions: number, what: string): void {
    if (!this.graph) return; // a disposed model says so when the request is submitted
    const pool = this.graph.kvPool;
    const capacity = pool.blocks * pool.blockTokens;
    if (Math.ceil(positions / pool.blockTokens) > pool.blocks) {
      throw new DynamoeError(
        'ERR_DYNAMOE_OUT_OF_MEMORY',
        `${what} need ${positions} KV positions (${formatBytes(Math.ceil(positions / pool.blockTokens) * pool.blockBytes)}), ` +
          `more than the model's KV pool holds (${capacity} positions, ${formatBytes(pool.blocks * pool.blockBytes)}); ` +
          'load the model with a larger kvPoolTokens',
      );
    }
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

// The signal of a call's options, checked by shape: an AbortSignal from another realm (vm contexts, jest) is not an
// instance of this one's.
function checkSignal(signal: unknown): AbortSignal | undefined {
  if (signal !== undefined && typeof (signal as AbortSignal | null)?.aborted !== 'boolean') {
    typeError('signal', 'an AbortSignal', signal);
  }
  return signal as AbortSignal | undefined;
}
