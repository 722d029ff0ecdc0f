// Continuous batching: every forward, score and generation of a model runs as a job of one scheduler, which packs
// the jobs' next tokens into shared native steps. Jobs join at the next step and leave when they end; prompts are
// prefilled in chunks under a per-step token budget so running decodes keep flowing; admission is first come,
// first served, bounded by sequences, KV pool blocks and a queue; an aborted job leaves at the next step and gives
// its KV blocks back at once. A job's results do not depend on the jobs beside it (the native kernels are
// batch-invariant), so batching changes speed, never bits.
import type {
  NativeKvSession,
  NativeModelGraph,
  NativeStepResult,
  NativeStepSegment,
} from '../addon/native-surface';
import { DynamoeError, fromNativeError } from '../errors';

/** Limits of a model's scheduler ({@link LoadModelOptions}). */
export interface SchedulerLimits {
  /** Sequences one step runs at once. */
  maxSequences: number;
  /** Tokens one step runs: decodes first (one each), then prompt chunks up to this many in all. */
  tokensPerStep: number;
  /** Jobs that may wait for admission; more are refused with ERR_DYNAMOE_BUSY. */
  maxQueue: number;
}

/** What a scheduler is doing now (for metrics). */
export interface SchedulerState {
  running: number;
  waiting: number;
  /** KV pool blocks reserved by running jobs, held by no sequence now, and in the pool. */
  reservedBlocks: number;
  freeBlocks: number;
  poolBlocks: number;
  blockTokens: number;
  steps: number;
  /** Rows of the last step, and sequences in it. */
  lastStepTokens: number;
  lastStepSequences: number;
}

/** One request as the scheduler runs it. */
export interface StepJob {
  /** KV positions the job may need in all (its blocks are reserved at admission). */
  readonly positions: number;
  /** When set and aborted, the job leaves at the next step with ERR_DYNAMOE_ABORTED. */
  readonly signal?: AbortSignal;
  /** True once the job wants no more steps (its consumer went away). */
  readonly cancelled?: boolean;
  /** Whether its next segment is a single decode token (those go first in a step). */
  readonly decoding: boolean;
  /** Its next segment, of at most `budget` tokens (budget >= 1), without the session. */
  nextSegment(budget: number): Omit<NativeStepSegment, 'session'>;
  /** The result of its last segment; returns true when the job is done. */
  accept(result: NativeStepResult): boolean;
  /** The job ends with `error` (aborted, failed step, scheduler closed). */
  fail(error: unknown): void;
}

interface Admitted {
  job: StepJob;
  session: NativeKvSession;
  blocks: number;
}

export class StepScheduler {
  private readonly waiting: StepJob[] = [];
  private readonly running: Admitted[] = [];
  private reservedBlocks = 0;
  private looping = false;
  private closedWith: unknown = undefined;
  private steps = 0;
  private lastStepTokens = 0;
  private lastStepSequences = 0;

  constructor(
    private readonly graph: NativeModelGraph,
    readonly limits: SchedulerLimits,
  ) {}

  get state(): SchedulerState {
    const pool = this.graph.disposed ? { blocks: 0, blockTokens: 0, freeBlocks: 0 } : this.graph.kvPool;
    return {
      running: this.running.length,
      waiting: this.waiting.length,
      reservedBlocks: this.reservedBlocks,
      freeBlocks: pool.freeBlocks,
      poolBlocks: pool.blocks,
      blockTokens: pool.blockTokens,
      steps: this.steps,
      lastStepTokens: this.lastStepTokens,
      lastStepSequences: this.lastStepSequences,
    };
  }

  /** Queues a job; throws at once when it could never fit the KV pool or the queue is full. */
  submit(job: StepJob): void {
    if (this.closedWith !== undefined) throw this.closedWith;
    const pool = this.graph.kvPool;
    const blocks = Math.ceil(job.positions / pool.blockTokens);
    if (blocks > pool.blocks) {
      throw new DynamoeError(
        'ERR_DYNAMOE_OUT_OF_MEMORY',
        `a request of ${job.positions} positions needs ${blocks} KV blocks of ${pool.blockTokens} positions, ` +
          `more than the model's KV pool holds (${pool.blocks} blocks, ${pool.blocks * pool.blockTokens} ` +
          'positions); load the model with a larger kvPoolTokens',
      );
    }
    if (this.waiting.length >= this.limits.maxQueue) {
      throw new DynamoeError(
        'ERR_DYNAMOE_BUSY',
        `${this.running.length} sequences are running and ${this.waiting.length} requests wait (maxQueue ` +
          `${this.limits.maxQueue}); try again later`,
      );
    }
    this.waiting.push(job);
    if (!this.looping) void this.loop();
  }

