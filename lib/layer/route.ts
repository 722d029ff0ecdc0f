// route(): routing on its own, for inspecting policies on logits from anywhere.
import { native } from '../addon/native';
import { resolveDevice } from '../backend/device-placement';
import { Device, parseDevice } from '../device';
import { DynamoeError, fromNativeError } from '../errors';
import { checkPolicyUnderRule, checkRouterRule, isPlainRouter, RouterRule } from '../policy/router-rule';
import { checkPolicy, RoutingPolicy } from '../policy/routing-policy';
import { describe, MAX_EXPERTS, requireFloat32Array, requireObject, requireSize } from '../validate';

/** Fixed-shape routing output (ROUTING.md). */
export interface RoutingResult {
  /** Slots per token: `k` for top-k, `maxExperts` (default: all experts) for top-p and threshold. */
  kMax: number;
  /** [tokens * kMax] expert ids in descending-probability order; -1 marks unused slots. */
  ids: Int32Array;
  /** [tokens * kMax] combine weights; 0 in unused slots. */
  weights: Float32Array;
  /** [tokens] used slots per token. */
  counts: Int32Array;
  /** [experts] tokens routed to each expert. */
  expertLoad: Int32Array;
}

/** Options of {@link route}. */
export interface RouteOptions {
  tokens: number;
  experts: number;
  policy: RoutingPolicy;
  /** What `scores` holds: router logits (softmax applied, the default) or probabilities (used as they are). */
  input?: 'logits' | 'probabilities';
  /**
   * Run the CPU router ('cpu', the default) or the CUDA routing kernel ('cuda'); both select the same experts, bit
   * for bit. 'auto' is 'cuda' when the CUDA backend is usable ({@link backendInfo}().backend), else 'cpu'.
   */
  device?: Device;
  /** A model family's router rule (sigmoid scores, selection bias, groups, weight rule); absent: plain softmax. */
  routerRule?: RouterRule;
}

/**
 * Routes `tokens` rows of `experts` router scores with a policy, off the event loop.
 * @param scores [tokens * experts] router logits (or probabilities with `input: 'probabilities'`); not modified.
 */
export async function route(scores: Float32Array, options: RouteOptions): Promise<RoutingResult> {
  const opts = requireObject(options, 'options');
  const tokens = requireSize(opts.tokens, 'tokens');
  const experts = requireSize(opts.experts, 'experts', MAX_EXPERTS);
  requireFloat32Array(scores, tokens * experts, 'logits');
  const policy = checkPolicy(opts.policy, experts);
  const input = opts.input ?? 'logits';
  if (input !== 'logits' && input !== 'probabilities') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `input must be 'logits' or 'probabilities', got ${describe(input)}`);
  }
  const rule = checkRouterRule(opts.routerRule, experts);
  checkPolicyUnderRule(policy, rule, experts);
  if (!isPlainRouter(rule) && input !== 'logits') {
    throw new DynamoeError('ERR_DYNAMOE_POLICY', 'a router rule other than the plain softmax routes logits, not probabilities');
  }
  const device = resolveDevice(parseDevice(opts.device ?? 'cpu', 'device'), 'layer');
  try {
    return await native().route(scores, { tokens, experts }, policy, input, device, rule);
  } catch (error) {
    return fromNativeError(error);
  }
}
