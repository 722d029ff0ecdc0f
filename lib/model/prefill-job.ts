// A forward or a scoring request as a scheduler job: its tokens run through a fresh sequence in chunks, and the
// chunks' logits (or log-probabilities of the next tokens) are put back together.
import type { NativeStepResult, NativeStepSegment } from '../addon/native-surface';
import { RoutingPolicy } from '../policy/routing-policy';
import { RoutingStatsAccumulator } from './routing-stats';
import { StepJob } from './step-scheduler';

/** What a prefill job resolves to: [tokens][vocab] logits, or [tokens] log-probabilities when scoring. */
export interface PrefillResult {
  logits?: Float32Array;
  logProbs?: Float64Array;
}

export class PrefillJob implements StepJob {
  readonly decoding = false;
  readonly result: Promise<PrefillResult>;
  private done = 0;
  private pending = 0;
  private readonly parts: (Float32Array | Float64Array)[] = [];
  private resolve!: (result: PrefillResult) => void;
  private reject!: (error: unknown) => void;

  /** `stats` collects its routing statistics; `targets` (a next-token id or -1 per token) makes it a scoring job. */
  constructor(
    private readonly ids: Int32Array,
    private readonly policies: RoutingPolicy[],
    private readonly stats: RoutingStatsAccumulator | undefined,
    private readonly vocab: number,
    private readonly targets?: Int32Array,
    readonly signal?: AbortSignal,
  ) {
    this.result = new Promise((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  get positions(): number {
    return this.ids.length;
  }

  nextSegment(budget: number): Omit<NativeStepSegment, 'session'> {
    this.pending = Math.min(budget, this.ids.length - this.done);
    const end = this.done + this.pending;
    const segment: Omit<NativeStepSegment, 'session'> = {
      tokens: this.ids.subarray(this.done, end),
      policies: this.policies,
      lastRowLogits: false,
      stats: this.stats !== undefined,
    };
    if (this.stats) segment.sums = this.stats.runningSums();
    if (this.targets) segment.targets = this.targets.subarray(this.done, end);
    return segment;
  }

  accept(result: NativeStepResult): boolean {
    this.parts.push((this.targets ? result.logProbs : result.logits) as Float32Array | Float64Array);
    if (result.stats) this.stats?.add(result.stats);
    this.done += this.pending;
    if (this.done < this.ids.length) return false;
    const out: PrefillResult = {};
    if (this.targets) out.logProbs = joined(this.parts as Float64Array[], Float64Array, this.ids.length);
    else out.logits = joined(this.parts as Float32Array[], Float32Array, this.ids.length * this.vocab);
    this.resolve(out);
    return true;
  }

  fail(error: unknown): void {
    this.reject(error);
  }
}

// The chunks' arrays end to end (the one array itself when the job ran in one step).
function joined<T extends Float32Array | Float64Array>(
  parts: T[],
  kind: { new (length: number): T },
  length: number,
): T {
  if (parts.length === 1) return parts[0];
  const out = new kind(length);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}
