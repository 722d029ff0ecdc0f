// Float64 test reference: the families' router rules (README "Routers"), written from the contract: scores (softmax
// or sigmoid), selection keys (+ bias), group limiting, the policy's cut on the candidates' share, the weight rule.
// Also a margin for each token: how close any decision came to going the other way, so tests can tell a fragile
// token (fp32 may legitimately decide otherwise) from a wrong one.
import { RefPolicy } from './policy';
import { softmax64 } from './routing';

export interface RefRouterRule {
  scoring?: 'softmax' | 'sigmoid' | 'softmax-of-kept';
  selectionBias?: ArrayLike<number>;
  groups?: number;
  keptGroups?: number;
  groupScore?: 'max' | 'top2-sum';
  normalize?: boolean;
  scale?: number;
}

export interface RuleSelection {
  ids: number[];
  weights: number[];
  /** Smallest relative gap of any decision (a ranking, a group cut, the top-p or threshold cut); 1 when none. */
  margin: number;
}

const sigmoid64 = (v: number): number => 1 / (1 + Math.exp(-v));
const gap = (a: number, b: number): number => Math.abs(a - b) / Math.max(Math.abs(a), Math.abs(b), 1e-30);

/** Ids ordered by key descending, ties by lower id (keys compared as fp32, as the contract's comparisons are). */
function ranked(ids: number[], key: (id: number) => number): number[] {
  return [...ids].sort((a, b) => Math.fround(key(b)) - Math.fround(key(a)) || a - b);
}

/** The float64 routing of one token's logits under `rule` and `policy`. */
export function selectByRule(logits: ArrayLike<number>, rule: RefRouterRule, policy: RefPolicy): RuleSelection {
  const experts = logits.length;
  const scoring = rule.scoring ?? 'softmax';
  // Scores are fp32 in the contract: one that underflows there (a probability of e^-160) is 0, not 1e-70.
  const score = (scoring === 'sigmoid' ? Array.from(logits, sigmoid64) : Array.from(softmax64(logits))).map(Math.fround);
  const base = scoring === 'softmax-of-kept' ? Array.from(logits) : score;
  const key = base.map((v, e) => v + (rule.selectionBias ? rule.selectionBias[e] : 0));
  let margin = 1;

  let candidates = Array.from({ length: experts }, (_, e) => e);
  const groups = rule.groups ?? 0;
  if (groups > 1) {
    const size = experts / groups;
    const groupScores = Array.from({ length: groups }, (_, g) => {
      const members = ranked(candidates.slice(g * size, (g + 1) * size), (e) => key[e]).map((e) => key[e]);
      return rule.groupScore === 'max' || size === 1 ? members[0] : members[0] + members[1];
    });
    const order = ranked(Array.from({ length: groups }, (_, g) => g), (g) => groupScores[g]);
    const kept = rule.keptGroups ?? groups;
    if (kept < groups) margin = Math.min(margin, gap(groupScores[order[kept - 1]], groupScores[order[kept]]));
    const keptGroups = new Set(order.slice(0, kept));
    candidates = candidates.filter((e) => keptGroups.has(Math.floor(e / size)));
  }
  const total = candidates.reduce((sum, e) => sum + score[e], 0);
  const share = (e: number) => (scoring === 'sigmoid' || groups > 1 ? score[e] / total : score[e]);

  const order = ranked(candidates, (e) => key[e]);
  let count: number;
  if (policy.kind === 'top-k') {
    count = policy.k;
  } else {
    const min = policy.minExperts ?? 1;
    const max = Math.min(policy.maxExperts ?? experts, order.length);
    let cut = order.length;
    if (policy.kind === 'top-p') {
      let running = 0;
      for (let j = 0; j < order.length; j++) {
        running += share(order[j]);
        if (policy.p < 1) margin = Math.min(margin, gap(running, Math.fround(policy.p)));
        if (policy.p < 1 && running > Math.fround(policy.p)) {
          cut = j + 1;
          break;
        }
      }
    } else {
      // Walked in rank order: the first minExperts whatever their share, then while the next share is >= tau (a
      // selection bias can rank a small share first, so this is a prefix of the ranking, not a set of shares).
      cut = 0;
      while (cut < order.length && (cut < min || share(order[cut]) >= Math.fround(policy.tau))) {
        margin = Math.min(margin, gap(share(order[cut]), Math.fround(policy.tau)));
        cut++;
      }
      if (cut < order.length) margin = Math.min(margin, gap(share(order[cut]), Math.fround(policy.tau)));
    }
    count = Math.min(Math.max(cut, min), max);
  }
  // The ranking decides which experts make the first `count`: a near tie across that boundary is fragile.
  for (let j = 0; j + 1 < order.length && j <= count; j++) margin = Math.min(margin, gap(key[order[j]], key[order[j + 1]]));
  const ids = order.slice(0, count);

  let weights: number[];
  if (scoring === 'softmax-of-kept') {
    weights = Array.from(softmax64(ids.map((e) => logits[e])));
  } else {
    weights = ids.map((e) => score[e]);
    if (policy.normalize || rule.normalize) {
      const sum = weights.reduce((a, b) => a + b, 0);
      if (sum > 0) weights = weights.map((w) => w / sum);
    }
  }
  const scale = (rule.scale ?? 1) * (policy.kind === 'top-k' ? (policy.scale ?? 1) : 1);
  return { ids, weights: weights.map((w) => w * scale), margin };
}
