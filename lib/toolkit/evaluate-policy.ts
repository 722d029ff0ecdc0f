// Runs a routing policy over evaluation windows: perplexity, routing statistics, speed and expert compute.
import { DynamoeError } from '../errors';
import { Model } from '../model/model';
import { RoutingStats } from '../model/routing-stats';
import { moeLayers } from '../model/spec';
import { PolicyOption } from '../policy/per-layer';
import { typeError } from '../validate';

/** What one policy did on a text. */
export interface PolicyEvaluation {
  /** `top-p:0.4`, or per-layer labels joined by commas. */
  policy: string;
  perplexity: number;
  /** Mean negative log-likelihood per predicted token (nats). */
  nll: number;
  /** Tokens predicted (each window's tokens after its first). */
  predictedTokens: number;
  /** Tokens run through the model per second of forward time. */
  tokensPerSecond: number;
  /** Routed-expert FLOPs per token over all MoE layers (2 x 3 x hidden x ffn per expert; shared experts excluded). */
  expertFlopsPerToken: number;
  stats: RoutingStats;
}

/** Routed-expert FLOPs per token of each MoE layer for one expert: gate, up and down projections. */
export function expertFlopsPerExpert(model: Model): number[] {
  return moeLayers(model.spec).map((l) => 2 * 3 * model.spec.hidden * l.moe.ffn);
}

/**
 * Throws a coded error unless `model` is a loaded Model and `windows` a non-empty array of token windows it can
 * score (2 to maxContext ids each, inside its vocabulary): the toolkit's entry points call it first.
 */
export function checkEvaluationInput(model: unknown, windows: unknown): asserts model is Model {
  if (!(model instanceof Model)) typeError('model', 'a Model from loadModel()', model);
  if (!Array.isArray(windows) || windows.length === 0) typeError('windows', 'a non-empty array of Int32Array', windows);
  const { vocab, maxContext } = model.spec;
  windows.forEach((window: unknown, w) => {
    if (!(window instanceof Int32Array)) typeError(`windows[${w}]`, 'an Int32Array', window);
    if (window.length < 2 || window.length > maxContext) {
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', `windows[${w}] must hold 2 to ${maxContext} tokens, got ${window.length}`);
    }
    const bad = window.findIndex((id) => id < 0 || id >= vocab);
    if (bad >= 0) {
      throw new DynamoeError('ERR_DYNAMOE_VALUE', `windows[${w}][${bad}] is ${window[bad]}, outside the vocabulary [0, ${vocab})`);
    }
  });
}

/** Scores every window under `policy` (undefined: the model's own); `onWindow` is called after each one. */
export async function evaluatePolicy(
  model: Model,
  windows: Int32Array[],
  policy: PolicyOption | undefined,
  onWindow: () => void = () => undefined,
): Promise<PolicyEvaluation> {
  checkEvaluationInput(model, windows);
  return scoreWindows(model, windows, policy, onWindow);
}

/** {@link evaluatePolicy} on input already checked with {@link checkEvaluationInput} (sweeps score it many times). */
export async function scoreWindows(
  model: Model,
  windows: Int32Array[],
  policy: PolicyOption | undefined,
  onWindow: () => void,
): Promise<PolicyEvaluation> {
  const policies = model.policies(policy);
  const stats = model.statsAccumulator(policies);
  let nll = 0;
  let predicted = 0;
  let tokens = 0;
  let seconds = 0;
  for (const window of windows) {
    const started = performance.now();
    const logProbs = await model.scoreStep(window, policies, stats);
    seconds += (performance.now() - started) / 1000;
    for (let t = 0; t + 1 < window.length; t++) nll -= logProbs[t];
    predicted += window.length - 1;
    tokens += window.length;
    onWindow();
  }
  const result = stats.result();
  const perExpert = expertFlopsPerExpert(model);
  return {
    policy: result.policy,
    perplexity: Math.exp(nll / predicted),
    nll: nll / predicted,
    predictedTokens: predicted,
    tokensPerSecond: tokens / seconds,
    // FFN experts only: a zero-computation expert's slot costs no GEMM.
    expertFlopsPerToken: result.layers.reduce((sum, l, slot) => sum + l.ffnExpertsPerToken * perExpert[slot], 0),
    stats: result,
  };
}
