// The route rows of the parity table: random shapes up to 300 experts x 5000 tokens under every policy and score
// distribution (ties, ulp-neighbours, extreme logits, probabilities with zeros), ROUTING.md's examples, 4096 experts.
import { RoutingPolicy } from '../../lib';
import { fitPolicy } from '../layer-fixtures';
import { describePolicy, isProbabilities, Rng, ScoreDistribution, softmax64 } from '../reference';
import { RouteRow } from './table';

export const DISTRIBUTIONS: ScoreDistribution[] = [
  'normal',
  'onehot',
  'ties',
  'equal',
  'duplicates',
  'ulpNeighbours',
  'extreme80',
  'spread1e3',
  'logSteps',
  'zeroedProbabilities',
  'sparseProbabilities',
  'stepProbabilities',
];

const P_VALUES = [0.1, 0.4, 0.9, 1.0];
const EXPERT_COUNTS = [1, 2, 3, 5, 8, 10, 16, 31, 32, 33, 63, 64, 65, 100, 127, 128, 129, 200, 255, 256, 257, 300];
// tokens * experts per random case: keeps score generation in JS and the CPU route to a few ms each
const ROUTE_BUDGET = 200_000;
// CPU rows (CI has no GPU, 2 slow cores): the float64 reference of larger rows runs only inside non-CPU rows
export const CPU_ROUTE_BUDGET = 100_000;

function clamps(rng: Rng, experts: number): { minExperts?: number; maxExperts?: number } {
  const out: { minExperts?: number; maxExperts?: number } = {};
  if (rng.next() < 0.5) out.maxExperts = rng.int(1, experts);
  if (rng.next() < 0.5) out.minExperts = rng.int(1, out.maxExperts ?? experts);
  return out;
}

function randomPolicy(rng: Rng, kind: RoutingPolicy['kind'], experts: number): RoutingPolicy {
  return fitPolicy(drawPolicy(rng, kind, experts), experts);
}

function drawPolicy(rng: Rng, kind: RoutingPolicy['kind'], experts: number): RoutingPolicy {
  switch (kind) {
    case 'top-k':
      return {
        kind,
        k: rng.pick([1, 2, Math.min(experts, 8), rng.int(1, experts), experts]),
        ...(rng.next() < 0.5 ? { normalize: true } : {}),
        ...(rng.next() < 0.4 ? { scale: rng.pick([0.5, 2.5, 16]) } : {}),
      };
    case 'top-p':
      return { kind, p: rng.pick(P_VALUES), ...clamps(rng, experts), ...(rng.next() < 0.5 ? { normalize: true } : {}) };
    case 'threshold':
      return {
        kind,
        tau: rng.pick([0, 0.01, 0.05, 0.1, 0.3, 0.5, 1]),
        ...clamps(rng, experts),
        ...(rng.next() < 0.5 ? { normalize: true } : {}),
      };
  }
}

function seededRow(distribution: ScoreDistribution, experts: number, tokens: number, policy: RoutingPolicy, seed: number): RouteRow {
  return {
    op: 'route',
    name: `${distribution} E=${experts} T=${tokens} ${describePolicy(policy)} seed=${seed}`,
    dtype: 'f32',
    policy,
    seed,
    cpu: tokens * experts <= CPU_ROUTE_BUDGET,
    shape: { tokens, experts },
    input: isProbabilities(distribution) ? 'probabilities' : 'logits',
    scores: { distribution },
  };
}

