// A model family's router rule (README "Routers"): how scores are made and experts ranked before a policy decides
// how many to keep. Checked here; run natively by the core's one selection routine on the CPU and CUDA.
import { DynamoeError } from '../errors';
import { describe, requireObject } from '../validate';
import { RoutingPolicy } from './routing-policy';

export type RouterScoring = 'softmax' | 'sigmoid' | 'softmax-of-kept';

/** Router rule of {@link route} and `MoELayer` (`routerRule`); absent: the plain softmax router. */
export interface RouterRule {
  /** 'softmax' (default), 'sigmoid' (DeepSeek-V3, GLM-4.5, Kimi K2) or 'softmax-of-kept' (gpt-oss, Granite MoE). */
  scoring?: RouterScoring;
  /** [experts] added to the scores (to the logits for 'softmax-of-kept') for ranking only (`e_score_correction_bias`). */
  selectionBias?: Float32Array;
  /** Split the experts into this many equal groups of consecutive ids (`n_group`). */
  groups?: number;
  /** Only the experts of this many best groups compete (`topk_group`). Default: all groups. */
  keptGroups?: number;
  /** A group's score: the sum of its two best selection scores ('top2-sum', DeepSeek-V3, default) or its best ('max', DeepSeek-V2). */
  groupScore?: 'max' | 'top2-sum';
  /** Renormalise the kept weights whatever the policy says (`norm_topk_prob`). */
  normalize?: boolean;
  /** Multiply the weights, on top of a top-k policy's own scale (`routed_scaling_factor`). */
  scale?: number;
}

const SCORINGS: readonly RouterScoring[] = ['softmax', 'sigmoid', 'softmax-of-kept'];

function fail(message: string): never {
  throw new DynamoeError('ERR_DYNAMOE_POLICY', message);
}

/** True for the rule every older architecture routes by: a softmax over all experts, weights as the policy says. */
export function isPlainRouter(rule: RouterRule | undefined): boolean {
  return (
    rule === undefined ||
    ((rule.scoring ?? 'softmax') === 'softmax' &&
      (rule.groups ?? 0) <= 1 &&
      !rule.normalize &&
      (rule.scale ?? 1) === 1 &&
      rule.selectionBias === undefined)
  );
}

/** Experts a policy may select from under `rule`: all of them, or the kept groups' share. */
export function routerCandidates(rule: RouterRule | undefined, experts: number): number {
  const groups = rule?.groups ?? 0;
  return groups > 1 ? (experts / groups) * (rule?.keptGroups ?? groups) : experts;
}

/** Throws ERR_DYNAMOE_POLICY (ERR_DYNAMOE_SHAPE for the bias length) unless `rule` can route `experts` experts. */
export function checkRouterRule(value: unknown, experts: number, what = 'routerRule'): RouterRule | undefined {
  if (value === undefined) return undefined;
  const rule = requireObject(value, what);
  if (rule.scoring !== undefined && !SCORINGS.includes(rule.scoring as RouterScoring)) {
    fail(`${what}.scoring must be one of ${SCORINGS.map((s) => `'${s}'`).join(', ')}, got ${describe(rule.scoring)}`);
  }
  const groups = rule.groups ?? 0;
  if (typeof groups !== 'number' || !Number.isInteger(groups) || groups < 0 || groups > experts) {
    fail(`${what}.groups must be an integer in [0, ${experts}], got ${describe(rule.groups)}`);
  }
  if (groups > 1 && experts % groups !== 0) fail(`${what}.groups (${groups}) must divide the experts (${experts})`);
  const kept = rule.keptGroups ?? groups;
  if (groups > 1 && (typeof kept !== 'number' || !Number.isInteger(kept) || kept < 1 || kept > groups)) {
    fail(`${what}.keptGroups must be an integer in [1, ${groups}], got ${describe(rule.keptGroups)}`);
  }
  if (rule.groupScore !== undefined && rule.groupScore !== 'max' && rule.groupScore !== 'top2-sum') {
    fail(`${what}.groupScore must be 'max' or 'top2-sum', got ${describe(rule.groupScore)}`);
  }
  if (rule.normalize !== undefined && typeof rule.normalize !== 'boolean') {
    throw new DynamoeError('ERR_DYNAMOE_TYPE', `${what}.normalize must be a boolean, got ${describe(rule.normalize)}`);
  }
  const scale = rule.scale ?? 1;
  if (typeof scale !== 'number' || !Number.isFinite(scale) || scale <= 0) {
    fail(`${what}.scale must be a finite number > 0, got ${describe(rule.scale)}`);
  }
  const bias = rule.selectionBias;
  if (bias !== undefined) {
    if (!(bias instanceof Float32Array)) {
      throw new DynamoeError('ERR_DYNAMOE_TYPE', `${what}.selectionBias must be a Float32Array, got ${describe(bias)}`);
    }
    if (bias.length !== experts) {
      throw new DynamoeError('ERR_DYNAMOE_SHAPE', `${what}.selectionBias must have ${experts} values, got ${bias.length}`);
    }
    if (!bias.every(Number.isFinite)) throw new DynamoeError('ERR_DYNAMOE_VALUE', `${what}.selectionBias must be finite`);
  }
  return rule as RouterRule;
}

/** Throws ERR_DYNAMOE_POLICY when `policy` needs more experts than `rule`'s kept groups hold. */
export function checkPolicyUnderRule(policy: RoutingPolicy, rule: RouterRule | undefined, experts: number): void {
  const candidates = routerCandidates(rule, experts);
  const needed = policy.kind === 'top-k' ? policy.k : (policy.minExperts ?? 1);
  if (needed > candidates) {
    const what = policy.kind === 'top-k' ? 'k' : 'minExperts';
    fail(`${policy.kind} ${what} (${needed}) exceeds the ${candidates} experts of the router's kept groups`);
  }
}
