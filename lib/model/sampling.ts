// Choosing the next token from logits: greedy, or temperature / top-k / top-p sampling with a seeded generator.
import { DynamoeError } from '../errors';
import { SeededRandom } from '../seeded-random';

/** How the next token is chosen. temperature 0 (the default) is greedy and deterministic. */
export interface SamplingOptions {
  temperature?: number;
  /** Keep the k most likely tokens (0 or absent: all). */
  topK?: number;
  /** Keep the smallest set of most likely tokens whose probability exceeds p (1 or absent: all). */
  topP?: number;
  /** Seed of the sampling generator: the same seed gives the same tokens. */
  seed?: number;
}

export function checkSampling(options: SamplingOptions): void {
  const bad = (what: string, value: unknown) => {
    throw new DynamoeError('ERR_DYNAMOE_VALUE', `${what}, got ${String(value)}`);
  };
  const { temperature = 0, topK = 0, topP = 1, seed = 0 } = options;
  if (!(typeof temperature === 'number' && temperature >= 0 && Number.isFinite(temperature))) bad('temperature must be a number >= 0', temperature);
  if (!Number.isInteger(topK) || topK < 0) bad('topK must be an integer >= 0', topK);
  if (!(typeof topP === 'number' && topP > 0 && topP <= 1)) bad('topP must be in (0, 1]', topP);
  if (!Number.isInteger(seed)) bad('seed must be an integer', seed);
}

/** Picks tokens from logits; one sampler per generation (it carries the generator's state). */
export class Sampler {
  private readonly random: SeededRandom;

  constructor(private readonly options: SamplingOptions) {
    this.random = new SeededRandom(options.seed ?? 0);
  }

  next(logits: Float32Array): number {
    const temperature = this.options.temperature ?? 0;
    if (temperature === 0) return argmax(logits);
    const ids = candidates(logits, this.options.topK ?? 0, (this.options.topP ?? 1) < 1);
    let max = -Infinity;
    for (const id of ids) max = Math.max(max, logits[id]);
    const weights = ids.map((id) => Math.exp((logits[id] - max) / temperature));
    const total = weights.reduce((a, b) => a + b, 0);
    const topP = this.options.topP ?? 1;
    let kept = ids.length;
    if (topP < 1) {
      let running = 0;
      for (let i = 0; i < ids.length; i++) {
        running += weights[i] / total;
        if (running > topP) {
          kept = i + 1;
          break;
        }
      }
    }
    const keptTotal = weights.slice(0, kept).reduce((a, b) => a + b, 0);
    let draw = this.random.uniform() * keptTotal;
    for (let i = 0; i < kept; i++) {
      draw -= weights[i];
      if (draw < 0) return ids[i];
    }
    return ids[kept - 1];
  }
}

// The ids sampling draws from: the topK most likely (ties: lower id), sorted by descending logit when top-p needs
// the order; every id, unsorted, when neither filter applies (no O(vocab log vocab) sort per token then).
function candidates(logits: Float32Array, topK: number, sorted: boolean): number[] {
  const byLogit = (a: number, b: number) => logits[b] - logits[a] || a - b;
  const vocab = logits.length;
  if (topK > 0 && topK < vocab) {
    const best: number[] = [];
    for (let id = 0; id < vocab; id++) {
      if (best.length === topK && byLogit(id, best[topK - 1]) >= 0) continue;
      let at = best.length === topK ? topK - 1 : best.length;
      while (at > 0 && byLogit(id, best[at - 1]) < 0) {
        best[at] = best[at - 1];
        at--;
      }
      best[at] = id;
    }
    return best;
  }
  const all = Array.from({ length: vocab }, (_, id) => id);
  return sorted ? all.sort(byLogit) : all;
}

function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}
