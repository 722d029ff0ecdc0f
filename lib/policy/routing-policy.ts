// Routing policies (ROUTING.md): their types and their checks against an expert count.
import { DynamoeError } from '../errors';
import { describe, requireObject } from '../validate';

/** Keep the `k` most probable experts (Switch k=1, Mixtral k=2, OLMoE k=8, ...). */
export interface TopKPolicy {
  kind: 'top-k';
  /** Experts per token, an integer in [1, experts]. */
  k: number;
  /** Divide the kept probabilities by their sum (Mixtral; Qwen/OLMoE `norm_topk_prob`). Default false. */
  normalize?: boolean;
  /** Multiply the weights after normalising (DeepSeek `routed_scaling_factor`). Default 1. */
  scale?: number;
}

/**
 * Dynamic routing ("Harder Tasks Need More Experts", 2024): keep the most probable experts until their cumulative
 * probability is strictly greater than `p`. Weights are the raw softmax probabilities unless `normalize`.
 */
export interface TopPPolicy {
  kind: 'top-p';
  /** Threshold in (0, 1]; p = 1 keeps every expert. The seed paper uses 0.4. */
  p: number;
  /** Keep at least this many experts (default 1). */
  minExperts?: number;
  /** Keep at most this many experts (default: all); also the slot count `kMax` of the routing result. */
  maxExperts?: number;
  /** Renormalise the kept weights to sum to 1. Default false (the paper's model was trained without). */
  normalize?: boolean;
}

/** Keep every expert whose probability is at least `tau` (at least `minExperts`, at most `maxExperts`). */
export interface ThresholdPolicy {
  kind: 'threshold';
  /** Probability threshold in [0, 1]. */
  tau: number;
  /** Keep at least this many experts, by rank (default 1). */
  minExperts?: number;
  /** Keep at most this many experts (default: all); also the slot count `kMax` of the routing result. */
  maxExperts?: number;
  /** Renormalise the kept weights to sum to 1. Default false. */
  normalize?: boolean;
}

/** How each token chooses its experts. */
export type RoutingPolicy = TopKPolicy | TopPPolicy | ThresholdPolicy;

function fail(message: string): never {
  throw new DynamoeError('ERR_DYNAMOE_POLICY', message);
}

function checkCount(value: unknown, name: string, kind: string, experts: number): void {
  if (value === undefined) return;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > experts) {
    fail(`${kind} ${name} must be an integer in [1, ${experts}], got ${describe(value)}`);
  }
}

function checkFlag(value: unknown, name: string): void {
  if (value !== undefined && typeof value !== 'boolean') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `${name} must be a boolean, got ${describe(value)}`);
  }
}

/** Throws ERR_DYNAMOE_POLICY unless `policy` is a valid policy for `experts` experts; returns it typed. */
export function checkPolicy(policy: unknown, experts: number): RoutingPolicy {
  if (typeof policy !== 'object' || policy === null) {
    fail(`policy must be an object such as { kind: 'top-p', p: 0.4 }, got ${describe(policy)}`);
  }
  const p = requireObject(policy, 'policy');
  checkFlag(p.normalize, 'normalize');
  switch (p.kind) {
    case 'top-k':
      if (typeof p.k !== 'number' || !Number.isInteger(p.k) || p.k < 1 || p.k > experts) {
        fail(`top-k k must be an integer in [1, ${experts}] (the number of experts), got ${describe(p.k)}`);
      }
      if (p.scale !== undefined && (typeof p.scale !== 'number' || !Number.isFinite(p.scale) || p.scale <= 0)) {
        fail(`top-k scale must be a finite number > 0, got ${describe(p.scale)}`);
      }
      break;
    case 'top-p':
      if (typeof p.p !== 'number' || !(p.p > 0 && p.p <= 1)) {
        fail(`top-p p must be in (0, 1] (p = 1 keeps every expert), got ${describe(p.p)}`);
      }
      break;
    case 'threshold':
      if (typeof p.tau !== 'number' || !(p.tau >= 0 && p.tau <= 1)) {
        fail(`threshold tau must be in [0, 1], got ${describe(p.tau)}`);
      }
      break;
    default:
      fail(`policy.kind must be 'top-k', 'top-p' or 'threshold', got ${describe(p.kind)}`);
  }
  if (p.kind !== 'top-k') {
    checkCount(p.minExperts, 'minExperts', p.kind, experts);
    checkCount(p.maxExperts, 'maxExperts', p.kind, experts);
    const min = (p.minExperts as number | undefined) ?? 1;
    const max = (p.maxExperts as number | undefined) ?? experts;
    if (min > max) fail(`${p.kind} minExperts (${min}) must not exceed maxExperts (${max})`);
  }
  return policy as RoutingPolicy;
}

/** Slots per token in a routing result under `policy`. */
export function policySlots(policy: RoutingPolicy, experts: number): number {
  return policy.kind === 'top-k' ? policy.k : (policy.maxExperts ?? experts);
}