/** The random rows (test 72's generator, seed 72001: the same cases in the same order). */
export function randomRouteRows(): RouteRow[] {
  const rng = new Rng(72001);
  const rows: RouteRow[] = [];
  const add = (distribution: ScoreDistribution, experts: number, tokens: number, policy: RoutingPolicy) => {
    rows.push(seededRow(distribution, experts, tokens, policy, rng.int(1, 2 ** 31)));
  };
  const randomShape = () => {
    const experts = rng.pick(EXPERT_COUNTS);
    const most = Math.max(1, Math.min(5000, Math.floor(ROUTE_BUDGET / experts)));
    // 64 tokens per device routing block: 63, 64, 65 straddle it
    return { experts, tokens: rng.pick([1, 2, 63, 64, 65, rng.int(1, most), most]) };
  };
  for (const distribution of DISTRIBUTIONS) {
    for (const kind of ['top-k', 'top-p', 'threshold'] as const) {
      for (let i = 0; i < 3; i++) {
        const { experts, tokens } = randomShape();
        add(distribution, experts, tokens, randomPolicy(rng, kind, experts));
      }
    }
  }
  // every p of the brief with every clamp combination, with and without normalize
  for (const p of P_VALUES) {
    for (const clamp of [{}, { minExperts: 2 }, { maxExperts: 3 }, { minExperts: 2, maxExperts: 4 }]) {
      for (const normalize of [false, true]) {
        add(rng.pick(['normal', 'logSteps', 'stepProbabilities'] as const), 64, 1000, {
          kind: 'top-p',
          p,
          ...clamp,
          ...(normalize ? { normalize } : {}),
        });
      }
    }
  }
  // top-k: normalize x scale
  for (const normalize of [false, true]) {
    for (const scale of [undefined, 2.5]) {
      add('normal', 128, 1000, { kind: 'top-k', k: 8, ...(normalize ? { normalize } : {}), ...(scale ? { scale } : {}) });
    }
  }
  // E = 1, and the largest shapes of the brief (5000 tokens x 300 experts) for each policy kind
  for (const kind of ['top-k', 'top-p', 'threshold'] as const) {
    add('normal', 1, rng.int(1, 5000), randomPolicy(rng, kind, 1));
    add(kind === 'top-p' ? 'ties' : 'normal', 300, 5000, randomPolicy(rng, kind, 300));
  }
  add('normal', 16, 5000, { kind: 'top-p', p: 0.4 });
  return rows;
}

// ROUTING.md's worked examples (p = 0.4): [name, scores, input, policy, ids, weights]
const EXAMPLES: [string, number[], 'logits' | 'probabilities', RoutingPolicy, number[], number[]][] = [
  ['six logits', [0.2, 1.0, 0.0, 0.8, 0.4, 0.6], 'logits', { kind: 'top-p', p: 0.4 }, [1, 3], [0.259399, 0.212378]],
  ['one dominant expert', [2, 1, 0.5, 0, -1, -2], 'logits', { kind: 'top-p', p: 0.4 }, [0], [0.557]],
  ['6 equal logits', new Array(6).fill(0.3), 'logits', { kind: 'top-p', p: 0.4 }, [0, 1, 2], new Array(3).fill(1 / 6)],
  ['16 equal logits', new Array(16).fill(0), 'logits', { kind: 'top-p', p: 0.4 }, [0, 1, 2, 3, 4, 5, 6], new Array(7).fill(1 / 16)],
  ['probabilities, strict >', [0.4, 0.3, 0.2, 0.1], 'probabilities', { kind: 'top-p', p: 0.4 }, [0, 1], [0.4, 0.3]],
  ['p = 1: all experts, raw P', [2, 1, 0.5, 0], 'logits', { kind: 'top-p', p: 1 }, [0, 1, 2, 3], [...softmax64([2, 1, 0.5, 0])]],
];

export function exampleRouteRows(): RouteRow[] {
  return EXAMPLES.map(([name, values, input, policy, ids, weights]) => ({
    op: 'route',
    name: `ROUTING.md example: ${name}`,
    dtype: 'f32',
    policy,
    seed: 0,
    cpu: true,
    shape: { tokens: 1, experts: values.length },
    input,
    scores: { values },
    expected: { ids, weights },
  }));
}

/** 4096 experts (the CUDA limit) and one past it, where CUDA may refuse but never answers wrongly. */
export function manyExpertRouteRows(): RouteRow[] {
  const rows: RouteRow[] = [];
  for (const experts of [4095, 4096]) {
    for (const policy of [{ kind: 'top-k', k: 8 }, { kind: 'top-p', p: 0.4, maxExperts: 64 }] as RoutingPolicy[]) {
      rows.push({ ...normal3(experts, 100, policy, 72002), cpu: experts === 4096 });
    }
  }
  // 4097: the fused kernel keeps a token's probabilities in shared memory; past that, never a wrong answer
  rows.push({
    ...normal3(4097, 10, { kind: 'top-k', k: 2 }, 72003),
    refusedOn: { cuda: { code: 'ERR_DYNAMOE_UNSUPPORTED', optional: true } },
  });
  return rows;
}

function normal3(experts: number, tokens: number, policy: RoutingPolicy, seed: number): RouteRow {
  return {
    ...seededRow('normal', experts, tokens, policy, seed),
    name: `${experts} experts T=${tokens} ${describePolicy(policy)} (normal logits, std 3)`,
    scores: { normalStd: 3 },
  };
}
