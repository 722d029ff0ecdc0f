// How the next token is chosen: greedy, or temperature / top-k / top-p sampling with a seeded generator.
import type { NativeTokenChoice } from '../addon/native-surface';
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

/**
 * A generation's token choices: the options, and one draw of the seeded generator per sampled token. The model's
 * backend makes the choice next to its logits (native/core/token_choice.h), so a GPU step returns one id.
 */
export class Sampler {
  private readonly random: SeededRandom;

  constructor(private readonly options: SamplingOptions) {
    this.random = new SeededRandom(options.seed ?? 0);
  }

  /** The next token's choice among ids [0, limit). */
  next(limit: number): NativeTokenChoice {
    const temperature = this.options.temperature ?? 0;
    if (temperature === 0) return { limit };
    // A top-k past the limit keeps every id, as 0 does (and stays within the native int range).
    const topK = Math.min(this.options.topK ?? 0, limit);
    return { limit, temperature, topK, topP: this.options.topP ?? 1, uniform: this.random.uniform() };
  }
}
