// routerLosses(): the seed paper's dynamic (entropy) and load-balance router losses, with logit gradients.
import { native } from '../addon/native';
import type { RouterLosses } from '../addon/native-surface';
import { DynamoeError, fromNativeError } from '../errors';
import { checkPolicy, RoutingPolicy } from '../policy/routing-policy';
import { describe, MAX_EXPERTS, requireFloat32Array, requireObject, requireSize } from '../validate';

export type { RouterLosses };

/** Options of {@link routerLosses}. */
export interface RouterLossOptions {
  tokens: number;
  experts: number;
  /** The policy whose selection defines `f` (the same selection {@link route} makes). */
  policy: RoutingPolicy;
  /** Also return the gradients of both losses with respect to the logits. Default false. */
  gradients?: boolean;
}

/**
 * Computes the router losses of "Harder Tasks Need More Experts: Dynamic Routing in MoE Models" (2024) from a
 * batch of router logits, off the event loop (a worker thread; the logits are copied first).
 *
 * - P = softmax(z) per token, computed in double.
 * - S_t = the experts `policy` selects for token t, exactly as {@link route} selects them (fp32, ROUTING.md:
 *   probability descending, ties to the lower id; top-p keeps up to the first running sum > p).
 * - Dynamic loss L_d = mean_t( -sum_i P_ti log P_ti ).
 * - Load-balance loss L_b = E * sum_i f_i Q_i, with f_i = |{t : i in S_t}| / T and Q_i = mean_t P_ti.
 *
 * With `gradients: true` it also returns, per logit, computed in double and stored as float:
 * - dL_d/dz_tj = -(1/T) * P_tj * (log P_tj + H_t), where H_t = -sum_i P_ti log P_ti (0 log 0 taken as 0);
 * - dL_b/dz_tj = (E/T) * P_tj * (f_j - sum_i f_i P_ti).
 * The selection is not differentiable (a step function of z), so f is treated as a constant: only Q carries
 * gradient, as in the paper's (and Switch Transformer's) training setup.
 *
 * @param logits [tokens * experts] router logits, finite; not modified.
 * @throws (rejects with) DynamoeError: ERR_DYNAMOE_TYPE (not a Float32Array / object / boolean),
 *   ERR_DYNAMOE_SHAPE (sizes, length, tokens * experts of 2^31 or more), ERR_DYNAMOE_POLICY (bad policy),
 *   ERR_DYNAMOE_VALUE (a non-finite logit; the message names the token and expert).
 * @example
 * const { dynamicLoss, loadBalanceLoss, dynamicLossGradient } = await routerLosses(logits, {
 *   tokens: 512, experts: 16, policy: { kind: 'top-p', p: 0.4 }, gradients: true,
 * });
 */
export async function routerLosses(logits: Float32Array, options: RouterLossOptions): Promise<RouterLosses> {
  const opts = requireObject(options, 'options');
  const tokens = requireSize(opts.tokens, 'tokens');
  const experts = requireSize(opts.experts, 'experts', MAX_EXPERTS);
  if (tokens * experts >= 2 ** 31) {
    throw new DynamoeError('ERR_DYNAMOE_SHAPE', `tokens * experts must stay below 2^31, got ${tokens} * ${experts}`);
  }
  requireFloat32Array(logits, tokens * experts, 'logits');
  const policy = checkPolicy(opts.policy, experts);
  const gradients = opts.gradients ?? false;
  if (typeof gradients !== 'boolean') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `gradients must be a boolean, got ${describe(gradients)}`);
  }
  try {
    return await native().routerLosses(logits, { tokens, experts, gradients }, policy);
  } catch (error) {
    return fromNativeError(error);
  }
}
