// Float64 test reference: a row's next token (native/core/token_choice.h's statement), written plainly: Math.exp,
// a whole sort, no chunking shortcuts. It differs from the kernels only in the last bits of each weight, so a
// choice can differ only where a draw or the top-p threshold lands within rounding of a running sum.

export interface ChoiceSpec {
  limit: number;
  temperature?: number;
  topK?: number;
  topP?: number;
  uniform?: number;
}

export const CHOICE_CHUNK = 256;

function key(value: number): number {
  if (Number.isNaN(value)) return -Infinity;
  return value === 0 ? 0 : value;
}

/** Running sums of `weights` as the statement chunks them (chunks of 256, each summed from its start). */
function chunkedRunning(weights: number[]): number[] {
  const running: number[] = [];
  let base = 0;
  for (let first = 0; first < weights.length; first += CHOICE_CHUNK) {
    let partial = 0;
    const end = Math.min(first + CHOICE_CHUNK, weights.length);
    for (let i = first; i < end; i++) {
      partial += weights[i];
      running.push(base + partial);
    }
    base += partial;
  }
  return running;
}

function firstAbove(running: number[], end: number, target: number): number {
  for (let i = 0; i < end; i++) if (running[i] > target) return i;
  return -1;
}

/** What a sampled choice draws from: the candidates in order, their running sums and the total. */
interface Prepared {
  ids: number[];
  running: number[];
  total: number;
}

function prepare(logits: ArrayLike<number>, spec: ChoiceSpec): Prepared {
  const { limit, temperature = 0, topK = 0, topP = 1 } = spec;
  const keys = Array.from({ length: limit }, (_, i) => key(logits[i]));
  const max = keys.reduce((a, b) => Math.max(a, b), -Infinity);
  const weight = (k: number) =>
    Number.isFinite(max) ? ((k - max) / temperature > -700 ? Math.exp((k - max) / temperature) : 0) : k === max ? 1 : 0;
  const topKRestricts = topK > 0 && topK < limit;
  const ids = Array.from({ length: limit }, (_, i) => i);
  if (!topKRestricts && topP >= 1) {
    const running = chunkedRunning(ids.map((id) => weight(keys[id])));
    return { ids, running, total: running[limit - 1] };
  }
  ids.sort((a, b) => (keys[a] > keys[b] ? -1 : keys[a] < keys[b] ? 1 : a - b));
  const n = topKRestricts ? topK : limit;
  const running = chunkedRunning(ids.slice(0, n).map((id) => weight(keys[id])));
  const total = topKRestricts ? running[n - 1] : chunkedRunning(keys.map(weight))[limit - 1];
  return { ids: ids.slice(0, n), running, total };
}

function pick({ ids, running, total }: Prepared, topP: number, uniform: number): number {
  let kept = ids.length;
  if (topP < 1) {
    const crossing = firstAbove(running, kept, topP * total);
    if (crossing >= 0) kept = crossing + 1;
  }
  const q = firstAbove(running, kept, uniform * running[kept - 1]);
  return ids[q < 0 ? kept - 1 : q];
}

function greedy(logits: ArrayLike<number>, limit: number): number {
  let best = 0;
  for (let i = 1; i < limit; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

export function referenceChoice(logits: ArrayLike<number>, spec: ChoiceSpec): number {
  if ((spec.temperature ?? 0) === 0) return greedy(logits, spec.limit);
  return pick(prepare(logits, spec), spec.topP ?? 1, spec.uniform ?? 0);
}

/**
 * The tokens the reference chooses when the draw and the top-p threshold move by up to `epsilon` (relative): a
 * kernel whose weights differ in their last bits may choose any of these, and only these.
 */
export function referenceChoicesNear(logits: ArrayLike<number>, spec: ChoiceSpec, epsilon = 1e-9): Set<number> {
  if ((spec.temperature ?? 0) === 0) return new Set([greedy(logits, spec.limit)]);
  const prepared = prepare(logits, spec);
  const uniform = spec.uniform ?? 0;
  const topP = spec.topP ?? 1;
  const out = new Set<number>();
  for (const du of [-epsilon, 0, epsilon]) {
    for (const dp of topP < 1 ? [-epsilon, 0, epsilon] : [0]) {
      const u = Math.min(Math.max(uniform * (1 + du) + du, 0), 1 - 1e-16);
      out.add(pick(prepared, Math.min(topP * (1 + dp), topP < 1 ? 1 - 1e-15 : 1), u));
    }
  }
  return out;
}