  /** Ends every waiting and running job with `error` and refuses later ones (the model was disposed). */
  close(error: unknown): void {
    this.closedWith = error;
    for (const job of this.waiting.splice(0)) job.fail(error);
    for (const admitted of [...this.running]) this.finish(admitted, error);
  }

  private async loop(): Promise<void> {
    this.looping = true;
    try {
      while (this.closedWith === undefined && (this.running.length > 0 || this.waiting.length > 0)) {
        this.dropCancelled();
        this.admit();
        const batch = this.compose();
        if (batch.length === 0) {
          // Nothing can run: the waiting jobs need blocks that running jobs hold (none are running here), or all left.
          if (this.running.length === 0 && this.waiting.length > 0) this.failWaitingThatCannotFit();
          continue;
        }
        this.steps++;
        this.lastStepSequences = batch.length;
        this.lastStepTokens = batch.reduce((sum, b) => sum + b.segment.tokens.length, 0);
        let results: NativeStepResult[];
        try {
          results = await this.graph.step(batch.map((b) => b.segment));
        } catch (error) {
          // A failed step ends the jobs in it (their sequences kept nothing of it); the others go on.
          let failure: unknown = error;
          try {
            fromNativeError(error);
          } catch (converted) {
            failure = converted;
          }
          for (const { admitted } of batch) this.finish(admitted, failure);
          continue;
        }
        batch.forEach(({ admitted }, i) => {
          if (!this.running.includes(admitted)) return; // the scheduler was closed meanwhile
          let done: boolean;
          try {
            done = admitted.job.accept(results[i]);
          } catch (error) {
            this.finish(admitted, error);
            return;
          }
          if (done) this.finish(admitted);
        });
      }
    } finally {
      this.looping = false;
    }
  }

  // Aborted or cancelled jobs leave before the next step, waiting or running.
  private dropCancelled(): void {
    for (let i = this.waiting.length - 1; i >= 0; i--) {
      const job = this.waiting[i];
      if (job.signal?.aborted || job.cancelled) {
        this.waiting.splice(i, 1);
        job.fail(aborted());
      }
    }
    for (const admitted of [...this.running]) {
      if (admitted.job.signal?.aborted || admitted.job.cancelled) this.finish(admitted, aborted());
    }
  }

  // First come, first served: the oldest waiting job is admitted when a sequence and its blocks are free; later jobs
  // do not pass it (a long request is not starved by short ones).
  private admit(): void {
    const pool = this.graph.kvPool;
    while (this.waiting.length > 0 && this.running.length < this.limits.maxSequences) {
      const job = this.waiting[0];
      const blocks = Math.ceil(job.positions / pool.blockTokens);
      if (this.reservedBlocks + blocks > pool.blocks) break;
      this.waiting.shift();
      let session: NativeKvSession;
      try {
        session = this.graph.createSession(job.positions);
      } catch (error) {
        job.fail(error);
        continue;
      }
      this.reservedBlocks += blocks;
      this.running.push({ job, session, blocks });
    }
  }

  // Decodes first, one token each, then prompt chunks in admission order from what is left of the budget.
  private compose(): { admitted: Admitted; segment: NativeStepSegment }[] {
    const batch: { admitted: Admitted; segment: NativeStepSegment }[] = [];
    let budget = this.limits.tokensPerStep;
    for (const admitted of this.running) {
      if (!admitted.job.decoding) continue;
      batch.push({ admitted, segment: { ...admitted.job.nextSegment(1), session: admitted.session } });
      budget--;
    }
    for (const admitted of this.running) {
      if (admitted.job.decoding || budget <= 0) continue;
      const segment = admitted.job.nextSegment(budget);
      budget -= segment.tokens.length;
      batch.push({ admitted, segment: { ...segment, session: admitted.session } });
    }
    return batch;
  }

  private failWaitingThatCannotFit(): void {
    const job = this.waiting.shift() as StepJob;
    job.fail(new DynamoeError('ERR_DYNAMOE_OUT_OF_MEMORY', 'the request does not fit the KV pool'));
  }

  // The job leaves: its sequence and KV blocks go back at once.
  private finish(admitted: Admitted, error?: unknown): void {
    const at = this.running.indexOf(admitted);
    if (at >= 0) this.running.splice(at, 1);
    else return;
    this.reservedBlocks -= admitted.blocks;
    admitted.session.dispose();
    if (error !== undefined) admitted.job.fail(error);
  }
}

function aborted(): DynamoeError {
  return new DynamoeError('ERR_DYNAMOE_ABORTED', 'the request was aborted');
}
